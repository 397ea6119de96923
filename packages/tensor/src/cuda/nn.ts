// CUDA kernels of the fused LLaMA-block ops (ops/nn.ts) and the optimizer ops, on the addon's
// `cuda.*` exports (kernels/src/cuda/nn.cu, optim.cu). Same kernel names, inputs, attributes and
// outputs as the CPU registrations (cpu/nn.ts); bf16 is computed natively (loaded as f32, rounded
// once on store), and the statistics the CPU keeps in f32 for bf16 inputs (rstd) are f32 here too.
import { getKernel, registerKernel } from "../backend.js";
import type { DType } from "../dtype.js";
import type { CastAttrs } from "../ops/cast.js";
import type { AdamwStepOptions, DropoutAttrs, RmsnormAttrs, RmsnormGradAttrs, RopeAttrs } from "../ops/nn.js";
import type { Tensor } from "../tensor.js";
import { registerCudaLoss } from "./loss.js";
import { code, cudaFn, deviceIndex, empty, launch, ptr, withDense } from "./util.js";

/** The dtype a storage dtype computes (and keeps its statistics) in: f64 for f64, else f32. */
export function accDtype(dtype: DType): DType {
  return dtype === "f64" ? "f64" : "f32";
}

/** Runs `fn` (which fills `outs`) and returns `outs`; disposes them if `fn` throws. */
export function filling(outs: Tensor[], fn: () => void): Tensor[] {
  try {
    fn();
    return outs;
  } catch (err) {
    for (const o of outs) o.dispose();
    throw err;
  }
}

/**
 * Runs `fn` with `t` as `dtype`: `t` itself, or a copy made by the device's `cast` kernel that is
 * disposed afterwards (stream order keeps it alive for the kernels queued on it).
 */
export function withDtype<R>(t: Tensor, dtype: DType, fn: (t: Tensor) => R): R {
  if (t.dtype === dtype) return fn(t);
  const c = getKernel<CastAttrs>("cast", t.device)([t], { dtype })[0]!;
  try {
    return fn(c);
  } finally {
    c.dispose();
  }
}

/**
 * Registers the RMSNorm, RoPE, SwiGLU, dropout, AdamW-step (single and multi-tensor) and
 * gradient-norm kernels of the CUDA backend for `family`, and the loss kernels (cuda/loss.ts).
 */
