/**
 * The LoRA layer that wraps a base linear, and the dispatchers that choose its implementation.
 *
 * The LoRA implementation for a base layer is chosen by an ordered list of dispatchers, first
 * match wins (dense → `LoRALinear`, quantized → `ModuLoRALinear`), as PEFT's
 * `_create_new_module`; a base no dispatcher handles is an error listing the supported kinds.
 * @module
 */
import { add, matmul, noGrad, scale, tensorFrom, tidy, type Device, type Tensor } from "@modulora/tensor";
import { LoRALinear, ModuLoRALinear, type LoRAOptions, type QuantizedWeight } from "@modulora/core";
import { DenseLinear, QuantizedLinear } from "../linear.js";
import type { LayerForwardOptions, Linear } from "../types.js";

/** A LoRA implementation over one base layer (`LoRALinear` and `ModuLoRALinear` both are). */
export interface LoRAModule {
  /** [r, in], requires grad. */
  readonly loraA: Tensor;
  /** [out, r], requires grad. */
  readonly loraB: Tensor;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly dropoutP: number;
  readonly rsLora: boolean;
  readonly seed: number;
  forward(x: Tensor, options?: LayerForwardOptions): Tensor;
  parameters(): Tensor[];
  /** Frees A and B only; the base weight belongs to the base layer. */
  dispose(): void;
}

/** Options a dispatcher gets for one layer: core's LoRA options and the model's device (where A and B are made). */
export type LoRALayerOptions = LoRAOptions & { device?: Device };

/** Wraps one kind of base layer with LoRA. */
export interface LoRADispatcher {
  /** What it wraps, for error messages, e.g. `dense (LoRALinear)`. */
  readonly name: string;
  /** The LoRA module over `base`, or null when `base` is not a kind this dispatcher handles. */
  create(base: Linear, options: LoRALayerOptions): LoRAModule | null;
  /** W + s·B·A as a new dense f32 [out, in] tensor (dequantizing the base if need be). */
  merge(base: Linear, lora: LoRAModule): Tensor;
}

/** Ŵ of a quantized weight as a dense f32 [out, in] tensor on `device` (materialized on the host, one copy in). */
function dequantize(w: QuantizedWeight, device: Device): Tensor {
  const buf = new Float32Array(w.outFeatures * w.inFeatures);
  w.materialize(0, w.outFeatures, buf);
  return tensorFrom(buf, { shape: [w.outFeatures, w.inFeatures], device });
}

/** The dispatchers {@link attachLoRA} and {@link loadAdapter} use by default, in order. */
export const LORA_DISPATCHERS: readonly LoRADispatcher[] = [
  {
    name: "dense (DenseLinear → LoRALinear)",
    create: (base, options) => (base instanceof DenseLinear ? new LoRALinear(base.weight, options) : null),
    merge: (_base, lora) => (lora as LoRALinear).mergedWeight(),
  },
  {
    name: "quantized (QuantizedLinear → ModuLoRALinear)",
    create: (base, options) => (base instanceof QuantizedLinear ? new ModuLoRALinear(base.weight, options) : null),
    // Merging into the packed weight would re-quantize it (ModuLoRALinear.merge refuses); a dense
    // export of Ŵ + s·B·A changes nothing in the model.
    merge: (base, lora) => noGrad(() => tidy(() => add(dequantize((base as QuantizedLinear).weight, lora.loraB.device), scale(matmul(lora.loraB, lora.loraA), lora.scaling)))),
  },
];

/** A base linear with a LoRA adapter: Y = base(X) + s·(drop(X)·Aᵀ)·Bᵀ. */
export class LoRALayer implements Linear {
  readonly kind = "lora" as const;

  constructor(
    /** The wrapped layer (frozen; restored by `Adapter.detach`). */
    readonly base: Linear,
    readonly lora: LoRAModule,
    /** The dispatcher that made `lora`. */
    readonly dispatcher: LoRADispatcher,
  ) {}

  get inFeatures(): number {
    return this.base.inFeatures;
  }
  get outFeatures(): number {
    return this.base.outFeatures;
  }
  get loraA(): Tensor {
    return this.lora.loraA;
  }
  get loraB(): Tensor {
    return this.lora.loraB;
  }
  get r(): number {
    return this.lora.r;
  }
  get scaling(): number {
    return this.lora.scaling;
  }
  forward(x: Tensor, options?: LayerForwardOptions): Tensor {
    return this.lora.forward(x, options);
  }
  parameters(): Tensor[] {
    return this.lora.parameters();
  }
  storageBytes(): number {
    return this.base.storageBytes() + 4 * (this.lora.loraA.size + this.lora.loraB.size);
  }
  /** W + s·B·A [out, in] f32, a new tensor (the caller owns it); nothing changes. */
  mergedWeight(): Tensor {
    return this.dispatcher.merge(this.base, this.lora);
  }
  /** Frees the adapter (A, B) but not the base. */
  disposeAdapter(): void {
    this.lora.dispose();
  }
  /** Frees the adapter and the base (the model owns its layers). */
  dispose(): void {
    this.lora.dispose();
    this.base.dispose();
  }
}

/** Wraps `base` with the first dispatcher that handles it. */
export function createLoRALayer(base: Linear, options: LoRALayerOptions, dispatchers: readonly LoRADispatcher[] = LORA_DISPATCHERS): LoRALayer {
  for (const d of dispatchers) {
    const lora = d.create(base, options);
    if (lora) return new LoRALayer(base, lora, d);
  }
  const hint = base.kind === "lora" ? " (it already carries a LoRA adapter: detach that one first)" : "";
  throw new Error(`LoRA: no dispatcher handles a '${base.kind}' layer (${base.constructor.name})${hint}; supported: ${dispatchers.map((d) => d.name).join(", ") || "none"}`);
}
