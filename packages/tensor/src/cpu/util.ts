import type { FloatArray } from "@modulora/kernels";
import { getKernel, registerKernel, type Device, type Kernel } from "../backend.js";
import { Tensor } from "../tensor.js";
import type { DType } from "../dtype.js";
import type { CastAttrs } from "../ops/cast.js";
import { hostArray } from "./host.js";

/** Float storage of a tensor from its first element (kernels index it with the tensor's strides). */
export function farr(t: Tensor): FloatArray {
  return hostArray(t) as FloatArray;
}

/** The output allocator of kernels registered for `device`: new contiguous tensors there. */
export function outputOn(device: Device): (shape: readonly number[], dtype: DType) => Tensor {
  return (shape, dtype) => Tensor.empty(shape, dtype, device);
}

/** How {@link bf16AtBoundary} treats a kernel's outputs and inputs. */
export interface Bf16BoundaryOptions {
  /**
   * Outputs that stay f32 when the kernel ran on bf16 inputs: statistics the backward reads (the
   * row logsumexp of cross-entropy and attention, RMSNorm's rstd) and the loss (f32 by policy).
   * Every other f32 output is rounded to bf16.
   */
  readonly f32Outputs?: readonly number[];
  /**
   * In-place kernels: the first `inPlace` inputs are updated in place. Each bf16 one is updated
   * through an f32 copy that is rounded back into it after the kernel.
   */
  readonly inPlace?: number;
}

/**
 * The bf16 compute policy on a host backend, at the kernel boundary: when some input is bf16, its
 * values are converted to f32 by the device's `cast` kernel, `kernel` (an f32/f64 kernel) runs on
 * the f32 copies (so reductions and products accumulate in f32), and its f32 outputs are rounded
 * back to bf16 (nearest even) by the same cast kernel, except `f32Outputs`. Without a bf16 input
 * the kernel is called directly: the f32 and f64 paths pay one dtype scan and nothing else.
 * Non-float inputs (targets, positions, ids) pass through unchanged.
 */
export function bf16AtBoundary<A>(device: Device, kernel: Kernel<A>, options: Bf16BoundaryOptions = {}): Kernel<A> {
  const keep = new Set(options.f32Outputs ?? []);
  const inPlace = options.inPlace ?? 0;
  return (inputs, attrs) => {
    let bf16 = false;
    for (const t of inputs) if (t.dtype === "bf16") bf16 = true;
    if (!bf16) return kernel(inputs, attrs);
    const cast = getKernel<CastAttrs>("cast", device);
    const to = (t: Tensor, dtype: DType): Tensor => cast([t], { dtype })[0]!;
    const temps: Tensor[] = [];
    const wide = inputs.map((t) => {
      if (t.dtype !== "bf16") return t;
      const w = to(t, "f32");
      temps.push(w);
      return w;
    });
    try {
      const outs = kernel(wide, attrs);
      for (let i = 0; i < inPlace; i++) {
        if (wide[i] === inputs[i]) continue;
        const back = to(wide[i]!, "bf16");
        try {
          getKernel("assign", device)([inputs[i]!, back], { alpha: 1 });
        } finally {
          back.dispose();
        }
      }
      return outs.map((y, i) => {
        if (y.dtype !== "f32" || keep.has(i)) return y;
        const narrow = to(y, "bf16");
        y.dispose();
        return narrow;
      });
    } finally {
      for (const t of temps) t.dispose();
    }
  };
}

/**
 * Registers an f32/f64 kernel of a host backend that also serves bf16 through
 * {@link bf16AtBoundary}: one wrapper applied at registration instead of per-kernel bf16 copies.
 */
export function registerFloatKernel<A>(op: string, device: Device, kernel: Kernel<A>, options?: Bf16BoundaryOptions): void {
  registerKernel<A>(op, device, bf16AtBoundary(device, kernel, options));
}
