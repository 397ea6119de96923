// CPU kernels of the fused LLaMA-block ops (ops/nn.ts), on the native addon (kernels/src/cpu/nn.cc).
import {
  adamwStep as adamwStepNative, castArray, countNonFinite, dropoutForward, reduceOp, unaryOp, rmsnormBackward, rmsnormForward, ropeForward, ropeBackward,
  swigluBackward, swigluForward, type FloatArray,
} from "@modulora/kernels";
import { registerKernel, type Device } from "../backend.js";
import { noGrad } from "../engine.js";
import type { AdamwStepOptions, DropoutAttrs, RmsnormAttrs, RmsnormGradAttrs, RopeAttrs } from "../ops/nn.js";
import { contiguous } from "../ops/shape.js";
import { dtypeInfo } from "../dtype.js";
import type { Tensor } from "../tensor.js";
import { outputOn, registerFloatKernel } from "./util.js";
import { hostArray, hostView } from "./host.js";

/** Runs `fn` on contiguous versions of `inputs` (copies only the non-contiguous ones). */
function withDense<T>(inputs: readonly Tensor[], fn: (ts: Tensor[]) => T): T {
  const ds = inputs.map((t) => (t.isContiguous ? t : noGrad(() => contiguous(t))));
  try {
    return fn(ds);
  } finally {
    ds.forEach((d, i) => {
      if (d !== inputs[i]) d.dispose();
    });
  }
}

const f = (t: Tensor): FloatArray => hostView(t) as FloatArray;

/**
 * Registers the RMSNorm, RoPE, SwiGLU, dropout, AdamW-step (single and multi-tensor) and
 * gradient-norm CPU kernels. All but the AdamW steps and the norm serve bf16 through
 * {@link registerFloatKernel}; the steps refuse bf16 parameters (ops/nn.ts), and the norm reads
 * bf16 gradients directly (widened to f64).
 */
export function registerCpuNn(device: Device): void {
  const out = outputOn(device);
  registerFloatKernel<RmsnormAttrs>("rmsnorm", device, (inputs, { eps }) =>
    withDense(inputs, ([x, w]) => {
      const y = out(x!.shape, x!.dtype);
      const rstd = out(x!.shape.slice(0, -1), x!.dtype);
      if (x!.size > 0) rmsnormForward(f(x!), f(w!), eps, f(y), f(rstd));
      return [y, rstd];
    }),
    { f32Outputs: [1] }, // rstd stays f32 for the backward
  );
  registerFloatKernel<RmsnormGradAttrs>("rmsnormGrad", device, (inputs, { weightGrad }) =>
    withDense(inputs, ([x, w, rstd, dy]) => {
      const dx = out(x!.shape, x!.dtype);
      const dw = weightGrad ? out(w!.shape, w!.dtype) : null;
      if (x!.size > 0) rmsnormBackward(f(x!), f(w!), f(rstd!), f(dy!), f(dx), dw && f(dw));
      else if (dw) f(dw).fill(0); // dweight sums over no rows
      return dw ? [dx, dw] : [dx];
    }),
  );

  // x is read through its strides when its last axis is contiguous, so q/k slices of a fused
  // projection are not copied; other layouts are made contiguous first.
  registerFloatKernel<RopeAttrs>("rope", device, ([x, positions], { invFreq, inverse }) => {
    const shape = x!.shape as [number, number, number, number];
    const y = out(shape, x!.dtype);
    if (y.size === 0) return [y];
    const run = (xt: Tensor, pos: Tensor) => {
      const layout = { shape, strides: [xt.strides[0]!, xt.strides[1]!, xt.strides[2]!] as [number, number, number] };
      (inverse ? ropeBackward : ropeForward)(hostArray(xt) as FloatArray, layout, hostView(pos) as Int32Array, invFreq, f(y));
    };
    if (x!.strides[3] === 1) withDense([positions!], ([pos]) => run(x!, pos!));
    else withDense([x!, positions!], ([xd, pos]) => run(xd!, pos!));
    return [y];
  });

  registerFloatKernel("swiglu", device, (inputs) =>
    withDense(inputs, ([gate, up]) => {
      const y = out(gate!.shape, gate!.dtype);
      if (y.size > 0) swigluForward(f(gate!), f(up!), f(y));
      return [y];
    }),
  );
  registerFloatKernel("swigluGrad", device, (inputs) =>
    withDense(inputs, ([gate, up, dy]) => {
      const dgate = out(gate!.shape, gate!.dtype);
      const dup = out(gate!.shape, gate!.dtype);
      if (dgate.size > 0) swigluBackward(f(gate!), f(up!), f(dy!), f(dgate), f(dup));
      return [dgate, dup];
    }),
  );

  registerFloatKernel<DropoutAttrs>("dropout", device, (inputs, { p, seed, offset }) =>
    withDense(inputs, ([x]) => {
      const y = out(x!.shape, x!.dtype);
      if (y.size > 0) dropoutForward(f(x!), p, seed, offset, f(y));
      return [y];
    }),
  );

  // In place; ops/nn.ts has checked that all four tensors are contiguous.
  registerKernel<AdamwStepOptions>("adamwStep", device, ([param, grad, m, v], o) => {
    if (param!.size > 0) adamwStepNative(f(param!), f(grad!), f(m!), f(v!), o);
    return [];
  });

  // [...params, ...grads, ...ms, ...vs]: the native step once per group, in order (bit for bit
  // the result of one adamwStep per group).
  registerKernel<AdamwStepOptions>("adamwStepMany", device, (inputs, o) => {
    const k = inputs.length / 4;
    for (let i = 0; i < k; i++) {
      const [param, grad, m, v] = [inputs[i]!, inputs[k + i]!, inputs[2 * k + i]!, inputs[3 * k + i]!];
      if (param.size > 0) adamwStepNative(f(param), f(grad), f(m), f(v), o);
    }
    return [];
  });

  // [Σ g², Σ (g − g)] in f64: each gradient in chunks widened to f64 (exact squares), squared and
  // summed natively in double; the probe is NaN as soon as one element is not finite.
  registerKernel("gradNormStats", device, (grads) => {
    const chunk = new Float64Array(Math.min(NORM_CHUNK, grads.reduce((a, g) => Math.max(a, g.size), 1)));
    const one = new Float64Array(1);
    let sq = 0;
    let finite = true;
    for (const grad of grads) {
      if (grad.size === 0) continue;
      withDense([grad], ([g]) => {
        const src = hostView(g!);
        const srcCode = dtypeInfo(g!.dtype).code;
        for (let off = 0; off < g!.size; off += NORM_CHUNK) {
          const len = Math.min(NORM_CHUNK, g!.size - off);
          const part = chunk.subarray(0, len);
          castArray(src.subarray(off, off + len), srcCode, part, dtypeInfo("f64").code, len);
          if (finite && countNonFinite(part) > 0) finite = false;
          unaryOp("square", part, part);
          reduceOp("sum", [len], part, [1], [0], one);
          sq += one[0]!;
        }
      });
    }
    const y = out([2], "f64");
    const yv = hostView(y) as Float64Array;
    yv[0] = sq;
    yv[1] = finite ? 0 : NaN;
    return [y];
  });
}

/** Elements per f64 chunk of the CPU gradient-norm kernel (512 KiB). */
const NORM_CHUNK = 65536;
