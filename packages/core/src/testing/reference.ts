import { add, loadSafetensors, matmul, scale, tensor, type Tensor } from "@modulora/tensor";
import type { QuantizedWeight } from "../formats/types.js";

/** Ŵ dequantized in full (tests only: this is what ModuLoRA never does in training). */
export function dequantizeAll(w: QuantizedWeight): Float32Array {
  const out = new Float32Array(w.outFeatures * w.inFeatures);
  w.materialize(0, w.outFeatures, out);
  return out;
}

/** ‖a − b‖ / ‖b‖ (Frobenius). */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / (den || 1));
}

/**
 * The dense reference of a ModuLoRA layer in the dtype of `x`:
 * `x·Ŵᵀ + s·(x·Aᵀ)·Bᵀ`, with Ŵ given dense (e.g. from {@link dequantizeAll}) as a tensor.
 */
export function denseLoraReference(x: Tensor, wHat: Tensor, a: Tensor, b: Tensor, scaling: number): Tensor {
  return add(matmul(x, wHat, { transB: true }), scale(matmul(matmul(x, a, { transB: true }), b, { transB: true }), scaling));
}

/** Loads named 2-D weights from a safetensors file as f32 tensors (callers dispose them). */
export function loadFixtureWeights(path: string, names: readonly string[]): Map<string, Tensor> {
  return loadSafetensors(path, { names: [...names] });
}

/** A tensor from f32 values (helper for suites). */
export function f32(values: Float32Array, shape: number[]): Tensor {
  return tensor(values, shape, { dtype: "f32" });
}
