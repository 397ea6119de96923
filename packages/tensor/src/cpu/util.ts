import type { FloatArray } from "@modulora/kernels";
import type { Device } from "../backend.js";
import { Tensor } from "../tensor.js";
import type { DType } from "../dtype.js";
import { hostArray } from "./host.js";

/** Float storage of a tensor from its first element (kernels index it with the tensor's strides). */
export function farr(t: Tensor): FloatArray {
  return hostArray(t) as FloatArray;
}

/** The output allocator of kernels registered for `device`: new contiguous tensors there. */
export function outputOn(device: Device): (shape: readonly number[], dtype: DType) => Tensor {
  return (shape, dtype) => Tensor.empty(shape, dtype, device);
}
