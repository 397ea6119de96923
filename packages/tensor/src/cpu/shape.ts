import { copyStrided } from "@modulora/kernels";
import { registerKernel } from "../backend.js";
import type { BroadcastAttrs, ConcatAttrs, PermuteAttrs, ReshapeAttrs, SliceAttrs, SliceGradAttrs } from "../ops/shape.js";
import { broadcastStrides, contiguousStrides } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { out } from "./util.js";

/** Copies the view `src` into a new contiguous tensor. */
export function copyToContiguous(src: Tensor): Tensor {
  const y = out(src.shape, src.dtype);
  if (y.size > 0) copyStrided(src.shape, src.storageArray(), src.strides, y.storageArray(), y.strides);
  return y;
}

/** Registers the shape kernels (views, copies, concat). */
export function registerCpuShape(): void {
  registerKernel<ReshapeAttrs>("reshape", "cpu", ([x], { shape }) => {
    if (x!.isContiguous) return [x!.viewAs(shape, contiguousStrides(shape), x!.offset)];
    const c = copyToContiguous(x!);
    const v = c.viewAs(shape, contiguousStrides(shape), 0);
    c.dispose();
    return [v];
  });
  registerKernel<PermuteAttrs>("permute", "cpu", ([x], { perm }) => [
    x!.viewAs(perm.map((p) => x!.shape[p]!), perm.map((p) => x!.strides[p]!), x!.offset),
  ]);
  registerKernel<SliceAttrs>("slice", "cpu", ([x], { starts, ends }) => {
    let offset = x!.offset;
    starts.forEach((s, i) => (offset += s * x!.strides[i]!));
    const shape = starts.map((s, i) => ends[i]! - s);
    // An empty slice may point past the storage: keep it at the view's own offset.
    return [x!.viewAs(shape, x!.strides, shape.includes(0) ? x!.offset : offset)];
  });
  registerKernel<SliceGradAttrs>("sliceGrad", "cpu", ([dy], { shape, starts }) => {
    const y = out(shape, dy!.dtype);
    if (dy!.size === 0) return [y];
    let offset = 0;
    starts.forEach((s, i) => (offset += s * y.strides[i]!));
    copyStrided(dy!.shape, dy!.storageArray(), dy!.strides, y.storageArray().subarray(offset), y.strides);
    return [y];
  });
  registerKernel<ConcatAttrs>("concat", "cpu", (inputs, { axis }) => {
    const shape = [...inputs[0]!.shape];
    shape[axis] = inputs.reduce((s, t) => s + t.shape[axis]!, 0);
    const y = out(shape, inputs[0]!.dtype);
    let start = 0;
    for (const t of inputs) {
      if (t.size > 0) copyStrided(t.shape, t.storageArray(), t.strides, y.storageArray().subarray(start * y.strides[axis]!), y.strides);
      start += t.shape[axis]!;
    }
    return [y];
  });
  registerKernel<BroadcastAttrs>("broadcastTo", "cpu", ([x], { shape }) => {
    const y = out(shape, x!.dtype);
    if (y.size > 0) copyStrided(shape, x!.storageArray(), broadcastStrides(x!.shape, x!.strides, shape), y.storageArray(), y.strides);
    return [y];
  });
  registerKernel("contiguous", "cpu", ([x]) => [copyToContiguous(x!)]);
  registerKernel("clone", "cpu", ([x]) => [copyToContiguous(x!)]);
}
