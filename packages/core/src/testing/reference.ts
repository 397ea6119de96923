import { add, loadSafetensors, matmul, scale, tensor, tensorFrom, tidy, type Tensor } from "@modulora/tensor";
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

/**
 * A plain round-to-nearest reference quantizer, dequantized (f64 arithmetic, f32 result): per
 * group of `groupSize` inputs of each row (or the whole row), the asymmetric min-max grid whose
 * range contains 0 (scale = (max − min)/(2^bits − 1), zero = round(−min/scale)), each weight
 * rounded to the nearest level. It is the baseline a quantizer's error is compared with in the
 * conformance suite: written on its own, it shares no code with any plugin.
 */
export function referenceRoundToNearest(w: ArrayLike<number>, outFeatures: number, inFeatures: number, bits: number, groupSize: number | "row"): Float32Array {
  const g = groupSize === "row" ? inFeatures : groupSize;
  const levels = 2 ** bits - 1;
  const out = new Float32Array(outFeatures * inFeatures);
  for (let r = 0; r < outFeatures; r++) {
    for (let a = r * inFeatures; a < (r + 1) * inFeatures; a += g) {
      const b = Math.min(a + g, (r + 1) * inFeatures);
      let lo = 0;
      let hi = 0;
      for (let i = a; i < b; i++) {
        lo = Math.min(lo, w[i]!);
        hi = Math.max(hi, w[i]!);
      }
      if (lo === hi) continue; // an all-zero group is exactly zero
      const scale = (hi - lo) / levels;
      const zero = Math.round(-lo / scale);
      for (let i = a; i < b; i++) out[i] = scale * (Math.min(levels, Math.max(0, Math.round(w[i]! / scale) + zero)) - zero);
    }
  }
  return out;
}

/**
 * The output reconstruction error of Ŵ under H = Σ xᵀx (f64 [in, in], row-major, symmetric):
 * sqrt(tr((Ŵ − W) H (Ŵ − W)ᵀ) / tr(W H Wᵀ)), i.e. ‖X(Ŵ − W)ᵀ‖ / ‖XWᵀ‖ over the calibration inputs X.
 * With H = I it is {@link relativeError}. In f64, with one f64 matmul on the cpu device (tests only).
 */
export function hessianError(wHat: ArrayLike<number>, w: ArrayLike<number>, h: ArrayLike<number>, outFeatures: number, inFeatures: number): number {
  const n = inFeatures;
  const size = outFeatures * n;
  // E = [Ŵ − W; W] [2·out, in]; P = E·H; the traces are the row dot products of E and P.
  const e = new Float64Array(2 * size);
  for (let i = 0; i < size; i++) {
    e[i] = wHat[i]! - w[i]!;
    e[size + i] = w[i]!;
  }
  const hv = h instanceof Float64Array ? h : Float64Array.from(h);
  const p = tidy(() => matmul(tensorFrom(e, { shape: [2 * outFeatures, n] }), tensorFrom(hv, { shape: [n, n] })).dataSync() as Float64Array);
  let num = 0;
  let den = 0;
  for (let i = 0; i < size; i++) {
    num += e[i]! * p[i]!;
    den += e[size + i]! * p[size + i]!;
  }
  return Math.sqrt(num / (den || 1));
}
