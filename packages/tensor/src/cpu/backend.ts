import { allocBlock, nativeMemoryStats, resetPeakMemory, type StorageBlock } from "@modulora/kernels";
import { hasKernel, registerBackend, type Backend, type Device, type StorageHandle } from "../backend.js";
import type { DType } from "../dtype.js";
import { registerCpuElementwise } from "./elementwise.js";
import { registerCpuMatmul } from "./matmul.js";
import { registerCpuReduce } from "./reduce.js";
import { registerCpuShape } from "./shape.js";
import { registerCpuIndexing } from "./indexing.js";
import { registerCpuAttention } from "./attention.js";
import { registerCpuNn } from "./nn.js";
import { registerCpuLoss } from "./loss.js";
import { registerCpuCreation } from "./creation.js";
import { registerHostMemory } from "./host.js";
import { registerCpuQuant } from "./quant.js";
import { registerCpuOptq } from "./optq.js";

/** Bytes [offset, offset + length) of host storage as a view (bounds checked). */
function span(buffer: ArrayBuffer, byteOffset: number, byteLength: number, op: string): Uint8Array {
  if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset + byteLength > buffer.byteLength) {
    throw new RangeError(`${op}: bytes [${byteOffset}, ${byteOffset + byteLength}) are outside the storage's ${buffer.byteLength} bytes`);
  }
  return new Uint8Array(buffer, byteOffset, byteLength);
}

/**
 * The transfer methods of a backend whose storage is host memory reached through `bufferOf`:
 * reads and writes are plain copies, and there is nothing to wait for.
 */
export function hostTransfers(bufferOf: (h: StorageHandle) => ArrayBuffer): Pick<Backend, "readSync" | "read" | "writeSync" | "synchronize"> {
  const readSync = (h: StorageHandle, byteOffset: number, dst: Uint8Array) => {
    dst.set(span(bufferOf(h), byteOffset, dst.byteLength, "readSync"));
  };
  return {
    readSync,
    read: async (h, byteOffset, dst) => readSync(h, byteOffset, dst),
    writeSync: (h, byteOffset, src) => {
      span(bufferOf(h), byteOffset, src.byteLength, "writeSync").set(src);
    },
    synchronize: () => {},
  };
}

const cpuBuffer = (h: StorageHandle) => (h as StorageBlock).buffer;

/**
 * The CPU backend's method table: a storage handle is the addon's `StorageBlock` (a native
 * object owning 64-byte aligned host memory, freed by release() or its finalizer).
 */
export const cpuBackend: Backend = {
  name: "cpu",
  supportsDtype: (_dtype: DType) => true,
  supportsOp: (op: string) => hasKernel(op, "cpu"),
  alloc: (bytes: number) => allocBlock(bytes, false),
  release: (handle: StorageHandle) => {
    (handle as StorageBlock).release();
  },
  ...hostTransfers(cpuBuffer),
  memory: () => {
    const s = nativeMemoryStats();
    return { bytes: s.bytes, peakBytes: s.peakBytes, scratchBytes: s.scratchBytes };
  },
  resetPeak: () => resetPeakMemory(),
};

/**
 * Registers the CPU kernels for `device`, a backend whose storage handles `bufferOf` maps to host
 * memory (the `cpu` backend itself, and `sim`, which runs the same kernels).
 */
export function registerHostKernels(device: Device, bufferOf: (h: StorageHandle) => ArrayBuffer): void {
  registerHostMemory(device, bufferOf);
  registerCpuCreation(device);
  registerCpuElementwise(device);
  registerCpuReduce(device);
  registerCpuMatmul(device);
  registerCpuShape(device);
  registerCpuIndexing(device);
  registerCpuAttention(device);
  registerCpuNn(device);
  registerCpuLoss(device);
  registerCpuQuant(device);
}

let registered = false;

/**
 * Registers the CPU backend and all its kernels. Called explicitly, once (the engine calls it the
 * first time the `cpu` device is used); calling it again is a no-op.
 */
export function registerCpuBackend(): void {
  if (registered) return;
  registered = true;
  registerBackend(cpuBackend);
  registerHostKernels("cpu", cpuBuffer);
  // The OPTQ solver on `cpu` only: other devices (sim included, which stands for one) reach it through a host copy.
  registerCpuOptq("cpu");
}
