/**
 * How far a quantized weight is from the dense one: the relative weight error ‖W − Ŵ‖_F / ‖W‖_F
 * and, given a Hessian H = XᵀX, the relative output error on the calibration inputs. Both are
 * computed on the weight's device, with Ŵ decoded there when the format has a kernel for it.
 * @module
 */
import { cast, hasQuantFormatKernels, matmul, mul, noGrad, quantDequantize, reshape, sub, sum, tensorFrom, tidy, type Device, type Tensor } from "@modulora/tensor";
import { packedWeightOf, type QuantizedWeight } from "@modulora/core";

/**
 * Ŵ as a dense f32 [out, in] tensor on `device`: decoded there by the format's dequantize kernel
 * when the packed tensors are on `device` and it has one (no transfer), else materialized on the
 * host and copied in once.
 */
export function materializeOn(q: QuantizedWeight, device: Device): Tensor {
  const packed = packedWeightOf(q);
  if (packed && packed.device === device && hasQuantFormatKernels(packed.format, device)) return quantDequantize(packed, 0, q.outFeatures);
  const hat = new Float32Array(q.outFeatures * q.inFeatures);
  q.materialize(0, q.outFeatures, hat);
  return tensorFrom(hat, { shape: [q.outFeatures, q.inFeatures], device });
}

/** sqrt(tr(ΔHΔᵀ) / tr(WHWᵀ)), Δ = Ŵ − W, on the device of its inputs (two numbers come back). */
export function outputErrorOf(weight: Tensor, hat: Tensor, hessian: Tensor): number {
  const [out, inF] = hat.shape as [number, number];
  return noGrad(() =>
    tidy(() => {
      const h = reshape(hessian, [inF, inF]);
      const w = cast(reshape(weight, [out, inF]), "f64");
      const delta = sub(cast(hat, "f64"), w); // exact: a difference of two f32 in f64
      const quadratic = (m: Tensor) => sum(mul(matmul(m, h), m));
      const den = quadratic(w).item();
      return den > 0 ? Math.sqrt(Math.max(0, quadratic(delta).item()) / den) : 0;
    }),
  );
}

/** ‖W − Ŵ‖_F / ‖W‖_F in f64 on the device of its inputs (two numbers come back). */
export function weightErrorOf(weight: Tensor, hat: Tensor): number {
  return noGrad(() =>
    tidy(() => {
      const w = cast(reshape(weight, hat.shape), "f64");
      const d = sub(w, cast(hat, "f64"));
      const num = sum(mul(d, d)).item();
      const den = sum(mul(w, w)).item();
      return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
    }),
  );
}

function checkMeasured(who: string, weight: Tensor, q: QuantizedWeight): void {
  if (weight.dtype !== "f32" || weight.size !== q.outFeatures * q.inFeatures) {
    throw new Error(`${who}: expects an f32 weight of [${q.outFeatures}, ${q.inFeatures}] elements like the quantized one, got ${weight.dtype} [${weight.shape}]`);
  }
}

/**
 * The output error of a quantized layer on inputs with Gram matrix H = XᵀX (f64 [in, in]):
 * ‖XŴᵀ − XWᵀ‖_F / ‖XWᵀ‖_F = sqrt(tr(ΔHΔᵀ) / tr(WHWᵀ)), Δ = Ŵ − W (two DGEMMs). Computed on the
 * weight's device (Ŵ decoded there, or copied in once), and two numbers come back.
 */
export function outputReconstructionError(weight: Tensor, q: QuantizedWeight, hessian: Tensor): number {
  const inF = q.inFeatures;
  if (weight.dtype !== "f32" || hessian.dtype !== "f64" || hessian.size !== inF * inF || weight.size !== q.outFeatures * inF) {
    throw new Error("outputReconstructionError: expects an f32 [out, in] weight and an f64 [in, in] Hessian");
  }
  if (weight.device !== hessian.device) throw new Error(`outputReconstructionError: the weight is on '${weight.device}', the Hessian on '${hessian.device}'; put them on one device`);
  const hat = materializeOn(q, weight.device);
  try {
    return outputErrorOf(weight, hat, hessian);
  } finally {
    hat.dispose();
  }
}

/** ‖W − Ŵ‖_F / ‖W‖_F, on the weight's device (Ŵ decoded there, or copied in once; two numbers back). */
export function reconstructionError(weight: Tensor, q: QuantizedWeight): number {
  const w = weight.dtype === "f32" ? weight : cast(weight, "f32");
  try {
    checkMeasured("reconstructionError", w, q);
    const hat = materializeOn(q, weight.device);
    try {
      return weightErrorOf(w, hat);
    } finally {
      hat.dispose();
    }
  } finally {
    if (w !== weight) w.dispose();
  }
}
