import { native } from "./native.js";

/** Raw OPTQ exports of the addon (see {@link optqQuantize}). */
export interface RawOptq {
  optqQuantize(
    w: Float32Array, h: Float64Array, outFeatures: number, inFeatures: number, bits: number, groupSize: number,
    symmetric: boolean, actOrder: boolean, staticGroups: boolean, percdamp: number, blockSize: number,
    codes: Uint8Array, scales: Float32Array, zeros: Uint8Array, gIdx: Int32Array,
  ): void;
  /**
   * `optqQuantize` on a libuv worker thread. Throws on bad arguments; rejects with the error
   * `optqQuantize` would throw when quantizing fails. Every array is held until the promise
   * settles and must not be touched by JS code before then.
   */
  optqQuantizeAsync(
    w: Float32Array, h: Float64Array, outFeatures: number, inFeatures: number, bits: number, groupSize: number,
    symmetric: boolean, actOrder: boolean, staticGroups: boolean, percdamp: number, blockSize: number,
    codes: Uint8Array, scales: Float32Array, zeros: Uint8Array, gIdx: Int32Array,
  ): Promise<void>;
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
  const { r, args } = optqCall(w, h, outFeatures, inFeatures, options);
  native().optqQuantize(...args);
  return r;
}

/**
 * {@link optqQuantize} off the main thread: the quantization of the layer runs on a libuv worker
 * thread, so the event loop stays free (timers, I/O and other promises run meanwhile). The result
 * is bit-identical to {@link optqQuantize}'s.
 *
 * `h` is copied first (as by {@link optqQuantize}) and the outputs are fresh arrays, but `w` is
 * read by the worker while the promise is pending: do not modify `w` (or release the storage
 * behind it) until the promise settles. Native kernels called meanwhile from the main thread
 * (a GEMM, say) are safe: the native thread pool runs one parallel region at a time and makes a
 * second caller wait for its turn.
 *
 * Rejects with the `TypeError`/`RangeError` that {@link optqQuantize} would throw, with the same
 * message (it names `optqQuantize`), on bad arguments and when H is not positive definite after
 * damping.
 */
export async function optqQuantizeAsync(w: Float32Array, h: Float64Array, outFeatures: number, inFeatures: number, options: OptqOptions): Promise<OptqResult> {
  const { r, args } = optqCall(w, h, outFeatures, inFeatures, options);
  await native().optqQuantizeAsync(...args);
  return r;
}

type OptqArgs = Parameters<RawOptq["optqQuantize"]>;

// The outputs, sized from the arguments (bad sizes give empty arrays; the addon names the error),
// and the raw call's arguments.
function optqCall(w: Float32Array, h: Float64Array, outFeatures: number, inFeatures: number, options: OptqOptions): { r: OptqResult; args: OptqArgs } {
  const groupSize = options.groupSize;
  const groups = Number.isInteger(groupSize) && groupSize > 0 ? Math.floor(inFeatures / groupSize) : 0;
  const size = Number.isInteger(outFeatures) && Number.isInteger(inFeatures) && outFeatures > 0 && inFeatures > 0 ? outFeatures * inFeatures : 0;
  const r: OptqResult = {
    codes: new Uint8Array(size), scales: new Float32Array(outFeatures > 0 ? outFeatures * groups : 0),
    zeros: new Uint8Array(outFeatures > 0 ? outFeatures * groups : 0), gIdx: new Int32Array(inFeatures > 0 ? inFeatures : 0),
  };
  // The kernel overwrites H (dead columns); the caller's copy stays intact.
  const hCopy = h instanceof Float64Array ? Float64Array.from(h) : h;
  const args: OptqArgs = [
    w, hCopy, outFeatures, inFeatures, options.bits, groupSize, options.symmetric ?? false, options.actOrder ?? false,
    options.staticGroups ?? false, options.percdamp ?? 0.01, options.blockSize ?? 128, r.codes, r.scales, r.zeros, r.gIdx,
  ];
  return { r, args };
}
