// In-place updates (optimizer steps, gradient accumulation). They are not recorded for
// autograd; writing into a tensor that requires grad is only allowed inside noGrad().
import { isGradEnabled } from "../engine.js";
import { OpError } from "../errors.js";
import { checkFloat, checkInputs } from "../op.js";
import { getKernel } from "../backend.js";
import { broadcastShapes, formatShape, shapesEqual } from "../shape.js";
import type { Tensor } from "../tensor.js";

/** Attributes of the in-place kernels. */
export interface InPlaceAttrs {
  readonly alpha: number;
  readonly beta?: number;
}

function checkDst(op: string, dst: Tensor, src?: Tensor): void {
  checkInputs(op, src ? [dst, src] : [dst]);
  if (!dst.isContiguous) throw new OpError(op, "the destination of an in-place update must be contiguous", [dst]);
  if (dst.requiresGrad && isGradEnabled()) {
    throw new OpError(op, "in-place update of a tensor that requires grad; do it inside noGrad() (as optimizers do)", [dst]);
  }
  if (src) {
    const b = broadcastShapes(src.shape, dst.shape);
    if (!b || !shapesEqual(b, dst.shape)) throw new OpError(op, `source ${formatShape(src.shape)} does not broadcast to the destination ${formatShape(dst.shape)}`, [dst, src]);
  }
}

function run(op: string, inputs: Tensor[], attrs: InPlaceAttrs): void {
  getKernel<InPlaceAttrs>(op, inputs[0]!.device)(inputs, attrs);
  inputs[0]!.storage.version++;
}

/** `dst[...] = src` (broadcast). Returns `dst`. */
export function assign(dst: Tensor, src: Tensor): Tensor {
  checkDst("assign", dst, src);
  if (src.dtype !== dst.dtype) throw new OpError("assign", "source and destination dtypes differ; cast first", [dst, src]);
  run("assign", [dst, src], { alpha: 1 });
  return dst;
}

/** `dst += alpha * src` (broadcast). Returns `dst`. */
export function addInPlace(dst: Tensor, src: Tensor, alpha = 1): Tensor {
  checkDst("addInPlace", dst, src);
  checkFloat("addInPlace", [dst, src]);
  run("addInPlace", [dst, src], { alpha });
  return dst;
}

/** `dst = alpha * dst + beta`. Returns `dst`. */
export function scaleInPlace(dst: Tensor, alpha: number, beta = 0): Tensor {
  checkDst("scaleInPlace", dst);
  checkFloat("scaleInPlace", [dst]);
  run("scaleInPlace", [dst], { alpha, beta });
  return dst;
}

/** Sets every element of `dst` to `value`. Returns `dst`. */
export function fillInPlace(dst: Tensor, value: number): Tensor {
  checkDst("fillInPlace", dst);
  checkFloat("fillInPlace", [dst]);
  run("fillInPlace", [dst], { alpha: value });
  return dst;
}
