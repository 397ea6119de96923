// ModuLoRALinear: a frozen quantized weight plus trainable LoRA factors.
//   Y = X·Ŵᵀ + b + s·(drop(X)·Aᵀ)·Bᵀ
// Backward gives dX (through Ŵ, re-materialized on demand), dA and dB; nothing for Ŵ.
import { add, dropout, keep, matmul, rand, scale, zeros, type Tensor } from "@modulora/tensor";
import type { QuantizedWeight } from "./formats/types.js";
import { quantLinear, resolvePath, type QuantPath } from "./quant-linear.js";

/** LoRA hyper-parameters of one layer. */
export interface LoRAOptions {
  /** Rank r of the update B·A. */
  r: number;
  /** Scale numerator: s = alpha / r (or alpha / √r with `rsLora`). */
  alpha: number;
  /** Dropout probability on the LoRA input (0 = none). */
  dropout?: number;
  /** Rank-stabilised scaling s = alpha / √r (Kalajdzievski 2023). */
  rsLora?: boolean;
  /** Seed of A's initialisation (Kaiming-uniform, as PEFT) and of the dropout masks. */
  seed?: number;
}

/** Options of {@link ModuLoRALinear}. */
export interface ModuLoRALinearOptions extends LoRAOptions {
  /** Optional bias [out], frozen. */
  bias?: Tensor | null;
  /** `auto` uses the fused kernel when the format has one. */
  path?: QuantPath;
  /** Rows of Ŵ materialized at once on the generic path. */
  rowBlock?: number;
}

/** Options of one forward call. */
export interface ForwardOptions {
  /** Apply dropout (training). Default: false. */
  training?: boolean;
  /** The training step: dropout masks are a function of (seed, step), so re-running a step
   * (activation checkpointing, resume) draws the same masks. */
  step?: number;
}

/**
 * A linear layer with a frozen quantized weight Ŵ [out, in] and LoRA factors A [r, in]
 * (Kaiming-uniform, bound 1/√in, as PEFT) and B [out, r] (zeros). Only A and B require grad.
 */
export class ModuLoRALinear {
  readonly weight: QuantizedWeight;
  readonly bias: Tensor | null;
  readonly loraA: Tensor;
  readonly loraB: Tensor;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly dropoutP: number;
  readonly rsLora: boolean;
  readonly seed: number;
  readonly path: "fused" | "generic";
  readonly rowBlock: number | undefined;

  constructor(weight: QuantizedWeight, options: ModuLoRALinearOptions) {
    const { r, alpha } = options;
    if (!Number.isInteger(r) || r < 1) throw new RangeError(`ModuLoRALinear: rank r must be a positive integer, got ${r}`);
    if (!(alpha > 0) || !Number.isFinite(alpha)) throw new RangeError(`ModuLoRALinear: alpha must be a positive number, got ${alpha}`);
    const p = options.dropout ?? 0;
    if (!(p >= 0 && p < 1)) throw new RangeError(`ModuLoRALinear: dropout must be in [0, 1), got ${p}`);
    if (options.bias && (options.bias.rank !== 1 || options.bias.shape[0] !== weight.outFeatures)) {
      throw new RangeError(`ModuLoRALinear: bias must be [${weight.outFeatures}], got [${options.bias.shape}]`);
    }
    this.weight = weight;
    this.bias = options.bias ?? null;
    this.r = r;
    this.alpha = alpha;
    this.rsLora = options.rsLora ?? false;
    this.scaling = this.rsLora ? alpha / Math.sqrt(r) : alpha / r;
    this.dropoutP = p;
    this.seed = options.seed ?? 0;
    this.path = resolvePath(weight, options.path);
    this.rowBlock = options.rowBlock;
    const bound = 1 / Math.sqrt(weight.inFeatures);
    this.loraA = keep(rand([r, weight.inFeatures], { seed: this.seed, low: -bound, high: bound, requiresGrad: true }));
    this.loraB = keep(zeros([weight.outFeatures, r], { requiresGrad: true }));
  }

  get inFeatures(): number {
    return this.weight.inFeatures;
  }

  get outFeatures(): number {
    return this.weight.outFeatures;
  }

  /** The trainable parameters: [A, B]. */
  parameters(): Tensor[] {
    return [this.loraA, this.loraB];
  }

  /** Y = X·Ŵᵀ + b + s·(drop(X)·Aᵀ)·Bᵀ for x [..., in]. */
  forward(x: Tensor, options: ForwardOptions = {}): Tensor {
    let y = quantLinear(x, this.weight, { path: this.path, rowBlock: this.rowBlock });
    if (this.bias) y = add(y, this.bias);
    const dropped = options.training && this.dropoutP > 0 ? dropout(x, this.dropoutP, { seed: stepSeed(this.seed, options.step ?? 0) }) : x;
    const low = matmul(dropped, this.loraA, { transB: true }); // [..., r]
    const update = matmul(low, this.loraB, { transB: true }); // [..., out]
    return add(y, scale(update, this.scaling));
  }

  /**
   * Merging B·A into a quantized weight would need re-quantization, which changes the base
   * model: refused. Export a dequantized merged checkpoint instead.
   */
  merge(): never {
    throw new Error(
      `ModuLoRALinear: cannot merge a LoRA adapter into a quantized weight (format '${this.weight.format}', ${this.weight.bits} bits): ` +
        "the result would have to be re-quantized, changing the base model. Keep the adapter separate, or export a dequantized merged checkpoint.",
    );
  }

  /** Frees A and B (and their gradients). The weight and bias belong to the caller. */
  dispose(): void {
    this.loraA.dispose();
    this.loraB.dispose();
  }
}

/** The dropout seed of a training step (a 52-bit mix of the layer seed and the step). */
export function stepSeed(seed: number, step: number): number {
  return (seed * 1000003 + step * 7919 + 1) % 2 ** 52;
}
