// The typed facade over the addon's NCCL exports (src/cuda/nccl.cc). NCCL is loaded by the addon at
// run time, so every function here works on any build: on a CPU-only build, or a CUDA build that
// found no NCCL, ncclInfo() says why and the others throw that reason.
import { cudaAddon, hasCudaBuild, type CudaBlock } from "./cuda.js";

/** Whether NCCL can be used, which library was loaded, and why not when it cannot. */
export interface NcclInfo {
  /** True when a usable NCCL (2.10 or newer) was loaded. */
  available: boolean;
  /** The loaded NCCL's version, e.g. `2.27.3`. */
  version?: string;
  /** The same as NCCL's version code (`NCCL_VERSION_CODE`, e.g. 22703). */
  versionCode?: number;
  /** The file that was loaded. */
  path?: string;
  /** Why NCCL is unavailable, and what to do. */
  reason?: string;
}

/** An NCCL communicator of this process (the `ncclComm_t` address, as a number). */
export type NcclComm = number;

/** The reductions {@link ncclAllReduce} offers (`avg` is NCCL's `ncclAvg`: the sum divided by the world size). */
export type NcclReduceOp = "sum" | "avg" | "max" | "min";

/** The raw NCCL exports of the addon's `cuda` object (see src/cuda/nccl.cc). */
export interface RawNccl {
  ncclInfo(): NcclInfo;
  ncclUniqueId(): Uint8Array;
  ncclInit(device: number, id: Uint8Array, worldSize: number, rank: number): Promise<NcclComm>;
  ncclAllReduce(device: number, comm: NcclComm, ptr: number, count: number, dtypeCode: number, op: NcclReduceOp): void;
  ncclBroadcast(device: number, comm: NcclComm, ptr: number, count: number, dtypeCode: number, root: number): void;
  ncclGroupStart(): void;
  ncclGroupEnd(): void;
  ncclAsyncError(comm: NcclComm): string | null;
  ncclAbort(comm: NcclComm): boolean;
  ncclDestroy(comm: NcclComm): Promise<void>;
}

/** The reason {@link ncclInfo} gives on a build of the addon without the CUDA backend. */
export const NCCL_NO_CUDA_BUILD =
  "this build of @modulora/kernels has no CUDA backend (it was configured without a CUDA toolkit with cuBLAS), so it has no NCCL: " +
  "rebuild the addon with the CUDA toolkit (MODULORA_CUDA=ON) or point MODULORA_KERNELS_ADDON at a CUDA build; " +
  "on the CPU, use TcpCommunicator from @modulora/distributed";

function rawOrReason(): RawNccl | string {
  if (!hasCudaBuild()) return NCCL_NO_CUDA_BUILD;
  const c = cudaAddon() as unknown as Partial<RawNccl>;
  if (typeof c.ncclInfo !== "function") {
    return "this CUDA build of @modulora/kernels predates NCCL support (its cuda object has no ncclInfo): rebuild the addon from this source";
  }
  return c as RawNccl;
}

/**
 * Whether NCCL is usable here, never throwing: `{available: false, reason}` on a CPU-only build, on
 * a CUDA build that found no `libnccl.so.2`, or with an NCCL older than 2.10. The library is looked
 * for at `$MODULORA_NCCL_LIBRARY`, then at the path CMake found when the addon was configured,
 * then through the loader's search path (`libnccl.so.2`).
 */
export function ncclInfo(): NcclInfo {
  try {
    const raw = rawOrReason();
    return typeof raw === "string" ? { available: false, reason: raw } : raw.ncclInfo();
  } catch (err) {
    return { available: false, reason: `the addon could not be loaded: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** The raw NCCL exports; throws an Error with {@link NcclInfo.reason} when NCCL is unavailable. */
export function ncclAddon(): RawNccl {
  const raw = rawOrReason();
  if (typeof raw === "string") throw new Error(`NCCL is unavailable: ${raw}`);
  const info = raw.ncclInfo();
  if (!info.available) throw new Error(`NCCL is unavailable: ${info.reason ?? "no reason given"}`);
  return raw;
}

/** A new NCCL unique id (128 bytes), made once by rank 0 and given to every rank's {@link ncclInit}. */
export function ncclUniqueId(): Uint8Array {
  return ncclAddon().ncclUniqueId();
}

/**
 * Joins the communicator of `worldSize` ranks named by `id` as `rank`, on CUDA device `device`
 * (`ncclCommInitRank` on a thread of its own: it returns once every rank has joined).
 */
export function ncclInit(device: number, id: Uint8Array, worldSize: number, rank: number): Promise<NcclComm> {
  return ncclAddon().ncclInit(device, id, worldSize, rank);
}

/**
 * Queues an in-place all-reduce of `count` elements at device address `ptr` on the device's
 * stream. `dtypeCode` is the addon's dtype code (f32 0, f64 1, bf16 2, f16 3, i32 4, i8 5, u8 6, u32 7).
 */
export function ncclAllReduce(device: number, comm: NcclComm, ptr: number, count: number, dtypeCode: number, op: NcclReduceOp): void {
  ncclAddon().ncclAllReduce(device, comm, ptr, count, dtypeCode, op);
}

/** Queues an in-place broadcast from rank `root` of `count` elements at `ptr` on the device's stream. */
export function ncclBroadcast(device: number, comm: NcclComm, ptr: number, count: number, dtypeCode: number, root: number): void {
  ncclAddon().ncclBroadcast(device, comm, ptr, count, dtypeCode, root);
}

/**
 * Runs `fn` (which queues NCCL collectives) between `ncclGroupStart` and `ncclGroupEnd`, so that
 * its collectives launch together; the group is closed even when `fn` throws.
 */
export function ncclGroup<T>(fn: () => T): T {
  const raw = ncclAddon();
  raw.ncclGroupStart();
  let ok = false;
  try {
    const out = fn();
    ok = true;
    return out;
  } finally {
    if (ok) raw.ncclGroupEnd();
    else {
      try {
        raw.ncclGroupEnd();
      } catch {
        // fn's error is the one to report
      }
    }
  }
}

/** The communicator's asynchronous error (`ncclCommGetAsyncError`) as a message, or null when there is none. */
export function ncclAsyncError(comm: NcclComm): string | null {
  return ncclAddon().ncclAsyncError(comm);
}

/** Aborts the communicator (`ncclCommAbort`), ending its queued and running work; false when it was not live. */
export function ncclAbort(comm: NcclComm): boolean {
  return ncclAddon().ncclAbort(comm);
}

/** Destroys the communicator (`ncclCommDestroy`, which waits for its queued work) off the JS thread. */
export function ncclDestroy(comm: NcclComm): Promise<void> {
  return ncclAddon().ncclDestroy(comm);
}

const fenceBlocks = new Map<number, CudaBlock>();

/**
 * Resolves once the work queued so far on CUDA device `device`'s stream (kernels, copies, NCCL
 * collectives) has finished, without blocking the JS thread: an asynchronous read of a few bytes of a
 * small block kept per device.
 */
export function cudaFence(device: number): Promise<void> {
  const raw = cudaAddon();
  let block = fenceBlocks.get(device);
  if (!block) {
    block = raw.alloc(device, 16);
    fenceBlocks.set(device, block);
  }
  return raw.readAsync(block, 0, new Uint8Array(4));
}
