// The collective-communication contract every data-parallel backend implements (in-process,
// TCP, NCCL later), and the host-side helpers the CPU implementations share.
import { assign, noGrad, tensorFrom, type Tensor } from "@modulora/tensor";

/** How {@link Communicator.allReduce} combines the ranks' values: their sum, or their sum divided by the world size. */
export type ReduceOp = "sum" | "mean";

/**
 * A group of `worldSize` ranks that run the same collectives in the same order (like a NCCL
 * communicator or a `torch.distributed` process group). Every collective is called by every rank;
 * a rank that does not arrive within the implementation's timeout makes the others reject with
 * an error naming it.
 */
export interface Communicator {
  /** This process's rank, `0 ≤ rank < worldSize`. */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly worldSize: number;
  /**
   * Combines `tensors` element-wise across the ranks and writes the result into them, in place
   * (every rank ends with the same bits). Every rank passes the same number of tensors with the
   * same sizes and dtypes, in the same order.
   */
  allReduce(tensors: readonly Tensor[], op: ReduceOp): Promise<void>;
  /** Copies the `root` rank's `tensors` into every other rank's `tensors`, in place. */
  broadcast(tensors: readonly Tensor[], root: number): Promise<void>;
  /** Resolves once every rank has called `barrier()`. */
  barrier(): Promise<void>;
  /** Releases the group's resources; no collective may follow. */
  close(): Promise<void>;
}

/** The dtypes the CPU communicators move (copied to the host as `Float32Array` / `Float64Array`). */
export type HostFloatArray = Float32Array | Float64Array;

/** @internal The tensor's elements on the host, checking that the dtype is one the CPU communicators reduce. */
export async function readHost(t: Tensor, what: string): Promise<HostFloatArray> {
  if (t.dtype !== "f32" && t.dtype !== "f64") {
    throw new TypeError(`${what}: tensor #${t.id} is ${t.dtype}; the CPU communicators reduce f32 and f64 tensors only (cast first)`);
  }
  return (await t.data()) as HostFloatArray;
}

/** @internal Writes host values into `t` in place (on its device), outside autograd. */
export function writeHost(t: Tensor, host: HostFloatArray): void {
  noGrad(() => {
    const src = tensorFrom(host, { shape: t.shape, dtype: t.dtype, device: t.device });
    try {
      assign(t, src);
    } finally {
      src.dispose();
    }
  });
}

/**
 * @internal The reduction every CPU communicator uses, so that they agree bit for bit: the sum in
 * rank order 0, 1, …, n−1 in the tensor's own precision (each addition rounded to f32 for f32),
 * then for "mean" one division by n.
 */
export function reduceInRankOrder(parts: readonly HostFloatArray[], op: ReduceOp): HostFloatArray {
  const first = parts[0]!;
  const acc = first instanceof Float32Array ? new Float32Array(first) : new Float64Array(first);
  for (let r = 1; r < parts.length; r++) {
    const p = parts[r]!;
    for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + p[i]!;
  }
  if (op === "mean") {
    const n = parts.length;
    for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! / n;
  }
  return acc;
}

/** @internal Checks a reduce op given at run time (from JavaScript). */
export function checkReduceOp(op: string, what: string): asserts op is ReduceOp {
  if (op !== "sum" && op !== "mean") throw new TypeError(`${what}: op must be "sum" or "mean", got ${JSON.stringify(op)}`);
}

/** @internal Checks a root rank. */
export function checkRoot(root: number, worldSize: number, what: string): void {
  if (!Number.isInteger(root) || root < 0 || root >= worldSize) {
    throw new RangeError(`${what}: root must be an integer rank in [0, ${worldSize - 1}], got ${root}`);
  }
}

/** @internal A signature of a tensor list ("f32:12,f64:3") that every rank must match. */
export function signatureOf(tensors: readonly Tensor[]): string {
  return tensors.map((t) => `${t.dtype}:${t.size}`).join(",");
}

/** Formats a list of ranks for messages: "rank 2" or "ranks 1, 3". */
export function formatRanks(ranks: readonly number[]): string {
  return `${ranks.length === 1 ? "rank" : "ranks"} ${ranks.join(", ")}`;
}
