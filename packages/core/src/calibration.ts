// Calibration statistics computed where the model is: the driver feeds each linear layer's inputs
// and the sums stay on the device; a plugin reads them once per layer.
import { abs, addInPlace, cast, keep, matmul, noGrad, reshape, sum, tidy, zeros, type Tensor } from "@modulora/tensor";

/**
 * H += XᵀX in f64 for a layer's inputs x [..., in] (any float dtype), on x's device: the
 * `hessian` statistic of `CalibrationStats`. Pass `null` first; returns the (kept) sum,
 * f64 [in, in], which the caller disposes; `samples` is the caller's count of rows.
 */
export function accumulateHessian(h: Tensor | null, x: Tensor): Tensor {
  const inF = x.shape[x.rank - 1]!;
  if (h && (h.dtype !== "f64" || h.rank !== 2 || h.shape[0] !== inF || h.shape[1] !== inF || h.device !== x.device)) {
    throw new RangeError(`accumulateHessian: the sum must be f64 [${inF}, ${inF}] on '${x.device}', got ${h.dtype} [${h.shape}] on '${h.device}'`);
  }
  return noGrad(() => {
    const acc = h ?? keep(zeros([inF, inF], { dtype: "f64", device: x.device }));
    tidy(() => {
      const x2 = cast(reshape(x, [-1, inF]), "f64"); // [rows, in]
      addInPlace(acc, matmul(x2, x2, { transA: true })); // [in, in]
    });
    return acc;
  });
}

/**
 * S += Σ_rows |x| per input channel, in f32, on x's device (divide by the row count for the
 * `activation-scales` statistic). Pass `null` first; returns the kept sum [in].
 */
export function accumulateAbsSum(s: Tensor | null, x: Tensor): Tensor {
  const inF = x.shape[x.rank - 1]!;
  return noGrad(() => {
    const acc = s ?? keep(zeros([inF], { dtype: "f32", device: x.device }));
    tidy(() => addInPlace(acc, sum(abs(cast(reshape(x, [-1, inF]), "f32")), 0)));
    return acc;
  });
}
