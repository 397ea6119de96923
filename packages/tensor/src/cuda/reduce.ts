// Reduction kernel of the CUDA backend: sum, max and min over any axes (keepDims or not) of a
// strided f32, f64 or bf16 tensor, accumulated in f64 like the CPU, deterministically (no atomics).
import { registerKernel } from "../backend.js";
import type { ReduceAttrs } from "../ops/reduce.js";
import { checkFloatInputs } from "./shape.js";
import { code, cudaFn, deviceIndex, empty, launch, ptr } from "./util.js";

const REDUCE_CODES = { sum: 0, max: 1, min: 2 } as const;

/** Registers the `reduce` kernel for `family`. */
export function registerCudaReduce(family: string): void {
  registerKernel<ReduceAttrs>("reduce", family, (inputs, { op, axes, keepDims }) => {
    const x = inputs[0]!;
    checkFloatInputs(op, inputs);
    const shape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
    const y = empty(shape, x.dtype, x.device);
    // A sum of nothing is 0: the kernel writes it (max/min of nothing are refused before).
    if (y.size > 0) launch(op, inputs, () => cudaFn("reduce")(deviceIndex(x.device), REDUCE_CODES[op], code(x.dtype), [...x.shape], ptr(x), [...x.strides], [...axes], ptr(y)));
    return [y];
  });
}
