// Where this process sits in a data-parallel job, read from the variables the cluster's own
// launcher sets: torchrun and the Kubernetes training operators (RANK, WORLD_SIZE, ...) or Slurm
// (SLURM_PROCID, SLURM_NTASKS, ...). Nothing set means one process.

/** Who launched this process, as {@link resolveLaunch} found it. */
export type LaunchSource = "torchrun" | "slurm" | "single";

/** This process's place in the job. */
export interface LaunchInfo {
  /** Global rank, `0 ≤ rank < worldSize`. */
  rank: number;
  /** Number of processes in the job. */
  worldSize: number;
  /** Rank among the processes of this host (picks the GPU). */
  localRank: number;
  /** Number of processes on this host. */
  localWorldSize: number;
  /** Host of rank 0, where the rendezvous listens. */
  masterAddr: string;
  /** Port of the rendezvous on `masterAddr` (0 for a single process: no rendezvous). */
  masterPort: number;
  /** Which variables gave these values. */
  source: LaunchSource;
}

/** The environment {@link resolveLaunch} reads (`process.env` or a plain object). */
export type LaunchEnv = Readonly<Record<string, string | undefined>>;

/** The port {@link resolveLaunch} derives from `SLURM_JOB_ID` when `MASTER_PORT` is not set: 15000 + id mod 20000, so that two jobs sharing a node rarely collide. */
export function slurmPortFromJobId(jobId: number): number {
  return 15_000 + (jobId % 20_000);
}

function intVar(env: LaunchEnv, name: string, min: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  if (!/^\d+$/.test(raw.trim())) throw new Error(`launch environment: ${name}=${JSON.stringify(raw)} is not a non-negative integer`);
  const v = Number(raw.trim());
  if (v < min) throw new Error(`launch environment: ${name}=${v} must be at least ${min}`);
  return v;
}

function missing(name: string, why: string): never {
  throw new Error(`launch environment: ${name} is not set but ${why}; set it (or unset the others for a single process)`);
}

function requireVar<T>(v: T | undefined, name: string, why: string): T {
  return v === undefined ? missing(name, why) : v;
}

function portVar(env: LaunchEnv, name: string): number | undefined {
  const p = intVar(env, name, 1);
  if (p !== undefined && p > 65_535) throw new Error(`launch environment: ${name}=${p} is not a TCP port (1-65535)`);
  return p;
}

function checkRankBelow(rank: number, rankName: string, size: number, sizeName: string): void {
  if (rank >= size) throw new Error(`launch environment: ${rankName}=${rank} must be below ${sizeName}=${size}`);
}

/**
 * This process's rank, world size, local rank and rendezvous address, from `env`:
 *
 * - torchrun / Kubernetes training operators: `RANK`, `WORLD_SIZE` (both required once either is
 *   set), `LOCAL_RANK`, `LOCAL_WORLD_SIZE` (default 0 and 1: one process per pod), `MASTER_ADDR`,
 *   `MASTER_PORT` (required when the world has more than one rank). These win over Slurm's, so
 *   that torchrun started by `srun` works.
 * - Slurm (`srun`): `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE` or
 *   `SLURM_TASKS_PER_NODE` (`4(x2),3`: the entry of `SLURM_NODEID`), the first host of
 *   `SLURM_JOB_NODELIST` / `SLURM_NODELIST` (or `MASTER_ADDR`), and `MASTER_PORT` or
 *   {@link slurmPortFromJobId}(`SLURM_JOB_ID`).
 * - Neither: one process (`source: "single"`).
 *
 * @throws Error naming the variables when values are missing, malformed or inconsistent.
 */
export function resolveLaunch(env: LaunchEnv = process.env): LaunchInfo {
  if (env.RANK !== undefined || env.WORLD_SIZE !== undefined) return fromTorchrun(env);
  if (env.SLURM_PROCID !== undefined) return fromSlurm(env);
  return { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: "127.0.0.1", masterPort: 0, source: "single" };
}

function fromTorchrun(env: LaunchEnv): LaunchInfo {
  const rank = requireVar(intVar(env, "RANK", 0), "RANK", "WORLD_SIZE is");
  const worldSize = requireVar(intVar(env, "WORLD_SIZE", 1), "WORLD_SIZE", "RANK is");
  checkRankBelow(rank, "RANK", worldSize, "WORLD_SIZE");
  const localRank = intVar(env, "LOCAL_RANK", 0) ?? 0;
  const localWorldSize = intVar(env, "LOCAL_WORLD_SIZE", 1) ?? (env.LOCAL_RANK !== undefined ? localRank + 1 : 1);
  checkRankBelow(localRank, "LOCAL_RANK", localWorldSize, "LOCAL_WORLD_SIZE");
  if (localWorldSize > worldSize) throw new Error(`launch environment: LOCAL_WORLD_SIZE=${localWorldSize} exceeds WORLD_SIZE=${worldSize}`);
  const multi = worldSize > 1;
  const masterAddr = env.MASTER_ADDR || (multi ? missing("MASTER_ADDR", `WORLD_SIZE=${worldSize}`) : "127.0.0.1");
  const masterPort = portVar(env, "MASTER_PORT") ?? (multi ? missing("MASTER_PORT", `WORLD_SIZE=${worldSize}`) : 0);
  return { rank, worldSize, localRank, localWorldSize, masterAddr, masterPort, source: "torchrun" };
}

