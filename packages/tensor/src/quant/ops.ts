// The quantized linear product: `quantMatmul` (y = x·Ŵᵀ, differentiable in x), its input
// gradient `quantMatmulInputGrad` (dx = dy·Ŵ) and `quantDequantize` (rows of Ŵ). Their kernels
// are the entries of the per-backend format table for (weight format, device), so one op serves
// every format and a backend adds formats with `registerQuantFormatKernels`, not new ops. The
// product is recorded as one autograd node that saves nothing: Ŵ is decoded again from the
// packed codes in backward. Inputs are f32 or bf16 (bf16: computed in f32 with f32 accumulation,
// the result rounded to bf16 once — by the kernels themselves where they take bf16, otherwise
// around them by a cast of the input to f32 and of the result back to bf16).
import { OpError } from "../errors.js";
import { checkInputs, runComposite, type OpDef } from "../op.js";
import { cast } from "../ops/cast.js";
import { contiguous } from "../ops/shape.js";
import { noGrad } from "../engine.js";
import type { Tensor } from "../tensor.js";
import { getQuantFormatKernels, type QuantFormatKernels } from "./table.js";
import type { PackedWeight } from "./weight.js";

/** Attributes of the quantized ops. */
export interface QuantMatmulAttrs {
  readonly weight: PackedWeight;
}

/** Attributes of {@link quantDequantize}. */
export interface QuantDequantizeAttrs extends QuantMatmulAttrs {
  readonly rowStart: number;
  readonly rowEnd: number;
}

/** Y = X·Ŵᵀ; backward dX = dY·Ŵ (by the format's `inputGrad` kernel). Saves nothing. */
export const quantMatmulDef: OpDef<QuantMatmulAttrs> = {
  name: "quantMatmul",
  backward: ([dy], ctx) => [quantMatmulInputGrad(dy!, ctx.attrs.weight)],
};

function checkWeight(op: string, x: Tensor, w: PackedWeight, lastDim: number, what: string): void {
  checkInputs(op, [x]);
  for (const [name, t] of Object.entries(w.tensors)) if (t) t.assertAlive(`${op} (weight tensor '${name}')`);
  if (x.device !== w.device) {
    throw new OpError(op, `the input is on '${x.device}' and the ${w.format} weight on '${w.device}': move one of them (weights are uploaded once, at load)`, [x]);
  }
  if (x.dtype !== "f32" && x.dtype !== "bf16") throw new OpError(op, `computes in f32 (or bf16, accumulated in f32), got ${x.dtype}; cast the input first`, [x]);
  if (x.rank !== 2 || x.shape[1] !== lastDim) {
    throw new OpError(op, `${what} must be [M, ${lastDim}] (weight [${w.outFeatures}, ${w.inFeatures}]), got [${x.shape}]`, [x]);
  }
}

/**
 * `x [M, in] · Ŵᵀ → [M, out]` with the packed weight `w`, by the kernels of its format on `x`'s
 * device, in x's dtype: f32, or bf16 (computed in f32 with f32 accumulation, rounded to bf16
 * once). Differentiable with respect to `x` only; the tape keeps no tensor for it.
 */
export function quantMatmul(x: Tensor, w: PackedWeight): Tensor {
  checkWeight("quantMatmul", x, w, w.inFeatures, "the input");
  const k = getQuantFormatKernels(w.format, x.device, "quantMatmul");
  return runComposite(quantMatmulDef, [x], { weight: w }, ([a]) => [withContiguous(a!, (c) => computeIn(k, c, (t) => k.forward(t, w)))])[0]!;
}

/** `dy [M, out] · Ŵ → [M, in]` in dy's dtype, f32 or bf16 as {@link quantMatmul} (not recorded for autograd). */
export function quantMatmulInputGrad(dy: Tensor, w: PackedWeight): Tensor {
  checkWeight("quantMatmulInputGrad", dy, w, w.outFeatures, "the output gradient");
  const k = getQuantFormatKernels(w.format, dy.device, "quantMatmulInputGrad");
  return noGrad(() => withContiguous(dy, (c) => computeIn(k, c, (t) => k.inputGrad(t, w))));
}

/** Rows `[rowStart, rowEnd)` of Ŵ as a new f32 tensor `[rowEnd − rowStart, in]` on the weight's device. */
export function quantDequantize(w: PackedWeight, rowStart: number, rowEnd: number): Tensor {
  if (!(Number.isInteger(rowStart) && Number.isInteger(rowEnd) && rowStart >= 0 && rowStart <= rowEnd && rowEnd <= w.outFeatures)) {
    throw new OpError("quantDequantize", `rows [${rowStart}, ${rowEnd}) are outside [0, ${w.outFeatures})`);
  }
  for (const [name, t] of Object.entries(w.tensors)) if (t) t.assertAlive(`quantDequantize (weight tensor '${name}')`);
  return getQuantFormatKernels(w.format, w.device, "quantDequantize").dequantize(w, rowStart, rowEnd);
}

/**
 * `fn(t)` where the kernels take t's dtype; for a bf16 `t` and kernels that take f32 only,
 * `fn` runs on an f32 cast of `t` and its f32 result is rounded to bf16 (the intermediates freed).
 */
function computeIn(k: QuantFormatKernels, t: Tensor, fn: (t: Tensor) => Tensor): Tensor {
  if (t.dtype !== "bf16" || k.bf16) return fn(t);
  const t32 = noGrad(() => cast(t, "f32"));
  let y32: Tensor;
  try {
    y32 = fn(t32);
  } finally {
    t32.dispose();
  }
  try {
    return noGrad(() => cast(y32, "bf16"));
  } finally {
    y32.dispose();
  }
}

/** Runs `fn` on `t`, or on a contiguous copy made by the device's own kernel (freed afterwards). */
function withContiguous(t: Tensor, fn: (c: Tensor) => Tensor): Tensor {
  if (t.isContiguous) return fn(t);
  const c = noGrad(() => contiguous(t));
  try {
    return fn(c);
  } finally {
    c.dispose();
  }
}
