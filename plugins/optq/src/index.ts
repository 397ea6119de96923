/**
 * `@modulora/quantizer-optq`: OPTQ/GPTQ (Frantar et al., "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers", 2022), producing the `affine` format with
 * integer zero points (and `g_idx` with act-order), so checkpoints are written in GPTQ's layout.
 *
 * Per linear layer W [out, in], from the calibration driver's Σ xᵀx over n input rows:
 * H = (2/n) Σ x xᵀ; dead inputs (H[i,i] = 0) get H[i,i] = 1 and W[:, i] = 0; with `actOrder`
 * columns are processed by descending diag(H); H += percdamp · mean(diag H) · I; Hinv = upper
 * Cholesky factor of H⁻¹; columns are quantized in blocks of `blockSize` with lazy batch updates,
 * each column's error (w − q) / Hinv[i,i] fed forward to the later columns through its row of
 * Hinv. Group parameters follow GPTQ's min-max rule (the same rule as RTN, in f32; the kernels'
 * tests check it against a TypeScript reference), computed at each group's first column from the
 * current, already-updated weights (or up front from the original W with `staticGroups`). The
 * numerics are core's `optqSolve`: the `optqSolve` kernel of the weight's device (natively in f64
 * on `cpu`), or a host copy where the device has none.
 * @packageDocumentation
 */
import {
  checkQuantizeInputs, createAffineWeight, optqSolve, optqSolveAsync, QUANTIZER_SPEC_VERSION,
  type AffineWeight, type CalibrationStats, type OptqSolution, type QuantizeOptions, type QuantizerPlugin,
} from "@modulora/core";
import type { Tensor } from "@modulora/tensor";

/** Options of {@link quantizeOptq} beyond `bits`, `groupSize` and `symmetric`. */
export interface OptqPluginOptions {
  /** Quantize columns by descending diag(H) and record g_idx (GPTQ's `desc_act`); default false. */
  actOrder?: boolean;
  /** Group parameters computed up front from the original W (GPTQ's `static_groups`); default false. */
  staticGroups?: boolean;
  /** Dampening: H += percdamp · mean(diag H) · I; default 0.01. */
  percdamp?: number;
  /** Columns per lazy batch update; default 128. */
  blockSize?: number;
}

function flag(options: QuantizeOptions, key: string, fallback: boolean): boolean {
  const v = options[key];
  if (v === undefined) return fallback;
  if (typeof v !== "boolean") throw new TypeError(`optq: option ${key} must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Quantizes W [out, in] (f32, on any device) with OPTQ into an `affine` weight on the same device. `stats.hessian` is the driver's
 * Σ xᵀx (f64 [in, in]) over `stats.samples` rows; it is scaled by 2/n here and not modified.
 */
export function quantizeOptq(weight: Tensor, options: QuantizeOptions, stats?: CalibrationStats): AffineWeight {
  const job = prepareOptq(weight, options, stats);
  return job.finish(optqSolve(weight, job.hessian, job.options));
}

/**
 * {@link quantizeOptq} with the column loop off the event loop (on `cpu`, the addon's AsyncWorker), so the
 * event loop stays free while a layer is quantized: what the plugin runs. Same result, bit for bit.
 */
export async function quantizeOptqAsync(weight: Tensor, options: QuantizeOptions, stats?: CalibrationStats): Promise<AffineWeight> {
  const job = prepareOptq(weight, options, stats);
  return job.finish(await optqSolveAsync(weight, job.hessian, job.options));
}

/** Checks the inputs; `finish` builds the weight on W's device from the solve. */
function prepareOptq(weight: Tensor, options: QuantizeOptions, stats?: CalibrationStats) {
  const groupSize = checkQuantizeInputs(optqQuantizer, weight, options);
  const [out, inF] = weight.shape as [number, number];
  const h = stats?.hessian;
  if (!h) throw new Error("optq needs calibration statistics (a Hessian); pass calibration text (quantizeModel's calibration option)");
  if (h.dtype !== "f64" || h.shape.length !== 2 || h.shape[0] !== inF || h.shape[1] !== inF) {
    throw new RangeError(`optq: the Hessian must be f64 [${inF}, ${inF}] for a weight [${out}, ${inF}], got ${h.dtype} [${h.shape.join(", ")}]`);
  }
  const n = stats!.samples;
  if (!(Number.isFinite(n) && n > 0)) throw new RangeError(`optq: stats.samples must be a positive number of calibration rows, got ${n}`);
  const percdamp = options.percdamp ?? 0.01;
  if (typeof percdamp !== "number" || !(percdamp >= 0) || !Number.isFinite(percdamp)) throw new RangeError(`optq: percdamp must be a finite number >= 0, got ${JSON.stringify(percdamp)}`);
  const blockSize = options.blockSize ?? 128;
  if (!Number.isInteger(blockSize) || (blockSize as number) < 1) throw new RangeError(`optq: blockSize must be a positive integer, got ${JSON.stringify(blockSize)}`);
  const symmetric = flag(options, "symmetric", false);
  const actOrder = flag(options, "actOrder", false);
  const staticGroups = flag(options, "staticGroups", false);

  // H = (2/n) Σ x xᵀ, scaled by the solve (the caller's Hessian is not modified). W and H are
  // read where they are (a device without the solve's kernel copies each out once), and the
  // packed tensors are uploaded to the weight's device.
  return {
    hessian: h,
    options: { bits: options.bits, groupSize, symmetric, actOrder, staticGroups, percdamp, blockSize: blockSize as number, hessianScale: 2 / n },
    finish: (r: OptqSolution): AffineWeight =>
      createAffineWeight({
        outFeatures: out, inFeatures: inF, bits: options.bits, groupSize, codes: r.codes, scales: r.scales, zeros: r.zeros, symmetric,
        gIdx: actOrder ? r.gIdx : null, device: weight.device,
      }),
  };
}

/** The OPTQ plugin (spec version 1). Register it with `registerQuantizer(optqQuantizer)`. */
export const optqQuantizer: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "optq",
  description: "OPTQ/GPTQ: Hessian-calibrated error feedback (act-order, static groups, damping), GPTQ layout",
  calibration: "hessian",
  supportedBits: [2, 3, 4, 8],
  supportsSymmetric: true,
  options: [
    { name: "actOrder", type: "boolean", default: false, help: "quantize columns by descending activation energy diag(H) and record g_idx (GPTQ's desc_act)" },
    { name: "staticGroups", type: "boolean", default: false, help: "every group's scale and zero from the original weights, computed up front (GPTQ's static_groups)" },
    { name: "percdamp", type: "number", min: 0, default: 0.01, help: "damping: H += percdamp · mean(diag H) · I (raise it if a Hessian is not positive definite)" },
    { name: "blockSize", type: "int", min: 1, default: 128, help: "columns per lazy batch update (a speed setting: results agree up to rounding)" },
  ],
  quantize: (weight, options, stats) => quantizeOptqAsync(weight, options, stats),
};
