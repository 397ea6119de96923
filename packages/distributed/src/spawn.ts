// One host, N ranks: spawns N copies of a command with the torchrun variables set, forwards their
// output line by line prefixed with the rank, and when one fails stops the others.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";

/** Options of {@link spawnLocalRanks}. */
export interface SpawnLocalRanksOptions {
  /** Extra environment for every rank, on top of `process.env` (an undefined value unsets a variable). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Working directory of the ranks. */
  cwd?: string;
  /** Rendezvous port (default: a free port on 127.0.0.1). */
  masterPort?: number;
  /** How long the other ranks get after SIGTERM before SIGKILL, once one rank failed (default 5 000 ms). */
  graceMs?: number;
  /** Receives every output line (default: written to this process's stdout/stderr as `[rank R] line`). */
  onLine?: (rank: number, stream: "stdout" | "stderr", line: string) => void;
  /**
   * Pass SIGINT and SIGTERM that reach this process on to every rank still running, instead of
   * letting them end this process (default false). The ranks then stop as they handle the signal
   * (a trainer saves a checkpoint) and this process reports how they ended.
   */
  forwardSignals?: boolean;
}

/** How one rank ended. */
export interface RankExit {
  /** The rank. */
  rank: number;
  /** Exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal that ended it, or null. */
  signal: NodeJS.Signals | null;
}

/** The error {@link spawnLocalRanks} rejects with: which rank failed first, and how every rank ended. */
export class RankFailedError extends Error {
  /** The first rank that failed. */
  readonly rank: number;
  /** How every rank ended (index = rank). */
  readonly exits: readonly RankExit[];
  constructor(message: string, rank: number, exits: readonly RankExit[]) {
    super(message);
    this.name = "RankFailedError";
    this.rank = rank;
    this.exits = exits;
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function describeExit(e: RankExit): string {
  return e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
}

/**
 * Runs `argv` (`[command, ...args]`) as `n` processes on this host, with `RANK`, `WORLD_SIZE`,
 * `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR=127.0.0.1` and `MASTER_PORT` set (what
 * {@link resolveLaunch} reads), and `NCCL_NVLS_ENABLE=0` unless the environment sets it. Resolves with every rank's exit once all exited with code 0.
 *
 * @throws RankFailedError when a rank exits non-zero or by a signal: the others get SIGTERM, then
 * SIGKILL after `graceMs`, and the error, once all have ended, names the first failed rank and how
 * it ended.
 */
export async function spawnLocalRanks(n: number, argv: readonly string[], options: SpawnLocalRanksOptions = {}): Promise<RankExit[]> {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`spawnLocalRanks: the number of ranks must be a positive integer, got ${n}`);
  if (argv.length === 0 || !argv[0]) throw new TypeError("spawnLocalRanks: argv is empty; give [command, ...args]");
  const port = options.masterPort ?? (await findFreePort());
  const graceMs = options.graceMs ?? 5_000;
  const onLine = options.onLine ?? ((rank, stream, line) => (stream === "stdout" ? process.stdout : process.stderr).write(`[rank ${rank}] ${line}\n`));
  const children: ChildProcess[] = [];
  const exits: (RankExit | null)[] = Array.from({ length: n }, () => null);
  let firstFailure: RankExit | null = null;
  let killTimer: ReturnType<typeof setTimeout> | null = null;

  // An undefined value in options.env unsets the variable.
  const baseEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...options.env })) if (v !== undefined) baseEnv[k] = v;
  // No NVLink multicast objects (NCCL's NVLS, on by NCCL's default) unless the caller says otherwise.
  baseEnv.NCCL_NVLS_ENABLE ??= "0";

  const forward = (signal: NodeJS.Signals) => children.forEach((c, r) => { if (!exits[r]) c.kill(signal); });
  const onSigint = () => forward("SIGINT");
  const onSigterm = () => forward("SIGTERM");
  if (options.forwardSignals) {
    process.on("SIGINT", onSigint);
    process.on("SIGTERM", onSigterm);
  }
  const unhook = () => {
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigterm);
  };

  return new Promise<RankExit[]>((resolve, reject) => {
    let done = 0;
    const stopOthers = (): void => {
      children.forEach((c, r) => { if (!exits[r]) c.kill("SIGTERM"); });
      killTimer = setTimeout(() => children.forEach((c, r) => { if (!exits[r]) c.kill("SIGKILL"); }), graceMs);
    };
    const onExit = (rank: number, code: number | null, signal: NodeJS.Signals | null): void => {
      if (exits[rank]) return;
      const e: RankExit = { rank, code, signal };
      exits[rank] = e;
      if (!firstFailure && (code !== 0 || signal)) { firstFailure = e; stopOthers(); }
      if (++done < n) return;
      if (killTimer) clearTimeout(killTimer);
      const all = exits as RankExit[];
      if (firstFailure) {
        const others = all.filter((x) => x.rank !== firstFailure!.rank).map((x) => `rank ${x.rank} ${describeExit(x)}`).join(", ");
        reject(new RankFailedError(`spawnLocalRanks: rank ${firstFailure.rank} ${describeExit(firstFailure)}; the other ranks were stopped${others ? ` (${others})` : ""}`, firstFailure.rank, all));
      } else resolve(all);
    };
    for (let rank = 0; rank < n; rank++) {
      const child = spawn(argv[0]!, argv.slice(1), {
        cwd: options.cwd,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...baseEnv, RANK: String(rank), WORLD_SIZE: String(n), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(n), MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port) },
      });
      children.push(child);
      for (const stream of ["stdout", "stderr"] as const) {
        let pending = "";
        child[stream]!.setEncoding("utf8");
        child[stream]!.on("data", (chunk: string) => {
          const lines = (pending + chunk).split("\n");
          pending = lines.pop()!;
          for (const l of lines) onLine(rank, stream, l);
        });
        child[stream]!.on("end", () => { if (pending) onLine(rank, stream, pending); pending = ""; });
      }
      child.on("error", (err) => { onLine(rank, "stderr", `cannot start ${argv[0]}: ${err.message}`); onExit(rank, 127, null); });
      child.on("close", (code, signal) => onExit(rank, code, signal));
    }
  }).finally(unhook);
}