export function registerCudaNn(family: string): void {
  registerKernel<RmsnormAttrs>("rmsnorm", family, (inputs, { eps }) =>
    launch("rmsnorm", inputs, () =>
      withDense(inputs, ([x, w]) => {
        const d = w!.size;
        const y = empty(x!.shape, x!.dtype, x!.device);
        const rstd = empty(x!.shape.slice(0, -1), accDtype(x!.dtype), x!.device); // f32 for bf16, as the CPU
        return filling([y, rstd], () => {
          if (x!.size > 0) {
            cudaFn("rmsnorm")(deviceIndex(x!.device), code(x!.dtype), ptr(x!), ptr(w!), ptr(y), ptr(rstd), x!.size / d, d, eps);
          }
        });
      }),
    ),
  );

  registerKernel<RmsnormGradAttrs>("rmsnormGrad", family, (inputs, { weightGrad }) =>
    launch("rmsnormGrad", inputs, () =>
      withDense(inputs, ([x, w, rstd0, dy]) =>
        withDtype(rstd0!, accDtype(x!.dtype), (rstd) => {
          const d = w!.size;
          const dx = empty(x!.shape, x!.dtype, x!.device);
          const dw = weightGrad ? empty(w!.shape, w!.dtype, x!.device) : null;
          return filling(dw ? [dx, dw] : [dx], () => {
            // rows = 0 with dweight: the launcher zeroes dweight (a sum over no rows).
            cudaFn("rmsnormGrad")(
              deviceIndex(x!.device), code(x!.dtype), ptr(x!), ptr(w!), ptr(rstd), ptr(dy!), ptr(dx), dw ? ptr(dw) : 0,
              d > 0 ? x!.size / d : 0, d,
            );
          });
        }),
      ),
    ),
  );

  // x is read through its strides when its last axis is contiguous (q/k slices of a fused
  // projection are not copied); other layouts are made contiguous first.
  registerKernel<RopeAttrs>("rope", family, (inputs, { invFreq, inverse }) =>
    launch("rope", inputs, () => {
      const [x, positions] = inputs as [Tensor, Tensor];
      const [B, T, H, D] = x.shape as [number, number, number, number];
      const y = empty(x.shape, x.dtype, x.device);
      if (y.size === 0) return [y];
      const run = (xt: Tensor, pos: Tensor) =>
        filling([y], () => {
          const batched = pos.size === B * T && B !== 1;
          cudaFn("rope")(
            deviceIndex(x.device), code(x.dtype), ptr(xt), [xt.strides[0]!, xt.strides[1]!, xt.strides[2]!], [B, T, H, D],
            ptr(pos), batched, Array.from(invFreq), inverse, ptr(y),
          );
        });
      if (x.strides[3] === 1) return withDense([positions], ([pos]) => run(x, pos!));
      return withDense([x, positions], ([xd, pos]) => run(xd!, pos!));
    }),
  );

  registerKernel("swiglu", family, (inputs) =>
    launch("swiglu", inputs, () =>
      withDense(inputs, ([gate, up]) => {
        const y = empty(gate!.shape, gate!.dtype, gate!.device);
        return filling([y], () => {
          if (y.size > 0) cudaFn("swiglu")(deviceIndex(gate!.device), code(gate!.dtype), ptr(gate!), ptr(up!), ptr(y), y.size);
        });
      }),
    ),
  );

  registerKernel("swigluGrad", family, (inputs) =>
    launch("swigluGrad", inputs, () =>
      withDense(inputs, ([gate, up, dy]) => {
        const dgate = empty(gate!.shape, gate!.dtype, gate!.device);
        const dup = empty(gate!.shape, gate!.dtype, gate!.device);
        return filling([dgate, dup], () => {
          if (dgate.size > 0) {
            cudaFn("swigluGrad")(deviceIndex(gate!.device), code(gate!.dtype), ptr(gate!), ptr(up!), ptr(dy!), ptr(dgate), ptr(dup), dgate.size);
          }
        });
      }),
    ),
  );

  registerKernel<DropoutAttrs>("dropout", family, (inputs, { p, seed, offset }) =>
    launch("dropout", inputs, () =>
      withDense(inputs, ([x]) => {
        const y = empty(x!.shape, x!.dtype, x!.device);
        return filling([y], () => {
          if (y.size > 0) cudaFn("dropout")(deviceIndex(x!.device), code(x!.dtype), ptr(x!), ptr(y), y.size, p, seed, offset);
        });
      }),
    ),
  );

  // In place; ops/nn.ts has checked that all four tensors are contiguous, of one shape and dtype.
  registerKernel<AdamwStepOptions>("adamwStep", family, (inputs, o) =>
    launch("adamwStep", inputs, () => {
      const [param, grad, m, v] = inputs as [Tensor, Tensor, Tensor, Tensor];
      if (param.size > 0) {
        cudaFn("adamwStep")(
          deviceIndex(param.device), code(param.dtype), [ptr(param), ptr(grad), ptr(m), ptr(v)], [param.size],
          o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.step,
        );
      }
      return [];
    }),
  );

  // [...params, ...grads, ...ms, ...vs]: one launch per dtype present (one in practice) over a
  // device table of all groups.
  registerKernel<AdamwStepOptions>("adamwStepMany", family, (inputs, o) =>
    launch("adamwStepMany", inputs, () => {
      const k = inputs.length / 4;
      const byDtype = new Map<DType, { ptrs: number[]; sizes: number[] }>();
      for (let i = 0; i < k; i++) {
        const [param, grad, m, v] = [inputs[i]!, inputs[k + i]!, inputs[2 * k + i]!, inputs[3 * k + i]!];
        if (param.size === 0) continue;
        let g = byDtype.get(param.dtype);
        if (!g) byDtype.set(param.dtype, (g = { ptrs: [], sizes: [] }));
        g.ptrs.push(ptr(param), ptr(grad), ptr(m), ptr(v));
        g.sizes.push(param.size);
      }
      for (const [dtype, g] of byDtype) {
        cudaFn("adamwStep")(deviceIndex(inputs[0]!.device), code(dtype), g.ptrs, g.sizes, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.step);
      }
      return [];
    }),
  );

  // [Σ g², Σ (g − g)] in f64 over all gradients: one launch over a pointer table, per-block partials
  // in f64 added in a fixed order. Non-contiguous gradients are read from contiguous copies.
  registerKernel("gradNormStats", family, (inputs) =>
    launch("gradNormStats", inputs, () =>
      withDense(inputs, (grads) => {
        const out = empty([2], "f64", inputs[0]!.device);
        return filling([out], () => {
          const live = grads.filter((g) => g.size > 0);
          cudaFn("gradNormStats")(
            deviceIndex(out.device), live.map((g) => ptr(g)), live.map((g) => g.size), live.map((g) => code(g.dtype)), ptr(out),
          );
        });
      }),
    ),
  );

  registerCudaLoss(family);
}
