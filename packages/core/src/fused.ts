// Bridges the known formats to the fused native dequantize-matmul kernels of @modulora/kernels.
import type { Tensor } from "@modulora/tensor";
import type { QuantizedWeight } from "./formats/types.js";

/** A fused kernel pair for one weight: Y = X·Ŵᵀ and dX = dY·Ŵ on contiguous 2-D f32 tensors. */
export interface FusedKernel {
  forward(x: Tensor): Tensor;
  inputGrad(dy: Tensor): Tensor;
}

/** The fused kernels for `w`, or null where the format has none (then the generic path runs). */
export function fusedKernelFor(_w: QuantizedWeight): FusedKernel | null {
  return null;
}
