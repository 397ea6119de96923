import { affineOp, binaryOp, unaryGradOp, unaryOp } from "@modulora/kernels";
import type { Device } from "../backend.js";
import { broadcastStrides } from "../shape.js";
import type { Tensor } from "../tensor.js";
import type { BinaryAttrs } from "../ops/binary.js";
import type { ScaleAttrs, UnaryAttrs } from "../ops/unary.js";
import { contiguous } from "../ops/shape.js";
import { noGrad } from "../engine.js";
import { farr, outputOn, registerFloatKernel } from "./util.js";
import { hostView } from "./host.js";

function dense(t: Tensor): Tensor {
  return t.isContiguous ? t : noGrad(() => contiguous(t));
}

function withDense<T>(inputs: readonly Tensor[], fn: (ts: Tensor[]) => T): T {
  const ds = inputs.map(dense);
  try {
    return fn(ds);
  } finally {
    ds.forEach((d, i) => {
      if (d !== inputs[i]) d.dispose();
    });
  }
}

/** Registers the element-wise CPU kernels (bf16 through the f32 kernels, {@link registerFloatKernel}). */
export function registerCpuElementwise(device: Device): void {
  const out = outputOn(device);
  for (const op of ["add", "sub", "mul", "div", "maximum", "minimum", "pow", "eq", "gt", "lt"] as const) {
    registerFloatKernel<BinaryAttrs>(op, device, ([a, b], { shape }) => {
      const y = out(shape, a!.dtype);
      binaryOp(op, shape, farr(a!), broadcastStrides(a!.shape, a!.strides, shape), farr(b!), broadcastStrides(b!.shape, b!.strides, shape), farr(y));
      return [y];
    });
  }
  registerFloatKernel<UnaryAttrs>("unary", device, (inputs, { op, param }) =>
    withDense(inputs, ([x]) => {
      const y = out(x!.shape, x!.dtype);
      unaryOp(op, hostView(x!) as Float32Array, hostView(y) as Float32Array, param);
      return [y];
    }),
  );
  registerFloatKernel<UnaryAttrs>("unaryGrad", device, (inputs, { op, param }) =>
    withDense(inputs, ([x, y, dy]) => {
      const dx = out(x!.shape, x!.dtype);
      unaryGradOp(op, hostView(x!) as Float32Array, hostView(y!) as Float32Array, hostView(dy!) as Float32Array, hostView(dx) as Float32Array, param);
      return [dx];
    }),
  );
  registerFloatKernel<ScaleAttrs>("scale", device, (inputs, { alpha, beta }) =>
    withDense(inputs, ([x]) => {
      const y = out(x!.shape, x!.dtype);
      affineOp(hostView(x!) as Float32Array, alpha, beta, hostView(y) as Float32Array);
      return [y];
    }),
  );
}
