// Optimizers. AdamW.step() is one fused multi-tensor update of every parameter that has a
// gradient (ops/nn.ts: adamwStepMany; one launch on CUDA): no temporaries, param/m/v written in place.
import { noGrad, keep } from "./engine.js";
import { OpError } from "./errors.js";
import { zerosLike } from "./ops/creation.js";
import { adamwStepMany } from "./ops/nn.js";
import { assign } from "./ops/inplace.js";
import { reshape } from "./ops/shape.js";
import type { Tensor } from "./tensor.js";

/** Hyper-parameters of {@link AdamW}. */
export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (Loshchilov & Hutter): p -= lr * weightDecay * p. */
  weightDecay?: number;
}

/**
 * AdamW over a fixed list of parameters. `step()` reads each parameter's `.grad` (parameters
 * without a gradient are skipped) and updates it in place; `zeroGrad()` frees the gradients.
 */
export class AdamW {
  readonly params: readonly Tensor[];
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Steps taken. */
  stepCount = 0;
  private readonly m: Tensor[];
  private readonly v: Tensor[];

  constructor(params: readonly Tensor[], options: AdamWOptions) {
    if (!(options.lr > 0)) throw new RangeError(`AdamW: lr must be > 0, got ${options.lr}`);
    this.params = params;
    this.lr = options.lr;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    for (const [k, b] of [["beta1", this.beta1], ["beta2", this.beta2]] as const) {
      if (!(b >= 0 && b < 1)) throw new RangeError(`AdamW: ${k} must be in [0, 1), got ${b}`);
    }
    for (const p of params) {
      if (!p.requiresGrad) throw new OpError("AdamW", "every parameter must have requiresGrad = true", [p]);
      if (!p.isContiguous) throw new OpError("AdamW", "every parameter must be contiguous (the fused step updates it in place)", [p]);
      if (p.dtype !== "f32" && p.dtype !== "f64") {
        throw new OpError("AdamW", `parameters must be f32 or f64, got ${p.dtype}: keep trainable parameters in f32 (master weights; the bf16 policy casts them to bf16 where the model computes in bf16, and the optimizer state is f32)`, [p]);
      }
    }
    this.m = params.map((p) => keep(zerosLike(p)));
    this.v = params.map((p) => keep(zerosLike(p)));
  }

  /**
   * One update of every parameter that has a gradient: `p ← p − lr·wd·p`, then the Adam moments
   * and `p ← p − lr · m̂ / (sqrt(v̂) + eps)` with bias corrections `1 − β^t`, as one
   * {@link adamwStepMany} call over all of them (bit for bit one `adamwStep` per parameter).
   * Parameters and gradients must be contiguous.
   */
  step(): void {
    this.stepCount++;
    const hyper = { lr: this.lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay, step: this.stepCount };
    // One call per device (one in practice): a multi-tensor op runs on one device.
    const groups = new Map<string, { ps: Tensor[]; gs: Tensor[]; ms: Tensor[]; vs: Tensor[] }>();
    this.params.forEach((p, i) => {
      const g = p.grad;
      if (!g) return;
      let group = groups.get(p.device);
      if (!group) groups.set(p.device, (group = { ps: [], gs: [], ms: [], vs: [] }));
      group.ps.push(p);
      group.gs.push(g);
      group.ms.push(this.m[i]!);
      group.vs.push(this.v[i]!);
    });
    noGrad(() => {
      for (const { ps, gs, ms, vs } of groups.values()) adamwStepMany(ps, gs, ms, vs, hyper);
    });
  }

  /** Frees the gradients of all parameters. */
  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  /** Frees the optimizer state. */
  /** The moment estimates (live tensors, for checkpointing): m[i], v[i] belong to params[i]. */
  state(): { step: number; m: readonly Tensor[]; v: readonly Tensor[] } {
    return { step: this.stepCount, m: this.m, v: this.v };
  }

  /**
   * Restores moments and step count saved from {@link AdamW.state}: values are copied in on the
   * parameters' device, from tensors on any device.
   */
  loadState(step: number, m: readonly Tensor[], v: readonly Tensor[]): void {
    if (m.length !== this.params.length || v.length !== this.params.length) {
      throw new RangeError(`AdamW.loadState: expected ${this.params.length} moment tensors each, got ${m.length} and ${v.length}`);
    }
    noGrad(() => {
      this.params.forEach((p, i) => {
        for (const [dst, src, what] of [[this.m[i]!, m[i]!, "m"], [this.v[i]!, v[i]!, "v"]] as const) {
          if (src.size !== dst.size || src.dtype !== dst.dtype) {
            throw new RangeError(`AdamW.loadState: ${what}[${i}] is ${src.dtype} [${src.shape}], the parameter needs ${dst.dtype} [${p.shape}]`);
          }
          // Copied in on the parameter's device (one transfer where the saved state lives elsewhere).
          const moved = src.device === dst.device ? src : src.to(dst.device);
          const shaped = reshape(moved, dst.shape);
          try {
            assign(dst, shaped);
          } finally {
            shaped.dispose();
            if (moved !== src) moved.dispose();
          }
        }
      });
    });
    this.stepCount = step;
  }

  dispose(): void {
    for (const t of [...this.m, ...this.v]) t.dispose();
  }
}
