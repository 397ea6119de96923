// `sim`: a simulated device for CI. It runs the CPU kernels, but its storage is a private host
// buffer that nothing outside this module and the kernels can reach: no typed-array view, no
// zero-copy path. Every byte that crosses between it and JavaScript goes through the transfer
// API, where it is counted, so a test can prove that a code path never touches device memory
// from the host (and bound how often it synchronizes). Fresh allocations are poisoned with 0xFF
// bytes (NaN in every float dtype), so a kernel that relies on zeroed outputs fails here.
import { allocBlock, type StorageBlock } from "@modulora/kernels";
import { hasKernel, registerBackend, type Backend, type StorageHandle } from "../backend.js";
import { hostTransfers, registerHostKernels } from "../cpu/backend.js";

/** Transfers and synchronizations counted by the `sim` backend since the last {@link resetSimStats}. */
export interface SimStats {
  /** Host → device copies ({@link Backend.writeSync}). */
  readonly hostToDevice: number;
  /** Device → host copies ({@link Backend.readSync} and {@link Backend.read}). */
  readonly deviceToHost: number;
  readonly bytesToDevice: number;
  readonly bytesToHost: number;
  /** Waits for the device: every device → host copy, and every explicit `synchronize()`. */
  readonly synchronizations: number;
}

/** A block of simulated device memory; its buffer is private to this module. */
class SimStorage {
  readonly #block: StorageBlock;
  constructor(block: StorageBlock) {
    this.#block = block;
  }
  static blockOf(h: StorageHandle): StorageBlock {
    if (!(h instanceof SimStorage)) throw new TypeError("sim: this storage handle was not allocated by the sim backend");
    return h.#block;
  }
  static bufferOf(h: StorageHandle): ArrayBuffer {
    return SimStorage.blockOf(h).buffer;
  }
}

const stats = { hostToDevice: 0, deviceToHost: 0, bytesToDevice: 0, bytesToHost: 0, synchronizations: 0 };

/** The counters of the `sim` backend (a copy). */
export function simStats(): SimStats {
  return { ...stats };
}

/** Sets the `sim` counters back to zero. */
export function resetSimStats(): void {
  stats.hostToDevice = stats.deviceToHost = stats.bytesToDevice = stats.bytesToHost = stats.synchronizations = 0;
}

const host = hostTransfers(SimStorage.bufferOf);
const held = { bytes: 0, peakBytes: 0 };

/** The `sim` backend's method table. */
const simBackend: Backend = {
  name: "sim",
  supportsDtype: () => true,
  supportsOp: (op) => hasKernel(op, "sim"),
  alloc: (bytes) => {
    const block = allocBlock(bytes, false);
    new Uint8Array(block.buffer).fill(0xff);
    held.bytes += bytes;
    held.peakBytes = Math.max(held.peakBytes, held.bytes);
    return new SimStorage(block);
  },
  release: (h) => {
    const block = SimStorage.blockOf(h);
    held.bytes -= block.byteLength;
    block.release();
  },
  readSync: (h, byteOffset, dst) => {
    stats.deviceToHost++;
    stats.synchronizations++;
    stats.bytesToHost += dst.byteLength;
    host.readSync(h, byteOffset, dst);
  },
  read: async (h, byteOffset, dst) => {
    stats.deviceToHost++;
    stats.synchronizations++;
    stats.bytesToHost += dst.byteLength;
    host.readSync(h, byteOffset, dst);
  },
  writeSync: (h, byteOffset, src) => {
    stats.hostToDevice++;
    stats.bytesToDevice += src.byteLength;
    host.writeSync(h, byteOffset, src);
  },
  synchronize: () => {
    stats.synchronizations++;
  },
  memory: () => ({ bytes: held.bytes, peakBytes: held.peakBytes, scratchBytes: 0 }),
  resetPeak: () => {
    held.peakBytes = held.bytes;
  },
};

let registered = false;

/**
 * Registers the `sim` device and the CPU kernels for it. It is never registered by default: tests
 * call this, and the CLI calls it when `MODULORA_DEVICE_SIM=1` is set. Calling it again is a no-op.
 */
export function registerSimBackend(): void {
  if (registered) return;
  registered = true;
  registerBackend(simBackend);
  registerHostKernels("sim", SimStorage.bufferOf);
}
