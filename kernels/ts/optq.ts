import { native } from "./native.js";

/** Raw OPTQ exports of the addon (see {@link optqQuantize}). */
export interface RawOptq {
  optqQuantize(
    w: Float32Array, h: Float64Array, outFeatures: number, inFeatures: number, bits: number, groupSize: number,
    symmetric: boolean, actOrder: boolean, staticGroups: boolean, percdamp: number, blockSize: number,
    codes: Uint8Array, scales: Float32Array, zeros: Uint8Array, gIdx: Int32Array,
  ): void;
}

/** Options of {@link optqQuantize}. */
export interface OptqOptions {
  /** 2, 3, 4 or 8. */
  bits: number;
  /** Input columns per group (divides `inFeatures`); `inFeatures` for one group per row. */
  groupSize: number;
  /** Symmetric grid (zero = 2^(b−1)); default false. */
  symmetric?: boolean;
  /** Quantize columns by descending diag(H) and record `gIdx`; default false. */
  actOrder?: boolean;
  /** Group parameters computed up front from the original W; default false. */
  staticGroups?: boolean;
  /** Damping: H += percdamp · mean(diag H) · I; default 0.01. */
  percdamp?: number;
  /** Columns per lazy batch update; default 128. */
  blockSize?: number;
}

/** What {@link optqQuantize} returns: unpacked `affine` parts. */
export interface OptqResult {
  /** u8 [out, in], original column order. */
  codes: Uint8Array;
  /** f32 [out, groups]. */
  scales: Float32Array;
  /** u8 [out, groups]. */
  zeros: Uint8Array;
  /** i32 [in]: group of each input column (⌊i / groupSize⌋ without act-order). */
  gIdx: Int32Array;
}

/**
 * OPTQ/GPTQ (Frantar et al., 2022) on one weight W [out, in] (f32, row-major) with the Hessian
 * H = (2/n) Σ x xᵀ of its inputs (f64 [in, in], already scaled; not modified). Dead inputs
 * (H[i,i] = 0) get H[i,i] = 1 and W[:, i] = 0; H is damped by `percdamp · mean(diag H)`; columns
 * are quantized in blocks of `blockSize` with GPTQ's min-max rule per group, each column's error
 * fed forward through the upper Cholesky factor of H⁻¹. The numerics run natively in f64. Throws
 * a `TypeError`/`RangeError` naming `optqQuantize` on bad input, and when H is not positive
 * definite after damping.
 */
export function optqQuantize(w: Float32Array, h: Float64Array, outFeatures: number, inFeatures: number, options: OptqOptions): OptqResult {
  const groupSize = options.groupSize;
  const groups = Number.isInteger(groupSize) && groupSize > 0 ? Math.floor(inFeatures / groupSize) : 0;
  const size = Number.isInteger(outFeatures) && Number.isInteger(inFeatures) && outFeatures > 0 && inFeatures > 0 ? outFeatures * inFeatures : 0;
  const r: OptqResult = {
    codes: new Uint8Array(size), scales: new Float32Array(outFeatures > 0 ? outFeatures * groups : 0),
    zeros: new Uint8Array(outFeatures > 0 ? outFeatures * groups : 0), gIdx: new Int32Array(inFeatures > 0 ? inFeatures : 0),
  };
  // The kernel overwrites H (dead columns); the caller's copy stays intact.
  const hCopy = h instanceof Float64Array ? Float64Array.from(h) : h;
  native().optqQuantize(
    w, hCopy, outFeatures, inFeatures, options.bits, groupSize, options.symmetric ?? false, options.actOrder ?? false,
    options.staticGroups ?? false, options.percdamp ?? 0.01, options.blockSize ?? 128, r.codes, r.scales, r.zeros, r.gIdx,
  );
  return r;
}
