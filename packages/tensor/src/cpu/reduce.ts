import { reduceOp } from "@modulora/kernels";
import { registerKernel } from "../backend.js";
import type { ReduceAttrs } from "../ops/reduce.js";
import { farr, out } from "./util.js";

/** Registers the reduction kernels. */
export function registerCpuReduce(): void {
  registerKernel<ReduceAttrs>("reduce", "cpu", ([x], { op, axes, keepDims }) => {
    const shape = keepDims ? x!.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x!.shape.filter((_, i) => !axes.includes(i));
    const y = out(shape, x!.dtype);
    if (y.size > 0 && x!.size > 0) reduceOp(op, x!.shape, farr(x!), x!.strides, axes, farr(y));
    return [y];
  });
}
