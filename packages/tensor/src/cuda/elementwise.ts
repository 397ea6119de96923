// Element-wise kernels of the CUDA backend: binary ops with broadcasting (inputs read through
// their strides, broadcast axes with stride 0), unary ops and their fused gradient, and scale
// (alpha·x + beta). f32, f64 and bf16 (bf16 computed in f32, rounded once on store). This module
// also registers the shape, indexing, creation and reduction kernels (./shape.ts, ./indexing.ts,
// ./creation.ts, ./reduce.ts), which share the native exports of kernels/src/cuda/bind_elementwise.cc.
import { registerKernel } from "../backend.js";
import { OpError } from "../errors.js";
import type { BinaryAttrs } from "../ops/binary.js";
import type { ScaleAttrs, UnaryAttrs } from "../ops/unary.js";
import { broadcastStrides } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { code, cudaFn, deviceIndex, empty, launch, ptr } from "./util.js";
import { checkFloatInputs, registerCudaShape } from "./shape.js";
import { registerCudaIndexing } from "./indexing.js";
import { registerCudaCreation } from "./creation.js";
import { registerCudaReduce } from "./reduce.js";

/** Native binary op codes (kernels/src/cuda/elementwise.h EwBinary, the CPU's order). */
export const CUDA_BINARY_OPS = ["add", "sub", "mul", "div", "maximum", "minimum", "eq", "gt", "lt", "pow"] as const;
/** The native code of the scaled add `a + alpha·b` (addInPlace). */
export const CUDA_ADD_SCALED = 10;
/** Native unary op codes (EwUnary, the CPU's order). */
export const CUDA_UNARY_OPS = ["neg", "exp", "log", "sqrt", "rsqrt", "abs", "relu", "sigmoid", "tanh", "silu", "square", "reciprocal", "sign", "powScalar"] as const;

function unaryCode(op: string): number {
  const c = (CUDA_UNARY_OPS as readonly string[]).indexOf(op);
  if (c < 0) throw new OpError("unary", `unknown unary op '${op}'`);
  return c;
}

/**
 * Queues `out[view] = a[view] op b[view]` (native code `op`) over `shape`, a and b broadcast to it.
 * `out` is written through its own strides (in-place updates pass the destination as `a` and `out`).
 */
export function cudaBinary(op: number, shape: readonly number[], a: Tensor, b: Tensor, out: Tensor, alpha = 1): void {
  cudaFn("binary")(
    deviceIndex(out.device), op, code(out.dtype), [...shape],
    ptr(a), broadcastStrides(a.shape, a.strides, shape), ptr(b), broadcastStrides(b.shape, b.strides, shape),
    ptr(out), [...out.strides], alpha,
  );
}

/** Queues `out[view] = alpha·x[view] + beta` (x broadcast to out's shape). */
export function cudaAffine(x: Tensor, out: Tensor, alpha: number, beta: number): void {
  cudaFn("affine")(deviceIndex(out.device), code(out.dtype), [...out.shape], ptr(x), broadcastStrides(x.shape, x.strides, out.shape), ptr(out), [...out.strides], alpha, beta);
}

/**
 * Registers every kernel of this area for `family`: binary, unary, unaryGrad, scale here; the
 * shape, indexing, creation and reduction kernels through their modules.
 */
export function registerCudaElementwise(family: string): void {
  CUDA_BINARY_OPS.forEach((op, opCode) => {
    registerKernel<BinaryAttrs>(op, family, (inputs, { shape }) => {
      const [a, b] = inputs as [Tensor, Tensor];
      checkFloatInputs(op, inputs);
      if (a.dtype !== b.dtype) throw new OpError(op, `inputs have different dtypes (${a.dtype}, ${b.dtype})`, inputs);
      const y = empty(shape, a.dtype, a.device);
      if (y.size > 0) launch(op, inputs, () => cudaBinary(opCode, shape, a, b, y));
      return [y];
    });
  });
  registerKernel<UnaryAttrs>("unary", family, (inputs, { op, param }) => {
    const x = inputs[0]!;
    checkFloatInputs("unary", inputs);
    const c = unaryCode(op);
    const y = empty(x.shape, x.dtype, x.device);
    if (y.size > 0) launch(op, inputs, () => cudaFn("unary")(deviceIndex(x.device), c, code(x.dtype), [...x.shape], ptr(x), [...x.strides], ptr(y), param));
    return [y];
  });
  registerKernel<UnaryAttrs>("unaryGrad", family, (inputs, { op, param }) => {
    const [x, y, dy] = inputs as [Tensor, Tensor, Tensor];
    checkFloatInputs("unaryGrad", inputs);
    const c = unaryCode(op);
    const dx = empty(x.shape, x.dtype, x.device);
    if (dx.size > 0) {
      launch(`${op} backward`, inputs, () =>
        cudaFn("unaryGrad")(deviceIndex(x.device), c, code(x.dtype), [...x.shape], ptr(x), [...x.strides], ptr(y), broadcastStrides(y.shape, y.strides, x.shape), ptr(dy), broadcastStrides(dy.shape, dy.strides, x.shape), ptr(dx), param),
      );
    }
    return [dx];
  });
  registerKernel<ScaleAttrs>("scale", family, (inputs, { alpha, beta }) => {
    const x = inputs[0]!;
    checkFloatInputs("scale", inputs);
    const y = empty(x.shape, x.dtype, x.device);
    if (y.size > 0) launch("scale", inputs, () => cudaAffine(x, y, alpha, beta));
    return [y];
  });
  registerCudaShape(family);
  registerCudaIndexing(family);
  registerCudaCreation(family);
  registerCudaReduce(family);
}
