import { reduceOp } from "@modulora/kernels";
import { registerKernel, type Device } from "../backend.js";
import type { ReduceAttrs } from "../ops/reduce.js";
import { farr, outputOn } from "./util.js";
import { hostView } from "./host.js";

/** Registers the reduction kernels. */
export function registerCpuReduce(device: Device): void {
  const out = outputOn(device);
  registerKernel<ReduceAttrs>("reduce", device, ([x], { op, axes, keepDims }) => {
    const shape = keepDims ? x!.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x!.shape.filter((_, i) => !axes.includes(i));
    const y = out(shape, x!.dtype);
    if (y.size > 0 && x!.size === 0) hostView(y).fill(0); // a sum of nothing (max/min are refused before)
    else if (y.size > 0) reduceOp(op, x!.shape, farr(x!), x!.strides, axes, farr(y));
    return [y];
  });
}
