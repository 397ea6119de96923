// Optimizers. AdamW here is composed from element-wise kernels; a fused native step replaces
// it in the transformer-ops work without changing this interface.
import { noGrad, tidy, keep } from "./engine.js";
import { OpError } from "./errors.js";
import { addInPlace, scaleInPlace } from "./ops/inplace.js";
import { zerosLike } from "./ops/creation.js";
import { add, div, mul } from "./ops/binary.js";
import { sqrt, square } from "./ops/unary.js";
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
    }
    this.m = params.map((p) => keep(zerosLike(p)));
    this.v = params.map((p) => keep(zerosLike(p)));
  }

  /** One update of every parameter that has a gradient. */
  step(): void {
    this.stepCount++;
    const t = this.stepCount;
    const bc1 = 1 - this.beta1 ** t;
    const bc2 = 1 - this.beta2 ** t;
    noGrad(() =>
      tidy(() => {
        this.params.forEach((p, i) => {
          const g = p.grad;
          if (!g) return;
          const m = this.m[i]!;
          const v = this.v[i]!;
          if (this.weightDecay) scaleInPlace(p, 1 - this.lr * this.weightDecay);
          scaleInPlace(m, this.beta1);
          addInPlace(m, g, 1 - this.beta1);
          scaleInPlace(v, this.beta2);
          addInPlace(v, square(g), 1 - this.beta2);
          // p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
          const denom = add(mul(sqrt(v), 1 / Math.sqrt(bc2)), this.eps);
          addInPlace(p, div(m, denom), -this.lr / bc1);
        });
      }),
    );
  }

  /** Frees the gradients of all parameters. */
  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  /** Frees the optimizer state. */
  dispose(): void {
    for (const t of [...this.m, ...this.v]) t.dispose();
  }
}
