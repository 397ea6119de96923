// Shape kernels of the CUDA backend. reshape (of contiguous data), permute and slice are views,
// exactly as on the CPU; every copy (contiguous, clone, a reshape of a non-contiguous view,
// concat, broadcastTo, sliceGrad) is the native strided copy `copyStrided` (any dtype: 1, 2, 4 or
// 8-byte elements), reading the source through its strides and writing a strided view of the output.
import { registerKernel } from "../backend.js";
import { dtypeInfo } from "../dtype.js";
import type { BroadcastAttrs, ConcatAttrs, PermuteAttrs, ReshapeAttrs, SliceAttrs, SliceGradAttrs } from "../ops/shape.js";
import { broadcastStrides, contiguousStrides } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { OpError } from "../errors.js";
import { code, cudaFn, deviceIndex, empty, launch, ptr } from "./util.js";

const FLOAT = new Set(["f32", "f64", "bf16"]);

/** Throws an OpError unless every input is f32, f64 or bf16 (the dtypes the float kernels compute). */
export function checkFloatInputs(op: string, inputs: readonly Tensor[]): void {
  for (const t of inputs) {
    if (!FLOAT.has(t.dtype)) throw new OpError(op, `dtype ${t.dtype} is not computed on cuda (f32, f64 and bf16 are)`, inputs);
  }
}

/**
 * Queues a copy of `src` (read with `srcStrides`, default its own) into `dst` viewed with `shape`
 * and `dstStrides` from element offset `dstOffset` of `dst`'s first element.
 */
export function cudaCopy(src: Tensor, dst: Tensor, shape: readonly number[], srcStrides: readonly number[], dstStrides: readonly number[], dstOffset = 0): void {
  const size = dtypeInfo(dst.dtype).size;
  cudaFn("copyStrided")(deviceIndex(dst.device), size, [...shape], ptr(src), [...srcStrides], ptr(dst) + dstOffset * size, [...dstStrides]);
}

/** A new contiguous copy of the view `x` on its device. */
export function cudaContiguousCopy(x: Tensor, op = "contiguous"): Tensor {
  const y = empty(x.shape, x.dtype, x.device);
  if (y.size > 0) launch(op, [x], () => cudaCopy(x, y, x.shape, x.strides, y.strides));
  return y;
}

/** Zeros of `t`'s dtype written over the whole of the contiguous tensor `t`. */
export function cudaZero(t: Tensor): void {
  if (t.size > 0) cudaFn("fill")(deviceIndex(t.device), code(t.dtype), [...t.shape], ptr(t), [...t.strides], 0, false);
}

/** Registers the shape kernels (views, copies, concat) for `family`. */
export function registerCudaShape(family: string): void {
  registerKernel<ReshapeAttrs>("reshape", family, ([x], { shape }) => {
    if (x!.isContiguous) return [x!.viewAs(shape, contiguousStrides(shape), x!.offset)];
    const c = cudaContiguousCopy(x!, "reshape");
    const v = c.viewAs(shape, contiguousStrides(shape), 0);
    c.dispose();
    return [v];
  });
  registerKernel<PermuteAttrs>("permute", family, ([x], { perm }) => [
    x!.viewAs(perm.map((p) => x!.shape[p]!), perm.map((p) => x!.strides[p]!), x!.offset),
  ]);
  registerKernel<SliceAttrs>("slice", family, ([x], { starts, ends }) => {
    let offset = x!.offset;
    starts.forEach((s, i) => (offset += s * x!.strides[i]!));
    const shape = starts.map((s, i) => ends[i]! - s);
    // An empty slice may point past the storage: keep it at the view's own offset.
    return [x!.viewAs(shape, x!.strides, shape.includes(0) ? x!.offset : offset)];
  });
  registerKernel<SliceGradAttrs>("sliceGrad", family, (inputs, { shape, starts }) => {
    const dy = inputs[0]!;
    const y = empty(shape, dy.dtype, dy.device);
    launch("sliceGrad", inputs, () => {
      cudaZero(y); // outside the slice the gradient is zero
      if (dy.size === 0) return;
      let offset = 0;
      starts.forEach((s, i) => (offset += s * y.strides[i]!));
      cudaCopy(dy, y, dy.shape, dy.strides, y.strides, offset);
    });
    return [y];
  });
  registerKernel<ConcatAttrs>("concat", family, (inputs, { axis }) => {
    const shape = [...inputs[0]!.shape];
    shape[axis] = inputs.reduce((s, t) => s + t.shape[axis]!, 0);
    const y = empty(shape, inputs[0]!.dtype, inputs[0]!.device);
    launch("concat", inputs, () => {
      let start = 0;
      for (const t of inputs) {
        if (t.size > 0) cudaCopy(t, y, t.shape, t.strides, y.strides, start * y.strides[axis]!);
        start += t.shape[axis]!;
      }
    });
    return [y];
  });
  registerKernel<BroadcastAttrs>("broadcastTo", family, (inputs, { shape }) => {
    const x = inputs[0]!;
    const y = empty(shape, x.dtype, x.device);
    if (y.size > 0) launch("broadcastTo", inputs, () => cudaCopy(x, y, shape, broadcastStrides(x.shape, x.strides, shape), y.strides));
    return [y];
  });
  registerKernel("contiguous", family, ([x]) => [cudaContiguousCopy(x!, "contiguous")]);
  registerKernel("clone", family, ([x]) => [cudaContiguousCopy(x!, "clone")]);
}
