/**
 * `@modulora/quantizer-rtn`: round-to-nearest quantization with GPTQ's reference min-max rule,
 * producing the `affine` format.
 *
 * Asymmetric (default), per row or per group, all arithmetic in f32:
 * `xmin = min(0, min w)`, `xmax = max(0, max w)` (the range always contains 0; both 0 → [−1, 1]),
 * `scale = (xmax − xmin) / (2^b − 1)`, `zero = round(−xmin / scale)`,
 * `q = clamp(round(w / scale) + zero, 0, 2^b − 1)`, `ŵ = scale · (q − zero)`, with `round` half to
 * even. Symmetric: `xmax = max(|xmin|, xmax)`, `xmin = −xmax` where `xmin < 0`, zero = 2^(b−1).
 * Scales are stored rounded to f16.
 * @packageDocumentation
 */
import { checkQuantizeInputs, createAffineWeight, QUANTIZER_SPEC_VERSION, type AffineWeight, type QuantizeOptions, type QuantizerPlugin } from "@modulora/core";
import type { Tensor } from "@modulora/tensor";

const f = Math.fround;

/** Round half to even (as torch.round), for finite x. */
export function roundHalfEven(x: number): number {
  const r = Math.floor(x);
  const d = x - r;
  // (+ 0 turns −0 into 0)
  if (d > 0.5) return r + 1;
  if (d < 0.5) return r + 0;
  return r % 2 === 0 ? r + 0 : r + 1;
}

/** Scale and zero point of one group, exactly as GPTQ's reference quantizer computes them in f32. */
export function rtnParams(values: Float32Array, start: number, end: number, bits: number, symmetric: boolean): { scale: number; zero: number } {
  const maxq = (1 << bits) - 1;
  let xmin = 0;
  let xmax = 0;
  for (let i = start; i < end; i++) {
    const v = values[i]!;
    if (v < xmin) xmin = v;
    if (v > xmax) xmax = v;
  }
  if (symmetric) {
    xmax = Math.max(Math.abs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  const scale = f(f(xmax - xmin) / maxq);
  const zero = symmetric ? (maxq + 1) / 2 : roundHalfEven(f(-xmin / scale));
  return { scale, zero };
}

/** The code of `w` for (scale, zero): clamp(round(w / scale) + zero, 0, 2^b − 1). */
export function rtnCode(w: number, scale: number, zero: number, bits: number): number {
  const q = roundHalfEven(f(w / scale)) + zero;
  return Math.min(Math.max(q, 0), (1 << bits) - 1);
}

/** Quantizes W [out, in] (f32, on any device) with round-to-nearest into an `affine` weight on the same device. */
export function quantizeRtn(weight: Tensor, options: QuantizeOptions): AffineWeight {
  const groupSize = checkQuantizeInputs(rtnQuantizer, weight, options);
  const bits = options.bits;
  const symmetric = options.symmetric ?? false;
  const [out, inF] = weight.shape as [number, number];
  // One copy out of the weight (from whatever device it is on); the codes are computed on the
  // host and the packed tensors uploaded to the weight's device.
  const w = weight.dataSync() as Float32Array;
  const groups = inF / groupSize;
  const codes = new Uint8Array(out * inF);
  const scales = new Float32Array(out * groups);
  const zeros = new Uint8Array(out * groups);
  for (let j = 0; j < out; j++) {
    for (let g = 0; g < groups; g++) {
      const a = j * inF + g * groupSize;
      const { scale, zero } = rtnParams(w, a, a + groupSize, bits, symmetric);
      scales[j * groups + g] = scale;
      zeros[j * groups + g] = zero;
      for (let i = a; i < a + groupSize; i++) codes[i] = rtnCode(w[i]!, scale, zero, bits);
    }
  }
  return createAffineWeight({ outFeatures: out, inFeatures: inF, bits, groupSize, codes, scales, zeros, symmetric, device: weight.device });
}

/** The RTN plugin (spec version 1). Register it with `registerQuantizer(rtnQuantizer)`. */
export const rtnQuantizer: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "rtn",
  description: "round-to-nearest, GPTQ's min-max rule (asymmetric or symmetric), per row or grouped",
  calibration: "none",
  supportedBits: [2, 3, 4, 8],
  supportsSymmetric: true,
  quantize: (weight, options) => quantizeRtn(weight, options),
};
