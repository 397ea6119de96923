/**
 * Statistics of the layers' inputs during calibration: the running accumulators of one distinct
 * input (Σ xᵀx for Hessians, Σ |x| for activation scales), the recording wrapper that stands in
 * for a linear while a block runs, and the session that gathers one block's statistics over every
 * micro-batch.
 * @module
 */
import { cast, div, keep, tidy, zeros, type Device, type Tensor } from "@modulora/tensor";
import { accumulateAbsSum, accumulateHessian, type CalibrationStats } from "@modulora/core";
import type { LayerForwardOptions, Linear } from "../types.js";

/** Running statistics of one distinct input (layers fed the same tensor share one), on the input's device. */
class InputStats {
  /** f64 [in, in] on the device: Σ xᵀx. */
  readonly hessian: Tensor | null;
  /** f64 [in] on the device: Σ |x| per input column. */
  readonly absSum: Tensor | null;
  samples = 0;
  /** Layers still to be handed these statistics. */
  readonly users: string[] = [];

  constructor(readonly inFeatures: number, kind: "hessian" | "activation-scales", device: Device) {
    this.hessian = kind === "hessian" ? keep(zeros([inFeatures, inFeatures], { dtype: "f64", device })) : null;
    this.absSum = kind === "activation-scales" ? keep(zeros([inFeatures], { dtype: "f64", device })) : null;
  }

  /** Adds x [..., in] on its device (H += xᵀx, S += Σ|x| over its rows; see core's accumulators). Nothing is read back. */
  add(x: Tensor): void {
    const rows = x.size / this.inFeatures;
    if (rows === 0) return;
    this.samples += rows;
    if (this.hessian) accumulateHessian(this.hessian, x);
    if (this.absSum) accumulateAbsSum(this.absSum, x);
  }

  /** The statistics for the next user; the last user gets the accumulator itself, earlier ones a copy. */
  take(): CalibrationStats {
    this.users.shift();
    const last = this.users.length === 0;
    const stats: CalibrationStats = { samples: this.samples };
    if (this.hessian) stats.hessian = last ? this.hessian : keep(this.hessian.clone());
    if (this.absSum) {
      const s = this.absSum;
      stats.activationScales = keep(tidy(() => cast(div(s, Math.max(1, this.samples)), "f32")));
      if (last) s.dispose();
    }
    return stats;
  }

  dispose(): void {
    this.hessian?.dispose();
    this.absSum?.dispose();
  }
}

/** Thrown by the last recording wrapper of a pass to skip the rest of the block. */
export const STOP_PASS: unique symbol = Symbol("stop calibration pass");

/**
 * Stands in for a linear during calibration: records its input, then calls the original. Inputs
 * are matched by tensor identity within one forward pass, so q/k/v (and gate/up), which the block
 * feeds the same normed hidden state, share one accumulation.
 */
export class RecordingLinear implements Linear {
  constructor(readonly inner: Linear, readonly name: string, private readonly session: CalibrationSession) {}
  get kind() {
    return this.inner.kind;
  }
  get inFeatures() {
    return this.inner.inFeatures;
  }
  get outFeatures() {
    return this.inner.outFeatures;
  }
  forward(x: Tensor, options?: LayerForwardOptions): Tensor {
    this.session.record(this.name, x);
    // Nothing after the last recorded input matters to this pass.
    if (this.session.complete) throw STOP_PASS;
    return this.inner.forward(x, options);
  }
  parameters(): Tensor[] {
    return this.inner.parameters();
  }
  storageBytes(): number {
    return this.inner.storageBytes();
  }
  dispose(): void {
    this.inner.dispose();
  }
}

/** The statistics of one block's targeted linears over all micro-batches. */
export class CalibrationSession {
  private readonly byLayer = new Map<string, InputStats>();
  /** Inputs seen in the current forward pass (tensor → its statistics). */
  private seen = new Map<Tensor, InputStats>();
  /** Layers recorded in the current pass. */
  private readonly recorded = new Set<string>();
  private passes = 0;
  /** Seconds spent accumulating statistics. */
  seconds = 0;

  /** `expected`: the recorded layers; once all have had their input in a pass, the pass is complete. */
  constructor(private readonly kind: "hessian" | "activation-scales", private readonly expected: number) {}

  /** Starts a new forward pass (a new micro-batch). */
  nextPass(): void {
    this.seen = new Map();
    this.recorded.clear();
    this.passes++;
  }

  /** Every recorded layer has seen its input in this pass. */
  get complete(): boolean {
    return this.recorded.size === this.expected;
  }

  record(name: string, x: Tensor): void {
    this.recorded.add(name);
    const inF = x.shape[x.rank - 1]!;
    const shared = this.seen.get(x);
    let stats = this.byLayer.get(name);
    if (this.passes === 1 && !stats) {
      stats = shared ?? new InputStats(inF, this.kind, x.device);
      stats.users.push(name);
      this.byLayer.set(name, stats);
    }
    if (!stats) throw new Error(`calibration: layer ${name} was not called in the first forward pass but is now`);
    if (shared) {
      // Same input as a layer already recorded in this pass: nothing new to add.
      if (shared !== stats) throw new Error(`calibration: layer ${name} shares its input with different layers from one pass to the next`);
      return;
    }
    const t0 = performance.now();
    stats.add(x);
    this.seconds += (performance.now() - t0) / 1000;
    this.seen.set(x, stats);
  }

  /** Statistics for `name` (the caller disposes the tensors in them). */
  take(name: string): CalibrationStats {
    const s = this.byLayer.get(name);
    if (!s) throw new Error(`calibration: layer ${name} never received an input in the calibration forward passes`);
    this.byLayer.delete(name);
    return s.take();
  }

  dispose(): void {
    for (const s of new Set(this.byLayer.values())) if (s.users.length) s.dispose();
    this.byLayer.clear();
  }
}

/** Frees the tensors of a layer's statistics (once its quantizer is done with them). */
export function disposeStats(stats: CalibrationStats | undefined): void {
  stats?.hessian?.dispose();
  stats?.activationScales?.dispose();
}