function fromSlurm(env: LaunchEnv): LaunchInfo {
  const rank = requireVar(intVar(env, "SLURM_PROCID", 0), "SLURM_PROCID", "this looks like a Slurm step");
  const worldSize = requireVar(intVar(env, "SLURM_NTASKS", 1), "SLURM_NTASKS", "SLURM_PROCID is");
  checkRankBelow(rank, "SLURM_PROCID", worldSize, "SLURM_NTASKS");
  const localRank = requireVar(intVar(env, "SLURM_LOCALID", 0), "SLURM_LOCALID", "SLURM_PROCID is");
  const localWorldSize = slurmLocalWorldSize(env);
  checkRankBelow(localRank, "SLURM_LOCALID", localWorldSize, env.SLURM_NTASKS_PER_NODE ? "SLURM_NTASKS_PER_NODE" : "SLURM_TASKS_PER_NODE");
  if (localWorldSize > worldSize) throw new Error(`launch environment: ${localWorldSize} tasks per node exceed SLURM_NTASKS=${worldSize}`);
  let masterAddr = env.MASTER_ADDR;
  if (!masterAddr) {
    const listName = env.SLURM_JOB_NODELIST ? "SLURM_JOB_NODELIST" : "SLURM_NODELIST";
    const list = requireVar(env[listName], "SLURM_JOB_NODELIST (or SLURM_NODELIST, or MASTER_ADDR)", "SLURM_PROCID is");
    masterAddr = firstSlurmHost(list, listName);
  }
  let masterPort = portVar(env, "MASTER_PORT");
  if (masterPort === undefined) {
    const jobId = intVar(env, "SLURM_JOB_ID", 0);
    masterPort = worldSize > 1 ? slurmPortFromJobId(requireVar(jobId, "MASTER_PORT (or SLURM_JOB_ID)", `SLURM_NTASKS=${worldSize}`)) : 0;
  }
  return { rank, worldSize, localRank, localWorldSize, masterAddr, masterPort, source: "slurm" };
}

function slurmLocalWorldSize(env: LaunchEnv): number {
  const perNode = intVar(env, "SLURM_NTASKS_PER_NODE", 1);
  if (perNode !== undefined) return perNode;
  const raw = env.SLURM_TASKS_PER_NODE;
  if (raw === undefined) throw new Error("launch environment: neither SLURM_NTASKS_PER_NODE nor SLURM_TASKS_PER_NODE is set; srun sets them (run the job step with srun)");
  const counts: number[] = [];
  for (const part of raw.split(",")) {
    const m = /^\s*(\d+)(?:\(x(\d+)\))?\s*$/.exec(part);
    if (!m || Number(m[1]) < 1) throw new Error(`launch environment: SLURM_TASKS_PER_NODE=${JSON.stringify(raw)} is not a list like "4(x2),3"`);
    for (let i = 0; i < Number(m[2] ?? 1); i++) counts.push(Number(m[1]));
  }
  if (counts.every((c) => c === counts[0])) return counts[0]!;
  const node = requireVar(intVar(env, "SLURM_NODEID", 0), "SLURM_NODEID", `SLURM_TASKS_PER_NODE=${raw} differs between nodes`);
  if (node >= counts.length) throw new Error(`launch environment: SLURM_NODEID=${node} is past the ${counts.length} nodes of SLURM_TASKS_PER_NODE=${raw}`);
  return counts[node]!;
}

/**
 * The hosts of a Slurm node list in its compressed form: `node[01-04,07]` → node01 … node04,
 * node07 (zero padding kept); `a[1-2],b3`; several bracket groups (`r[1-2]-n[1-2]`) expand as a
 * product. `name` names the variable in errors.
 */
export function expandSlurmNodelist(list: string, name = "SLURM_JOB_NODELIST"): string[] {
  const bad = (why: string): Error => new Error(`launch environment: ${name}=${JSON.stringify(list)} is not a Slurm node list (${why})`);
  const items: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    const c = list[i];
    if (c === "[") depth++;
    else if (c === "]") { if (--depth < 0) throw bad("unbalanced ]"); }
    else if (c === "," && depth === 0) { items.push(list.slice(start, i)); start = i + 1; }
  }
  if (depth !== 0) throw bad("unbalanced [");
  items.push(list.slice(start));
  const hosts: string[] = [];
  for (const item of items) {
    if (item.trim() === "") throw bad("empty entry");
    let partial = [""];
    const re = /([^[\]]*)(?:\[([^\]]*)\])?/gy;
    let m: RegExpExecArray | null;
    while (re.lastIndex < item.length && (m = re.exec(item)) !== null) {
      const literal = m[1]!;
      const choices = m[2] === undefined ? [""] : expandRanges(m[2], bad);
      partial = partial.flatMap((p) => choices.map((c) => p + literal + c));
      if (m[0] === "") break;
    }
    hosts.push(...partial);
  }
  return hosts;
}

function expandRanges(spec: string, bad: (why: string) => Error): string[] {
  const out: string[] = [];
  for (const r of spec.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(r.trim());
    if (!m) throw bad(`range "${r}"`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) throw bad(`range "${r}" runs backwards`);
    if (hi - lo > 100_000) throw bad(`range "${r}" is too long`);
    const width = m[1]!.length;
    for (let v = lo; v <= hi; v++) out.push(String(v).padStart(width, "0"));
  }
  return out;
}

/** The first host of a Slurm node list (see {@link expandSlurmNodelist}): where rank 0 runs. */
export function firstSlurmHost(list: string, name = "SLURM_JOB_NODELIST"): string {
  return expandSlurmNodelist(list, name)[0]!;
}
