// ModuLoRALinear: a frozen quantized weight plus trainable LoRA factors.
//   Y = X·Ŵᵀ + b + s·(drop(X)·Aᵀ)·Bᵀ
// Backward gives dX (through Ŵ, re-materialized on demand), dA and dB; nothing for Ŵ.
import { add, type Device, type Tensor } from "@modulora/tensor";
import { weightDevice } from "./formats/traits.js";
import type { QuantizedWeight } from "./formats/types.js";
import { initLoRAFactors, loraBranch, resolveLoRAOptions } from "./lora-dense.js";
import { quantLinear, resolvePath, type QuantPath } from "./quant-linear.js";

// The LoRA pieces (options, initialisation, branch, step seeds) live in lora-dense.ts, shared
// with the dense-base LoRALinear; stepSeed is re-exported here, where it has always been.
export { stepSeed } from "./lora-dense.js";

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
  /**
   * Device of the LoRA factors and of the inputs. A weight with packed tensors fixes it (their
   * device; a different one here is an error); a custom weight, which materializes on the host,
   * serves any device (default `cpu`).
   */
  device?: Device;
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
  /** The device of the factors (and of the weight's packed tensors, when it has any). */
  readonly device: Device;

  constructor(weight: QuantizedWeight, options: ModuLoRALinearOptions) {
    const o = resolveLoRAOptions("ModuLoRALinear", options);
    if (options.bias && (options.bias.rank !== 1 || options.bias.shape[0] !== weight.outFeatures)) {
      throw new RangeError(`ModuLoRALinear: bias must be [${weight.outFeatures}], got [${options.bias.shape}]`);
    }
    this.weight = weight;
    this.bias = options.bias ?? null;
    this.r = o.r;
    this.alpha = o.alpha;
    this.rsLora = o.rsLora;
    this.scaling = o.scaling;
    this.dropoutP = o.dropoutP;
    this.seed = o.seed;
    const own = weightDevice(weight);
    if (own !== null && options.device !== undefined && options.device !== own) {
      throw new Error(`ModuLoRALinear: the ${weight.format} weight is on '${own}', options.device is '${options.device}': upload the weight to '${options.device}' or leave device out`);
    }
    if (options.bias && options.bias.device !== (own ?? options.device ?? "cpu")) {
      throw new Error(`ModuLoRALinear: the bias is on '${options.bias.device}', the layer on '${own ?? options.device ?? "cpu"}': put both on one device`);
    }
    this.device = own ?? options.device ?? "cpu";
    this.path = resolvePath(weight, options.path, this.device);
    this.rowBlock = options.rowBlock;
    ({ loraA: this.loraA, loraB: this.loraB } = initLoRAFactors(weight.inFeatures, weight.outFeatures, o.r, o.seed, this.device));
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
    return add(y, loraBranch(x, this.loraA, this.loraB, this.scaling, this.dropoutP, this.seed, options));
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
