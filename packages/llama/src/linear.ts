import { matmul, type Tensor } from "@modulora/tensor";
import { quantLinear, type QuantizedWeight } from "@modulora/core";
import type { Linear } from "./types.js";

const bytesOf = (t: Tensor) => t.size * ({ f32: 4, f64: 8, bf16: 2, f16: 2, i32: 4, i8: 1, u8: 1, u32: 4 } as const)[t.dtype];

/** A full-precision frozen linear layer: y = x·Wᵀ with W [out, in]. */
export class DenseLinear implements Linear {
  readonly kind = "dense" as const;
  constructor(readonly weight: Tensor) {
    if (weight.rank !== 2) throw new RangeError(`DenseLinear: weight must be [out, in], got [${weight.shape}]`);
  }
  get inFeatures(): number {
    return this.weight.shape[1]!;
  }
  get outFeatures(): number {
    return this.weight.shape[0]!;
  }
  forward(x: Tensor): Tensor {
    return matmul(x, this.weight, { transB: true });
  }
  parameters(): Tensor[] {
    return [];
  }
  storageBytes(): number {
    return bytesOf(this.weight);
  }
  dispose(): void {
    this.weight.dispose();
  }
}

/** A frozen quantized linear layer: y = x·Ŵᵀ through the fused or generic path. */
export class QuantizedLinear implements Linear {
  readonly kind = "quantized" as const;
  constructor(
    readonly weight: QuantizedWeight,
    /**
     * The quantizer plugin that made the weight (`quantizeModel` sets it; `loadQuantizedModel`
     * reads it from the checkpoint's quantization_config), or null when unknown. Adapters record
     * it as part of their base's identity (modulora.json).
     */
    readonly quantizer: string | null = null,
  ) {}
  get inFeatures(): number {
    return this.weight.inFeatures;
  }
  get outFeatures(): number {
    return this.weight.outFeatures;
  }
  forward(x: Tensor): Tensor {
    return quantLinear(x, this.weight);
  }
  parameters(): Tensor[] {
    return [];
  }
  storageBytes(): number {
    return this.weight.storageBytes();
  }
  dispose(): void {
    this.weight.dispose();
  }
}
