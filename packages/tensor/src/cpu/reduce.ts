import { reduceOp } from "@modulora/kernels";
import type { Device } from "../backend.js";
import type { ReduceAttrs } from "../ops/reduce.js";
import { farr, outputOn, registerFloatKernel } from "./util.js";
import { hostView } from "./host.js";

/** Registers the reduction kernels (bf16 accumulates in f32 through {@link registerFloatKernel}). */
export function registerCpuReduce(device: Device): void {
  const out = outputOn(device);
  registerFloatKernel<ReduceAttrs>("reduce", device, ([x], { op, axes, keepDims }) => {
    const shape = keepDims ? x!.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x!.shape.filter((_, i) => !axes.includes(i));
    const y = out(shape, x!.dtype);
    if (y.size > 0 && x!.size === 0) hostView(y).fill(0); // a sum of nothing (max/min are refused before)
    else if (y.size > 0) reduceOp(op, x!.shape, farr(x!), x!.strides, axes, farr(y));
    return [y];
  });
}
