import { copyStrided } from "@modulora/kernels";
import { registerKernel, type Device } from "../backend.js";
import type { BroadcastAttrs, ConcatAttrs, PermuteAttrs, ReshapeAttrs, SliceAttrs, SliceGradAttrs } from "../ops/shape.js";
import { broadcastStrides, contiguousStrides } from "../shape.js";
import { Tensor } from "../tensor.js";
import { outputOn } from "./util.js";
import { hostArray, hostView } from "./host.js";

/** Copies the view `src` into a new contiguous tensor. */
export function copyToContiguous(src: Tensor): Tensor {
  const y = Tensor.empty(src.shape, src.dtype, src.device);
  if (y.size > 0) copyStrided(src.shape, hostArray(src), src.strides, hostArray(y), y.strides);
  return y;
}

/** Registers the shape kernels (views, copies, concat). */
export function registerCpuShape(device: Device): void {
  const out = outputOn(device);
  registerKernel<ReshapeAttrs>("reshape", device, ([x], { shape }) => {
    if (x!.isContiguous) return [x!.viewAs(shape, contiguousStrides(shape), x!.offset)];
    const c = copyToContiguous(x!);
    const v = c.viewAs(shape, contiguousStrides(shape), 0);
    c.dispose();
    return [v];
  });
  registerKernel<PermuteAttrs>("permute", device, ([x], { perm }) => [
    x!.viewAs(perm.map((p) => x!.shape[p]!), perm.map((p) => x!.strides[p]!), x!.offset),
  ]);
  registerKernel<SliceAttrs>("slice", device, ([x], { starts, ends }) => {
    let offset = x!.offset;
    starts.forEach((s, i) => (offset += s * x!.strides[i]!));
    const shape = starts.map((s, i) => ends[i]! - s);
    // An empty slice may point past the storage: keep it at the view's own offset.
    return [x!.viewAs(shape, x!.strides, shape.includes(0) ? x!.offset : offset)];
  });
  registerKernel<SliceGradAttrs>("sliceGrad", device, ([dy], { shape, starts }) => {
    const y = out(shape, dy!.dtype);
    hostView(y).fill(0); // outside the slice the gradient is zero
    if (dy!.size === 0) return [y];
    let offset = 0;
    starts.forEach((s, i) => (offset += s * y.strides[i]!));
    copyStrided(dy!.shape, hostArray(dy!), dy!.strides, hostArray(y).subarray(offset), y.strides);
    return [y];
  });
  registerKernel<ConcatAttrs>("concat", device, (inputs, { axis }) => {
    const shape = [...inputs[0]!.shape];
    shape[axis] = inputs.reduce((s, t) => s + t.shape[axis]!, 0);
    const y = out(shape, inputs[0]!.dtype);
    let start = 0;
    for (const t of inputs) {
      if (t.size > 0) copyStrided(t.shape, hostArray(t), t.strides, hostArray(y).subarray(start * y.strides[axis]!), y.strides);
      start += t.shape[axis]!;
    }
    return [y];
  });
  registerKernel<BroadcastAttrs>("broadcastTo", device, ([x], { shape }) => {
    const y = out(shape, x!.dtype);
    if (y.size > 0) copyStrided(shape, hostArray(x!), broadcastStrides(x!.shape, x!.strides, shape), hostArray(y), y.strides);
    return [y];
  });
  registerKernel("contiguous", device, ([x]) => [copyToContiguous(x!)]);
  registerKernel("clone", device, ([x]) => [copyToContiguous(x!)]);
}
