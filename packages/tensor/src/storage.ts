import type { Backend, Device, StorageHandle } from "./backend.js";

/**
 * A block of backend memory shared by one or more tensor handles (views share storage). It is
 * released when the last handle lets go. `version` counts in-place writes, so that autograd can
 * tell when a tensor saved for backward was overwritten. The memory itself is the backend's
 * opaque {@link StorageHandle}: only the backend's kernels and transfer methods touch its bytes.
 */
export class Storage {
  readonly device: Device;
  readonly byteLength: number;
  /** The backend that owns the memory. */
  readonly backend: Backend;
  /** @internal The backend's handle; only that backend's kernels and transfers use it. */
  readonly handle: StorageHandle;
  /** Handles holding this storage. */
  refs = 0;
  version = 0;
  private freed = false;

  constructor(backend: Backend, byteLength: number) {
    this.backend = backend;
    this.device = backend.name;
    this.byteLength = byteLength;
    this.handle = backend.alloc(byteLength);
    memoryCounters.onAlloc(this.device, byteLength);
  }

  /** Whether the native memory has been released. */
  get released(): boolean {
    return this.freed;
  }

  retain(): void {
    this.refs++;
  }

  /** Drops one handle; frees the memory when none is left. */
  releaseRef(): void {
    this.refs--;
    if (this.refs <= 0 && !this.freed) {
      this.freed = true;
      this.backend.release(this.handle);
      memoryCounters.onFree(this.device, this.byteLength);
    }
  }
}

interface DeviceCounters {
  storages: number;
  bytes: number;
  peakBytes: number;
}

/** Per-device counters of tensor storage, kept in JS (the addon keeps its own, scratch included). */
export const memoryCounters = {
  byDevice: new Map<Device, DeviceCounters>(),
  get(device: Device): DeviceCounters {
    let c = this.byDevice.get(device);
    if (!c) {
      c = { storages: 0, bytes: 0, peakBytes: 0 };
      this.byDevice.set(device, c);
    }
    return c;
  },
  onAlloc(device: Device, bytes: number): void {
    const c = this.get(device);
    c.storages++;
    c.bytes += bytes;
    if (c.bytes > c.peakBytes) c.peakBytes = c.bytes;
  },
  onFree(device: Device, bytes: number): void {
    const c = this.get(device);
    c.storages--;
    c.bytes -= bytes;
  },
};
