// Shared plumbing of the CUDA kernels: device addresses of tensors, the raw exports, output
// allocation, contiguous copies, and the wrapper that turns a native failure into an OpError that
// names the op and its inputs' shapes.
import { cudaAddon, type CudaArg, type CudaBlock } from "@modulora/kernels";
import { getKernel, parseDevice, type Device } from "../backend.js";
import { dtypeInfo, type DType } from "../dtype.js";
import { OpError } from "../errors.js";
import { Tensor } from "../tensor.js";

/** A raw kernel export: `(deviceIndex, ...args)`; it queues work and returns at once. */
export type CudaFn = (device: number, ...args: CudaArg[]) => unknown;

const fns = new Map<string, CudaFn>();

/** The raw export `name` of the addon's `cuda` object (looked up once). */
export function cudaFn(name: string): CudaFn {
  let f = fns.get(name);
  if (!f) {
    const raw = (cudaAddon() as unknown as Record<string, unknown>)[name];
    if (typeof raw !== "function") {
      throw new Error(`cuda: the addon has no kernel export '${name}': it is older than @modulora/tensor; rebuild @modulora/kernels with CUDA`);
    }
    f = raw as CudaFn;
    fns.set(name, f);
  }
  return f;
}

/** The CUDA device index of a `cuda` / `cuda:N` device name (`cuda` is device 0). */
export function deviceIndex(device: Device): number {
  return parseDevice(device).index ?? 0;
}

/** The device address of `t`'s first element (its storage's address plus its element offset). */
export function ptr(t: Tensor): number {
  t.assertAlive("cuda");
  const block = t.storage.handle as CudaBlock;
  return block.ptr + t.offset * dtypeInfo(t.dtype).size;
}

/** The native dtype code of `dtype` (shared with the addon). */
export function code(dtype: DType): number {
  return dtypeInfo(dtype).code;
}

/** A new contiguous tensor on `device` (contents unspecified). */
export function empty(shape: readonly number[], dtype: DType, device: Device): Tensor {
  return Tensor.empty(shape, dtype, device);
}

/**
 * Runs `fn` (which launches kernels) and turns a native error into an {@link OpError} naming
 * `op` and the shapes and dtypes of `inputs`, with the CUDA message.
 */
export function launch<T>(op: string, inputs: readonly Tensor[], fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof OpError) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    throw new OpError(op, `on ${inputs[0]?.device ?? "cuda"}: ${msg}`, inputs);
  }
}

/** `t` itself when contiguous, else a contiguous copy made by the device's `contiguous` kernel. */
export function dense(t: Tensor): Tensor {
  return t.isContiguous ? t : getKernel("contiguous", t.device)([t], {})[0]!;
}

/** Runs `fn` on contiguous versions of `inputs`, disposing the copies it made. */
export function withDense<R>(inputs: readonly Tensor[], fn: (ts: Tensor[]) => R): R {
  const ds = inputs.map(dense);
  try {
    return fn(ds);
  } finally {
    ds.forEach((d, i) => {
      if (d !== inputs[i]) d.dispose();
    });
  }
}
