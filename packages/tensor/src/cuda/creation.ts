// Creation kernels of the CUDA backend (ops/creation.ts): fill and arange for every dtype, and the
// Philox random fill (f32/f64; the ops draw f32 and cast for bf16), which reproduces random.ts
// uniformFill / normalFill element for element: block j of 4 elements uses the counter
// (offset + j, 0, stream, 0), stream 0 uniform / 1 normal, 24-bit words, Box–Muller in f64.
import { registerKernel } from "../backend.js";
import type { ArangeAttrs, FillAttrs, RandomAttrs } from "../ops/creation.js";
import type { Tensor } from "../tensor.js";
import { code, cudaFn, deviceIndex, launch, ptr } from "./util.js";

/** Registers fill, arange and random for `family` (each writes its single input in place). */
export function registerCudaCreation(family: string): void {
  registerKernel<FillAttrs>("fill", family, (inputs, { value }) => {
    const t = inputs[0] as Tensor;
    if (t.size > 0) launch("fill", inputs, () => cudaFn("fill")(deviceIndex(t.device), code(t.dtype), [...t.shape], ptr(t), [...t.strides], value, false));
    return [];
  });
  registerKernel<ArangeAttrs>("arange", family, (inputs, { start, step }) => {
    const t = inputs[0] as Tensor;
    if (t.size > 0) launch("arange", inputs, () => cudaFn("arange")(deviceIndex(t.device), code(t.dtype), t.size, ptr(t), start, step));
    return [];
  });
  registerKernel<RandomAttrs>("random", family, (inputs, { distribution, seed, offset, a, b }) => {
    const t = inputs[0] as Tensor;
    if (t.size > 0) {
      launch("random", inputs, () => cudaFn("random")(deviceIndex(t.device), code(t.dtype), t.size, ptr(t), distribution === "normal", seed, offset, a, b));
    }
    return [];
  });
}
