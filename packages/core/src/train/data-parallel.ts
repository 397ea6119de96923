// What the Trainer needs of a data-parallel group, as a structural contract: @modulora/distributed
// builds one over a Communicator (NCCL on GPUs, TCP between CPU processes), and this package stays
// free of any transport. The state sync at the start of a run (rank 0's parameters, optimizer
// moments and trainer state to every rank) is written here, on the group's broadcast.
import { noGrad, tensorFrom, type Tensor } from "@modulora/tensor";
import type { TrainerState } from "./state.js";

/**
 * One rank's view of a data-parallel group, for {@link TrainerOptions.dataParallel}. Every rank
 * runs the same Trainer with the same options; each computes its share of every step's
 * micro-batches and the group averages the gradients, so the parameters stay equal on every rank.
 * `@modulora/distributed`'s `dataParallel(communicator)` makes one.
 */
export interface TrainerDataParallel {
  /** This process's rank, `0 ≤ rank < worldSize`; rank 0 alone writes checkpoints and logs. */
  readonly rank: number;
  /** Number of ranks. */
  readonly worldSize: number;
  /** Called before the backward of a step's last micro-batch on this rank: the step's gradient sync starts. */
  beginStep(params: readonly Tensor[]): void;
  /** Called during that backward as parameter `index`'s gradient becomes final (a bucket may start its all-reduce). */
  gradientReady(index: number): void;
  /** After that backward: every gradient averaged over the ranks, in place (parameters without a gradient get zeros first). */
  finishGradients(): Promise<void>;
  /** Element-wise sum over the ranks, in place (small f64 tensors: the step's loss, stop flags). */
  allReduceSum(tensors: readonly Tensor[]): Promise<void>;
  /** Copies rank `root`'s tensors into every other rank's, in place. */
  broadcast(tensors: readonly Tensor[], root: number): Promise<void>;
}

/** The numeric fields of a {@link TrainerState} that every rank needs, in a fixed order (f64). */
const FIELDS = ["step", "optimizerSteps", "epoch", "index", "badSteps", "sinceBest"] as const;

/** @internal Rank 0's state (null: a fresh start) as f64 numbers: [present, fields…, lastLoss, hasBest, bestStep, bestValue, done]. */
export function encodeState(state: TrainerState | null): Float64Array {
  const v = new Float64Array(FIELDS.length + 6);
  if (!state) return v;
  v[0] = 1;
  FIELDS.forEach((f, i) => (v[i + 1] = state[f]));
  let k = FIELDS.length + 1;
  v[k++] = state.lastLoss ?? NaN;
  v[k++] = state.best ? 1 : 0;
  v[k++] = state.best?.step ?? 0;
  v[k++] = state.best?.value ?? 0;
  v[k] = state.done ? 1 : 0;
  return v;
}

/** @internal The state {@link encodeState} encoded, on top of `base` (this rank's fresh state); null when rank 0 started fresh. */
export function decodeState(v: Float64Array, base: TrainerState): TrainerState | null {
  if (v[0] !== 1) return null;
  const s: TrainerState = { ...base };
  FIELDS.forEach((f, i) => (s[f] = v[i + 1]!));
  let k = FIELDS.length + 1;
  const lastLoss = v[k++]!;
  s.lastLoss = Number.isFinite(lastLoss) ? lastLoss : null;
  const hasBest = v[k++] === 1;
  const bestStep = v[k++]!;
  const bestValue = v[k++]!;
  s.best = hasBest ? { step: bestStep, value: bestValue } : null;
  s.done = v[k] === 1;
  return s;
}

/**
 * @internal Broadcasts rank 0's trainer state, parameters and optimizer moments to every rank, so
 * that a resumed (or freshly initialized) run starts from the same numbers everywhere. Returns the
 * state every rank continues from (null: a fresh start).
 */
export async function syncFromRoot(dp: TrainerDataParallel, mine: TrainerState | null, fresh: TrainerState, tensors: readonly Tensor[]): Promise<TrainerState | null> {
  const device = tensors[0]!.device;
  const packed = noGrad(() => tensorFrom(encodeState(dp.rank === 0 ? mine : null), { dtype: "f64", device }));
  try {
    await dp.broadcast([packed, ...tensors], 0);
    return dp.rank === 0 ? mine : decodeState(await packed.data() as Float64Array, fresh);
  } finally {
    packed.dispose();
  }
}

/** @internal Sums small flags over the ranks (one f64 all-reduce on `device`). */
export async function agree(dp: TrainerDataParallel, values: readonly number[], device: Tensor["device"]): Promise<number[]> {
  const t = noGrad(() => tensorFrom(Float64Array.from(values), { dtype: "f64", device }));
  try {
    await dp.allReduceSum([t]);
    return Array.from(await t.data() as Float64Array);
  } finally {
    t.dispose();
  }
}
