/**
 * `@modulora/quantizer-hqq`: Half-Quadratic Quantization (HQQ, Badri & Shaji 2023), calibration
 * free, producing the `affine` format with real-valued zero points.
 *
 * Per group of `groupSize` input columns of each row, HQQ starts from the min-max grid and fits
 * the zero point (and, with `optimizeScale`, the scale) against Σ|w − ŵ|^p with p < 1 by
 * half-quadratic splitting: W_e = shrink_p(W − Ŵ, β), z = mean(q − (W − W_e)/s), β ← κβ, all
 * groups of the weight together until the mean |W − Ŵ| stops falling (see {@link hqqOptimize}). The format stores scales and zeros as f16, so the codes are computed
 * last, on the stored grid: q = clamp(round(w / f16(s) + f16(z)), 0, 2^b − 1), and the weight
 * dequantizes to f16(s)·(q − f16(z)).
 * @packageDocumentation
 */
import {
  checkQuantizeInputs, createAffineWeight, resolveQuantizerOptions, roundToF16, QUANTIZER_SPEC_VERSION,
  type AffineWeight, type QuantizeOptions, type QuantizerOptionSpec, type QuantizerPlugin,
} from "@modulora/core";
import type { Tensor } from "@modulora/tensor";
import { HQQ_DEFAULTS, hqqCode, hqqOptimize, type HqqParams } from "./hqq.js";

export { HQQ_DEFAULTS, HQQ_MAX_ZERO, HQQ_MIN_SCALE, hqqCode, hqqMinMax, hqqOptimize, hqqOptimizeGroup, hqqStep, lpError, roundHalfEven, shrinkLp, type HqqFit, type HqqParams, type HqqStep } from "./hqq.js";

/** Largest finite f16: a scale above it cannot be stored. */
const F16_MAX = 65504;

/** HQQ's own options (flags `--lp-norm`, `--beta`, `--kappa`, `--iterations`, `--optimize-scale`). */
export const HQQ_OPTIONS: readonly QuantizerOptionSpec[] = [
  {
    name: "lpNorm", type: "number", default: HQQ_DEFAULTS.lpNorm, max: 1,
    help: "p of the lp error HQQ minimizes, in (0, 1] (p < 1 tolerates outliers)",
    check: (v) => ((v as number) > 0 ? undefined : "p must be above 0 (and at most 1); the write-up uses 0.7"),
  },
  {
    name: "beta", type: "number", default: HQQ_DEFAULTS.beta,
    help: "initial weight β of the half-quadratic penalty (> 0)",
    check: (v) => ((v as number) > 0 ? undefined : "β must be above 0; the write-up uses 10"),
  },
  {
    name: "kappa", type: "number", default: HQQ_DEFAULTS.kappa,
    help: "growth of β per iteration (> 1)",
    check: (v) => ((v as number) > 1 ? undefined : "κ must be above 1 so that β grows; the write-up uses 1.01"),
  },
  { name: "iterations", type: "int", default: HQQ_DEFAULTS.iterations, min: 0, help: "HQQ updates per group (0: the min-max grid with a real zero point)" },
  { name: "optimizeScale", type: "boolean", default: HQQ_DEFAULTS.optimizeScale, help: "also fit the scale (least squares with the zero point) in each update" },
];

/** The HQQ parameters of a quantize call: the plugin's options resolved (checked, defaults filled). */
export function hqqParams(options: Readonly<Record<string, unknown>>): HqqParams {
  const o = resolveQuantizerOptions(hqqQuantizer, options);
  return { lpNorm: o.lpNorm as number, beta: o.beta as number, kappa: o.kappa as number, iterations: o.iterations as number, optimizeScale: o.optimizeScale as boolean };
}

/**
 * Quantizes W [out, in] (f32, on any device) with HQQ into an `affine` weight with real zero
 * points on the same device. Options: `bits` (2, 3, 4, 8), `groupSize`, and HQQ's own
 * ({@link HQQ_OPTIONS}); `symmetric: true` is refused (HQQ fits the zero point).
 */
export function quantizeHqq(weight: Tensor, options: QuantizeOptions): AffineWeight {
  const params = hqqParams(options);
  const groupSize = checkQuantizeInputs(hqqQuantizer, weight, options);
  if (options.symmetric) throw new RangeError(`quantizer 'hqq': symmetric quantization is not supported (HQQ fits a real zero point per group); leave symmetric off`);
  const bits = options.bits;
  const maxq = (1 << bits) - 1;
  const [out, inF] = weight.shape as [number, number];
  // One copy out of the weight; the codes are computed on the host and the packed tensors
  // uploaded to the weight's device by createAffineWeight.
  const w = weight.dataSync() as Float32Array;
  const groups = inF / groupSize;
  const fit = hqqOptimize(w, groupSize, bits, params);
  const scales = Float32Array.from(fit.scales);
  const zeros = Float32Array.from(fit.zeros);
  for (let k = 0; k < scales.length; k++) {
    if (!(scales[k]! <= F16_MAX)) throw new RangeError(`quantizer 'hqq': row ${Math.floor(k / groups)}, group ${k % groups} needs a scale of ${scales[k]}, beyond f16's ${F16_MAX}; the weight's values are too large for the affine format`);
  }
  // The stored grid: scales and zeros as f16 (what createAffineWeight keeps), and the codes
  // chosen on that grid, so that the weight dequantizes to f16(s)·(q − f16(z)) with q the
  // nearest code to w.
  roundToF16(scales);
  roundToF16(zeros);
  const codes = new Uint8Array(out * inF);
  for (let j = 0; j < out; j++) {
    for (let g = 0; g < groups; g++) {
      const s = scales[j * groups + g]!;
      const z = zeros[j * groups + g]!;
      const a = j * inF + g * groupSize;
      for (let i = a; i < a + groupSize; i++) codes[i] = hqqCode(w[i]!, s, z, maxq);
    }
  }
  return createAffineWeight({ outFeatures: out, inFeatures: inF, bits, groupSize, codes, scales, zeros, symmetric: false, device: weight.device });
}

/** The HQQ plugin (spec version 1). Register it with `registerQuantizer(hqqQuantizer)`. */
export const hqqQuantizer: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "hqq",
  description: "Half-Quadratic Quantization: calibration-free, zero points fitted against an lp error (p < 1), real zeros",
  calibration: "none",
  supportedBits: [2, 3, 4, 8],
  defaultGroupSize: 64,
  supportsSymmetric: false,
  options: HQQ_OPTIONS,
  quantize: (weight, options) => quantizeHqq(weight, options),
};
