// LoRA over a dense (full-precision, frozen) weight, and the LoRA pieces shared with
// ModuLoRALinear: option checking, PEFT's initialisation, the branch s·(drop(X)·Aᵀ)·Bᵀ, and the
// per-step dropout seed.
//   Y = X·Wᵀ + b + s·(drop(X)·Aᵀ)·Bᵀ        W [out, in] frozen, A [r, in], B [out, r] trainable
import { add, cast, dropout, keep, matmul, noGrad, rand, scale, tidy, zeros, type Device, type Tensor } from "@modulora/tensor";
import type { ForwardOptions, LoRAOptions } from "./modulora-linear.js";

/** The dropout seed of a training step (a 52-bit mix of the layer seed and the step). */
export function stepSeed(seed: number, step: number): number {
  return (seed * 1000003 + step * 7919 + 1) % 2 ** 52;
}

/** Checked LoRA hyper-parameters of one layer, with the scaling they imply. */
export interface ResolvedLoRAOptions {
  r: number;
  alpha: number;
  scaling: number;
  dropoutP: number;
  rsLora: boolean;
  seed: number;
}

/** Checks r, alpha and dropout (errors name `who`); s = alpha / r, or alpha / √r with `rsLora`. */
export function resolveLoRAOptions(who: string, options: LoRAOptions): ResolvedLoRAOptions {
  const { r, alpha } = options;
  if (!Number.isInteger(r) || r < 1) throw new RangeError(`${who}: rank r must be a positive integer, got ${r}`);
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new RangeError(`${who}: alpha must be a positive number, got ${alpha}`);
  const dropoutP = options.dropout ?? 0;
  if (!(dropoutP >= 0 && dropoutP < 1)) throw new RangeError(`${who}: dropout must be in [0, 1), got ${dropoutP}`);
  const rsLora = options.rsLora ?? false;
  return { r, alpha, scaling: rsLora ? alpha / Math.sqrt(r) : alpha / r, dropoutP, rsLora, seed: options.seed ?? 0 };
}

/**
 * PEFT's initialisation of the factors: A [r, in] Kaiming-uniform (bound 1/√in) from `seed`,
 * B [out, r] zeros, so the update B·A starts at 0. Both kept (outside any `tidy`) and requiring grad,
 * created by kernels on `device` (the counter-based generator draws the same A on every device).
 */
export function initLoRAFactors(inFeatures: number, outFeatures: number, r: number, seed: number, device: Device = "cpu"): { loraA: Tensor; loraB: Tensor } {
  const bound = 1 / Math.sqrt(inFeatures);
  const loraA = keep(rand([r, inFeatures], { seed, low: -bound, high: bound, requiresGrad: true, device }));
  const loraB = keep(zeros([outFeatures, r], { requiresGrad: true, device }));
  return { loraA, loraB };
}

/**
 * The LoRA branch s·(drop(X)·Aᵀ)·Bᵀ for x [..., in], A [r, in], B [out, r] → [..., out]. Dropout
 * (probability `dropoutP`, in training only) touches the branch's input, with masks drawn from
 * `stepSeed(seed, step)` so a re-run step (checkpointing, resume) draws the same masks.
 */
export function loraBranch(x: Tensor, loraA: Tensor, loraB: Tensor, scaling: number, dropoutP: number, seed: number, options: ForwardOptions = {}): Tensor {
  // bf16 activations meet f32 factors (master weights): the branch runs in the factors' dtype on
  // a differentiable cast of x, and its output is cast back to x's dtype, so dA and dB are f32
  // and dX has x's dtype (the bf16 compute policy).
  const mixed = x.dtype !== loraA.dtype;
  const xf = mixed ? cast(x, loraA.dtype) : x;
  const dropped = options.training && dropoutP > 0 ? dropout(xf, dropoutP, { seed: stepSeed(seed, options.step ?? 0) }) : xf;
  const low = matmul(dropped, loraA, { transB: true }); // [..., r]
  const update = matmul(low, loraB, { transB: true }); // [..., out]
  const scaled = scale(update, scaling);
  if (!mixed) return scaled;
  const y = cast(scaled, x.dtype);
  for (const t of [xf, dropped, low, update, scaled]) if (t !== x) t.dispose();
  return y;
}

/** Options of {@link LoRALinear}. */
export interface LoRALinearOptions extends LoRAOptions {
  /** Optional bias [out], frozen. */
  bias?: Tensor | null;
}

/**
 * A linear layer with a frozen dense weight W [out, in] (f32, or bf16 under the bf16 compute
 * policy: then x and y are bf16 too, and the f32 branch runs on a cast of x) and f32 LoRA factors A [r, in]
 * (Kaiming-uniform, bound 1/√in, as PEFT) and B [out, r] (zeros): the unquantized-base
 * counterpart of `ModuLoRALinear`, with the same initialisation, scaling, dropout and seeding.
 * Only A and B require grad, created on the weight's device; the weight and bias belong to the caller.
 */
export class LoRALinear {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly loraA: Tensor;
  readonly loraB: Tensor;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly dropoutP: number;
  readonly rsLora: boolean;
  readonly seed: number;

  constructor(weight: Tensor, options: LoRALinearOptions) {
    const o = resolveLoRAOptions("LoRALinear", options);
    if (weight.rank !== 2) throw new RangeError(`LoRALinear: weight must be [out, in], got [${weight.shape}]`);
    if (weight.dtype !== "f32" && weight.dtype !== "bf16") throw new TypeError(`LoRALinear: weight must be f32 or bf16 (a bf16 frozen base), got ${weight.dtype}; cast it first`);
    const [out] = weight.shape as [number, number];
    if (options.bias && (options.bias.rank !== 1 || options.bias.shape[0] !== out)) {
      throw new RangeError(`LoRALinear: bias must be [${out}], got [${options.bias.shape}]`);
    }
    this.weight = weight;
    this.bias = options.bias ?? null;
    ({ r: this.r, alpha: this.alpha, scaling: this.scaling, dropoutP: this.dropoutP, rsLora: this.rsLora, seed: this.seed } = o);
    ({ loraA: this.loraA, loraB: this.loraB } = initLoRAFactors(this.inFeatures, out, o.r, o.seed, weight.device));
  }

  get inFeatures(): number {
    return this.weight.shape[1]!;
  }

  get outFeatures(): number {
    return this.weight.shape[0]!;
  }

  /** The trainable parameters: [A, B]. */
  parameters(): Tensor[] {
    return [this.loraA, this.loraB];
  }

  /** Y = X·Wᵀ + b + s·(drop(X)·Aᵀ)·Bᵀ for x [..., in]. */
  forward(x: Tensor, options: ForwardOptions = {}): Tensor {
    let y = matmul(x, this.weight, { transB: true });
    if (this.bias) y = add(y, this.bias);
    return add(y, loraBranch(x, this.loraA, this.loraB, this.scaling, this.dropoutP, this.seed, options));
  }

  /**
   * W + s·B·A [out, in] as a new f32 tensor (the caller owns it); the layer is unchanged. A dense
   * base can be merged exactly (unlike a quantized one), so this is what an export writes.
   */
  mergedWeight(): Tensor {
    // [out, r]·[r, in]; intermediates freed by tidy. A bf16 base is widened (exactly) to f32 first.
    return noGrad(() => tidy(() => add(this.weight.dtype === "f32" ? this.weight : cast(this.weight, "f32"), scale(matmul(this.loraB, this.loraA), this.scaling))));
  }

  /** Frees A and B (and their gradients). The weight and bias belong to the caller. */
  dispose(): void {
    this.loraA.dispose();
    this.loraB.dispose();
  }
}
