// Calibration statistics computed where the model is: the driver feeds each linear layer's inputs
// and the sums stay on the device; a plugin reads them once per layer.
import { abs, addInPlace, cast, keep, matmul, noGrad, reshape, sum, tidy, zeros, type Tensor } from "@modulora/tensor";

/**
 * H += XᵀX for a layer's inputs x [..., in] (any float dtype), on x's device: the `hessian`
 * statistic of `CalibrationStats`. Each call's XᵀX is one f32 GEMM (a few thousand rows: f32 is
 * exact enough, and 2–3× faster than f64), added into the f64 sum. Pass `null` first; returns the
 * (kept) sum, f64 [in, in], which the caller disposes; nothing is read back.
 */
export function accumulateHessian(h: Tensor | null, x: Tensor): Tensor {
  const inF = x.shape[x.rank - 1]!;
  if (h && (h.dtype !== "f64" || h.rank !== 2 || h.shape[0] !== inF || h.shape[1] !== inF || h.device !== x.device)) {
    throw new RangeError(`accumulateHessian: the sum must be f64 [${inF}, ${inF}] on '${x.device}', got ${h.dtype} [${h.shape}] on '${h.device}'`);
  }
  return noGrad(() => {
    const acc = h ?? keep(zeros([inF, inF], { dtype: "f64", device: x.device }));
    tidy(() => {
      const x2 = reshape(x.dtype === "f32" ? x : cast(x, "f32"), [-1, inF]); // [rows, in]
      addInPlace(acc, cast(matmul(x2, x2, { transA: true }), "f64")); // [in, in]
    });
    return acc;
  });
}

/**
 * S += Σ_rows |x| per input channel, in f64, on x's device (divide by the row count for the
 * `activation-scales` statistic). Pass `null` first; returns the kept sum, f64 [in].
 */
export function accumulateAbsSum(s: Tensor | null, x: Tensor): Tensor {
  const inF = x.shape[x.rank - 1]!;
  if (s && (s.dtype !== "f64" || s.rank !== 1 || s.shape[0] !== inF || s.device !== x.device)) {
    throw new RangeError(`accumulateAbsSum: the sum must be f64 [${inF}] on '${x.device}', got ${s.dtype} [${s.shape}] on '${s.device}'`);
  }
  return noGrad(() => {
    const acc = s ?? keep(zeros([inF], { dtype: "f64", device: x.device }));
    tidy(() => addInPlace(acc, sum(abs(cast(reshape(x, [-1, inF]), "f64")), 0)));
    return acc;
  });
}
