// Data-parallel runs of `modulora finetune`: --devices N on one host spawns N copies of the same
// command (one per GPU) with the torchrun variables set; a process that finds those variables
// (torchrun, Slurm, a Kubernetes training operator, or our own spawn) joins the group through the
// TCP rendezvous on MASTER_ADDR:MASTER_PORT and trains its share of every step with NCCL (GPUs)
// or the TCP communicator (CPU processes).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Device } from "@modulora/tensor";
import { CliError, usageError } from "./errors.js";

/** The values of the data-parallel flags. */
export interface DistributedArgs {
  devices?: number;
  distBackend: "auto" | "nccl" | "tcp";
  distTimeout: number;
  device: string;
}

/** What this process is in a run: the parent that spawns local ranks, one rank of a group, or a single process. */
export type RunRole =
  | { kind: "single" }
  | { kind: "spawn"; ranks: number }
  | { kind: "rank"; rank: number; worldSize: number; localRank: number; localWorldSize: number; masterAddr: string; masterPort: number; source: string };

/** Decides the role from the flags and the launcher's variables (checked: a mismatch is a usage error). */
export async function runRole(a: DistributedArgs, env: NodeJS.ProcessEnv = process.env): Promise<RunRole> {
  const { resolveLaunch } = await import("@modulora/distributed");
  let launch;
  try {
    launch = resolveLaunch(env);
  } catch (err) {
    throw new CliError(`the data-parallel launch variables are inconsistent: ${(err as Error).message}`, "fix the variables the launcher set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT or SLURM_*), or unset them for a single process");
  }
  if (launch.worldSize > 1) {
    if (a.devices !== undefined && a.devices !== launch.localWorldSize) {
      throw usageError(`--devices ${a.devices} but the launcher (${launch.source}) started ${launch.localWorldSize} processes on this host`, "drop --devices when torchrun, Slurm or a training operator starts the processes (one per GPU)");
    }
    return { kind: "rank", ...launch };
  }
  if (a.devices !== undefined && a.devices > 1) return { kind: "spawn", ranks: a.devices };
  // An explicit backend with one process: a group of one, so that the data-parallel path itself runs (checks, benchmarks).
  if (a.distBackend !== "auto") {
    const { findFreePort } = await import("@modulora/distributed");
    return { kind: "rank", rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: "127.0.0.1", masterPort: await findFreePort(), source: "single" };
  }
  return { kind: "single" };
}

/**
 * The device rank `localRank` trains on: `cuda` becomes `cuda:<localRank>`; `cpu` and `sim` stay.
 * `cuda:N` with several ranks on the host is refused, except over TCP (ranks sharing one GPU: a
 * check of the data-parallel path on a one-GPU host; NCCL refuses two ranks on one GPU).
 */
export function rankDevice(device: string, role: RunRole, backend: DistributedArgs["distBackend"] = "auto"): string {
  if (role.kind !== "rank") return device;
  if (device === "cuda") return `cuda:${role.localRank}`;
  if (/^cuda:\d+$/.test(device) && role.localWorldSize > 1 && backend !== "tcp") {
    throw usageError(`--device ${device} names one GPU, but ${role.localWorldSize} ranks run on this host`, "use --device cuda: rank r then trains on cuda:r (or --dist-backend tcp to share that GPU between the ranks)");
  }
  return device;
}

/** The CLI's executable: MODULORA_CLI_ENTRY, else cli.js beside this module (the package's dist/), else this process's script. */
export function cliEntry(env: NodeJS.ProcessEnv = process.env): string {
  if (env["MODULORA_CLI_ENTRY"]) return env["MODULORA_CLI_ENTRY"];
  const beside = join(dirname(fileURLToPath(import.meta.url)), "cli.js");
  if (existsSync(beside)) return beside;
  if (process.argv[1]) return process.argv[1];
  throw new CliError("cannot find the modulora executable to start the ranks with", "set MODULORA_CLI_ENTRY to the path of modulora's cli.js");
}

/**
 * --devices N: runs `argv` (this command line) as N ranks on this host and waits for them. Rank
 * 0's output passes through as it is; the other ranks' lines go to stderr prefixed `[rank r]`.
 * Returns the exit code: 0, or the first failed rank's (130/143 for an interrupted run).
 */
export async function spawnRanks(n: number, argv: readonly string[], stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream): Promise<number> {
  const { spawnLocalRanks, RankFailedError } = await import("@modulora/distributed");
  const entry = cliEntry();
  try {
    // Ctrl-C and SIGTERM go on to every rank: the ranks agree to stop, and rank 0 saves a checkpoint.
    await spawnLocalRanks(n, [process.execPath, ...process.execArgv, entry, ...argv], {
      forwardSignals: true,
      onLine: (rank, stream, line) => {
        if (rank === 0) (stream === "stdout" ? stdout : stderr).write(`${line}\n`);
        else stderr.write(`[rank ${rank}] ${line}\n`);
      },
    });
    return 0;
  } catch (err) {
    if (err instanceof RankFailedError) {
      const first = err.exits[err.rank]!;
      stderr.write(`modulora finetune: ${err.message}\n`);
      return first.code ?? (first.signal === "SIGINT" ? 130 : first.signal === "SIGTERM" ? 143 : 1);
    }
    throw err;
  }
}

/** The group this rank trains in: the communicator and the Trainer's `dataParallel`, and what to close at the end. */
export interface RankGroup {
  dataParallel: import("@modulora/distributed").DataParallel;
  backend: "nccl" | "tcp";
  close(): Promise<void>;
}

/** Joins the data-parallel group of `role` on `device` (NCCL for CUDA devices unless --dist-backend tcp). */
export async function joinGroup(role: Extract<RunRole, { kind: "rank" }>, a: DistributedArgs, device: Device): Promise<RankGroup> {
  const dist = await import("@modulora/distributed");
  const cuda = String(device).startsWith("cuda");
  const backend = a.distBackend === "auto" ? (cuda ? "nccl" : "tcp") : a.distBackend;
  if (backend === "nccl" && !cuda) throw new CliError("--dist-backend nccl needs --device cuda", "use --dist-backend tcp (or auto) for CPU processes");
  const timeoutMs = a.distTimeout * 1000;
  const common = { rank: role.rank, worldSize: role.worldSize, masterAddr: role.masterAddr, masterPort: role.masterPort, timeoutMs };
  let comm: import("@modulora/distributed").Communicator;
  try {
    if (backend === "nccl") {
      comm = await dist.NcclCommunicator.connect({ ...common, device });
    } else {
      comm = await dist.TcpCommunicator.connect(common);
    }
  } catch (err) {
    throw new CliError(
      `rank ${role.rank} of ${role.worldSize} could not join the group at ${role.masterAddr}:${role.masterPort} (${backend}): ${(err as Error).message}`,
      backend === "nccl" ? "check that NCCL is installed (docs/multi-gpu.md), or use --dist-backend tcp" : "check MASTER_ADDR/MASTER_PORT and that every rank was started",
      { cause: err },
    );
  }
  return { dataParallel: dist.dataParallel(comm), backend, close: () => comm.close() };
}
