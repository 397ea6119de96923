/** Learning-rate schedules with linear warmup. */
export type ScheduleKind = "constant" | "linear" | "cosine";

/** A learning-rate schedule. */
export interface ScheduleOptions {
  kind: ScheduleKind;
  /** Peak learning rate. */
  lr: number;
  /** Steps of linear warmup from 0 to `lr` (default 0). */
  warmupSteps?: number;
  /** Total optimizer steps (needed by linear and cosine decay). */
  totalSteps: number;
  /** Final learning rate as a fraction of `lr` for linear/cosine (default 0). */
  minLrRatio?: number;
}

/**
 * The learning rate at optimizer step `step` (1-based, as the optimizer counts): warmup
 * `lr·step/warmup`, then constant, linear decay to `minLrRatio·lr` at `totalSteps`, or cosine
 * decay `min + (lr − min)·(1 + cos(π·progress))/2`.
 */
export function learningRate(o: ScheduleOptions, step: number): number {
  const warmup = o.warmupSteps ?? 0;
  const minLr = (o.minLrRatio ?? 0) * o.lr;
  if (warmup > 0 && step <= warmup) return (o.lr * step) / warmup;
  if (o.kind === "constant") return o.lr;
  const span = Math.max(1, o.totalSteps - warmup);
  const progress = Math.min(1, Math.max(0, (step - warmup) / span));
  if (o.kind === "linear") return minLr + (o.lr - minLr) * (1 - progress);
  return minLr + ((o.lr - minLr) * (1 + Math.cos(Math.PI * progress))) / 2;
}

/** Checks schedule options (a warmup longer than `totalSteps` is refused); throws a RangeError saying what is wrong. */
export function checkSchedule(o: ScheduleOptions): void {
  if (!["constant", "linear", "cosine"].includes(o.kind)) throw new RangeError(`schedule must be constant, linear or cosine, got ${JSON.stringify(o.kind)}`);
  if (!(o.lr > 0) || !Number.isFinite(o.lr)) throw new RangeError(`learning rate must be a positive number, got ${o.lr}`);
  if (!Number.isInteger(o.warmupSteps ?? 0) || (o.warmupSteps ?? 0) < 0) throw new RangeError(`warmup steps must be a non-negative integer, got ${o.warmupSteps}`);
  if (!Number.isInteger(o.totalSteps) || o.totalSteps < 1) throw new RangeError(`total steps must be a positive integer, got ${o.totalSteps}`);
  // A warmup longer than the run never reaches the peak learning rate: refused, not silently truncated.
  if ((o.warmupSteps ?? 0) > o.totalSteps) throw new RangeError(`warmup of ${o.warmupSteps} steps is longer than the run (${o.totalSteps} steps), so the learning rate would never reach ${o.lr}`);
}
