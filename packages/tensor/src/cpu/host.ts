// Host-memory access for the kernels of host-memory backends (`cpu`, and `sim`, which runs the
// same kernels on storage that nothing else can reach). This module is the only place that turns
// a storage handle into bytes; it is internal to the backends and not exported by the package.
import type { Device } from "../backend.js";
import { dtypeInfo, type ArrayFor, type DType } from "../dtype.js";
import { OpError } from "../errors.js";
import type { Tensor } from "../tensor.js";

const hostMemory = new Map<Device, (handle: object) => ArrayBuffer>();

/** Declares `device` a host-memory device whose storage handle `bufferOf` maps to its bytes. */
export function registerHostMemory(device: Device, bufferOf: (handle: object) => ArrayBuffer): void {
  hostMemory.set(device, bufferOf);
}

function bufferOf(t: Tensor, op: string): ArrayBuffer {
  t.assertAlive(op);
  const get = hostMemory.get(t.device);
  if (!get) throw new OpError(op, `device '${t.device}' does not keep its storage in host memory; copy the tensor with data() or to("cpu")`, [t]);
  return get(t.storage.handle);
}

/** Typed array over `t`'s storage from its first element to the end (kernels index it with the strides). */
export function hostArray<D extends DType>(t: Tensor<D>): ArrayFor<D> {
  const info = dtypeInfo(t.dtype);
  const n = t.storage.byteLength / info.size - t.offset;
  return new info.array(bufferOf(t, "hostArray"), t.offset * info.size, n) as ArrayFor<D>;
}

/** Typed array of a contiguous tensor's elements (no copy). */
export function hostView<D extends DType>(t: Tensor<D>): ArrayFor<D> {
  if (!t.isContiguous) throw new OpError("hostView", "tensor is not contiguous; call contiguous() first", [t]);
  const info = dtypeInfo(t.dtype);
  return new info.array(bufferOf(t, "hostView"), t.offset * info.size, t.size) as ArrayFor<D>;
}
