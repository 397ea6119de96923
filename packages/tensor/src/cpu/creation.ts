// CPU kernels of the creation ops (ops/creation.ts): constants, ranges and Philox random numbers,
// written straight into the new tensor's storage.
import { fillArray } from "@modulora/kernels";
import { registerKernel, type Device } from "../backend.js";
import type { ArangeAttrs, FillAttrs, RandomAttrs } from "../ops/creation.js";
import { normalFill, uniformFill } from "../random.js";
import { hostView } from "./host.js";

/** Registers fill, arange and random kernels for `device` (all write their single input in place). */
export function registerCpuCreation(device: Device): void {
  registerKernel<FillAttrs>("fill", device, ([t], { value }) => {
    if (t!.size > 0) fillArray(hostView(t!), value);
    return [];
  });
  registerKernel<ArangeAttrs>("arange", device, ([t], { start, step }) => {
    const a = hostView(t!);
    for (let i = 0; i < a.length; i++) a[i] = start + i * step;
    return [];
  });
  registerKernel<RandomAttrs>("random", device, ([t], { distribution, seed, offset, a: p, b: q }) => {
    const a = hostView(t!) as Float32Array | Float64Array;
    if (distribution === "uniform") {
      uniformFill(a, seed, offset);
      if (p !== 0 || q !== 1) for (let i = 0; i < a.length; i++) a[i] = p + (q - p) * a[i]!;
    } else {
      normalFill(a, seed, offset);
      if (p !== 0 || q !== 1) for (let i = 0; i < a.length; i++) a[i] = p + q * a[i]!;
    }
    return [];
  });
}
