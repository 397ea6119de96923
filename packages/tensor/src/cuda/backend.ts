// The `cuda` backend: device storage from the addon's stream-ordered caching allocator (one
// `CudaBlock` per storage), transfers through its pinned staging buffers, and the CUDA kernels of
// every op. Devices: `cuda` (device 0) and `cuda:0` ... `cuda:N-1`, one backend each; the kernels
// are registered once, for the family, and run on the device of their inputs.
import { cudaAddon, cudaInfo, hasCudaBuild, type CudaBlock, type CudaMemoryStats, type RawCuda } from "@modulora/kernels";
import { hasKernel, registerBackend, type Backend, type Device, type StorageHandle } from "../backend.js";
import { deviceIndex } from "./util.js";
import { registerCudaMatmul } from "./matmul.js";
import { registerCudaElementwise } from "./elementwise.js";
import { registerCudaNn } from "./nn.js";
import { registerCudaAttention } from "./attention.js";
import { registerCudaQuant } from "./quant.js";

/** The allocator counters of one CUDA device, in bytes. */
export interface CudaMemory {
  readonly device: Device;
  /** Bytes of live blocks (tensor storage and kernel scratch). */
  readonly inUse: number;
  /** Bytes held from the driver: live blocks plus the cache. */
  readonly reserved: number;
  /** High-water mark of `inUse` since the last reset. */
  readonly peakInUse: number;
  /** High-water mark of `reserved` since the last reset. */
  readonly peakReserved: number;
  /** Live blocks. */
  readonly allocations: number;
  /** Driver allocations (cache misses) so far. */
  readonly cudaMallocs: number;
}

function block(h: StorageHandle): CudaBlock {
  return h as CudaBlock;
}

function makeBackend(name: Device, index: number, raw: RawCuda): Backend {
  return {
    name,
    supportsDtype: () => true,
    supportsOp: (op) => hasKernel(op, name),
    alloc: (bytes) => raw.alloc(index, bytes),
    release: (h) => block(h).release(),
    readSync: (h, byteOffset, dst) => raw.read(block(h), byteOffset, dst),
    read: (h, byteOffset, dst) => raw.readAsync(block(h), byteOffset, dst),
    writeSync: (h, byteOffset, src) => raw.write(block(h), byteOffset, src),
    synchronize: () => raw.synchronize(index),
    memory: () => {
      const s = raw.memory(index);
      return { bytes: s.inUse, peakBytes: s.peakInUse, scratchBytes: 0 };
    },
    resetPeak: () => raw.resetPeak(index),
  };
}

let registered = false;

/**
 * Registers the CUDA devices and kernels. The registry calls it the first time a `cuda` device is
 * asked for; it throws (and the device is reported unavailable, with this reason) when the addon
 * was built without CUDA or the driver sees no GPU.
 */
export function registerCudaBackend(): void {
  if (registered) return;
  if (!hasCudaBuild()) cudaAddon(); // throws the "no CUDA build" explanation
  const info = cudaInfo();
  if (!info.available || info.devices.length === 0) {
    throw new Error(`the CUDA build of the addon sees no GPU (${info.reason ?? "no device"}); run on a machine with an NVIDIA GPU and driver`);
  }
  registered = true;
  const raw = cudaAddon();
  registerBackend(makeBackend("cuda", 0, raw));
  for (const d of info.devices) registerBackend(makeBackend(`cuda:${d.index}`, d.index, raw));
  registerCudaMatmul("cuda");
  registerCudaElementwise("cuda");
  registerCudaNn("cuda");
  registerCudaAttention("cuda");
  registerCudaQuant("cuda");
}

/** The caching allocator's counters of a CUDA device (`cuda`, `cuda:1`). */
export function cudaMemory(device: Device = "cuda"): CudaMemory {
  const s: CudaMemoryStats = cudaAddon().memory(deviceIndex(device));
  return { device, ...s };
}

/**
 * Returns the cached free blocks of a CUDA device to the driver (after the queued work finishes).
 * Live tensors are untouched; the next allocations pay for `cudaMalloc` again.
 */
export function emptyCudaCache(device: Device = "cuda"): void {
  cudaAddon().emptyCache(deviceIndex(device));
}

/** Waits until all work queued on a CUDA device has finished. */
export function synchronizeCuda(device: Device = "cuda"): void {
  cudaAddon().synchronize(deviceIndex(device));
}
