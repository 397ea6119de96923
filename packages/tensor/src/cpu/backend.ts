import { allocStorage, nativeMemoryStats, releaseStorage, resetPeakMemory } from "@modulora/kernels";
import { hasKernel, registerBackend, type Backend } from "../backend.js";
import type { DType } from "../dtype.js";
import { registerCpuElementwise } from "./elementwise.js";
import { registerCpuMatmul } from "./matmul.js";
import { registerCpuReduce } from "./reduce.js";
import { registerCpuShape } from "./shape.js";
import { registerCpuIndexing } from "./indexing.js";
import { registerCpuAttention } from "./attention.js";
import { registerCpuNn } from "./nn.js";
import { registerCpuLoss } from "./loss.js";

/** The CPU backend's method table. */
export const cpuBackend: Backend = {
  name: "cpu",
  supportsDtype: (_dtype: DType) => true,
  supportsOp: (op: string) => hasKernel(op, "cpu"),
  alloc: (bytes: number) => allocStorage(bytes),
  release: (buffer: ArrayBuffer) => {
    releaseStorage(buffer);
  },
  memory: () => {
    const s = nativeMemoryStats();
    return { bytes: s.bytes, peakBytes: s.peakBytes, scratchBytes: s.scratchBytes };
  },
  resetPeak: () => resetPeakMemory(),
};

let registered = false;

/**
 * Registers the CPU backend and all its kernels. Called explicitly, once (the engine calls it the
 * first time the `cpu` device is used); calling it again is a no-op.
 */
export function registerCpuBackend(): void {
  if (registered) return;
  registered = true;
  registerBackend(cpuBackend);
  registerCpuElementwise();
  registerCpuReduce();
  registerCpuMatmul();
  registerCpuShape();
  registerCpuIndexing();
  registerCpuAttention();
  registerCpuNn();
  registerCpuLoss();
}

