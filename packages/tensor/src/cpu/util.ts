import type { FloatArray } from "@modulora/kernels";
import { Tensor } from "../tensor.js";
import type { DType } from "../dtype.js";

/** Float storage of a tensor from its first element (kernels index it with the tensor's strides). */
export function farr(t: Tensor): FloatArray {
  return t.storageArray() as FloatArray;
}

/** A new contiguous output tensor on the CPU. */
export function out(shape: readonly number[], dtype: DType): Tensor {
  return Tensor.empty(shape, dtype, "cpu");
}
