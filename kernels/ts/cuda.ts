import { CUDA_PACKAGE, type AddonAttempt } from "./loader.js";
import { addonLoadReport, native } from "./native.js";

/**
 * A block of device memory from the CUDA backend's caching allocator (a native object; the block
 * goes back to the cache when {@link CudaBlock.release} is called or the object is collected).
 */
export interface CudaBlock {
  /** The device address of the block's first byte, as a number (exact: addresses are below 2^53). */
  readonly ptr: number;
  readonly byteLength: number;
  /** The CUDA device index. */
  readonly device: number;
  /** Returns the block to the allocator's cache now; a second call is a no-op. */
  release(): void;
}

/** Byte counters of one device's caching allocator. */
export interface CudaMemoryStats {
  /** Bytes of live blocks. */
  inUse: number;
  /** Bytes held from the driver: live blocks and the cache. */
  reserved: number;
  peakInUse: number;
  peakReserved: number;
  /** Live blocks. */
  allocations: number;
  /** Driver allocations (cache misses) so far. */
  cudaMallocs: number;
}

/** One CUDA device as the driver reports it. */
export interface CudaDeviceInfo {
  index: number;
  name: string;
  totalBytes: number;
  /** Compute capability, e.g. `9.0`. */
  capability: string;
  multiprocessors: number;
}

/** What the addon's CUDA build sees (`available: false` with a `reason` where it sees no GPU). */
export interface CudaInfo {
  available: boolean;
  reason?: string;
  devices: CudaDeviceInfo[];
  /** CUDA runtime version, e.g. `13000`. */
  runtimeVersion: number;
  /** Whether MODULORA_CUDA_SYNC=1 is in effect (a synchronization after every op). */
  syncEveryOp: boolean;
}

/** An argument of a raw `cuda.*` kernel call: device addresses are numbers. */
export type CudaArg = number | boolean | null | readonly number[] | Uint8Array | string;

/**
 * The raw `cuda` object of a CUDA build of the addon. Every kernel export takes the device index
 * first, then device addresses (numbers), sizes and lists; it queues work on the device's stream
 * and returns at once. Errors are `Error("cuda <op>: <what> (<CUDA message>)")`.
 */
export interface RawCuda {
  info(): CudaInfo;
  alloc(device: number, bytes: number): CudaBlock;
  write(block: CudaBlock, byteOffset: number, src: Uint8Array): void;
  read(block: CudaBlock, byteOffset: number, dst: Uint8Array): void;
  readAsync(block: CudaBlock, byteOffset: number, dst: Uint8Array): Promise<void>;
  synchronize(device: number): void;
  memory(device: number): CudaMemoryStats;
  resetPeak(device: number): void;
  emptyCache(device: number): void;
  /** Every kernel export, by name (see the bind_*.cc files of src/cuda). */
  readonly [op: string]: unknown;
}

/** Whether this build of the addon includes the CUDA backend (it may still find no GPU: see {@link cudaInfo}). */
export function hasCudaBuild(): boolean {
  return (native() as unknown as { cuda?: RawCuda }).cuda !== undefined;
}

/**
 * Why the loaded addon is not a CUDA build, as far as the `@modulora/kernels-cuda` package goes:
 * installed but not built, installed but its addon failed to load, or not installed.
 */
export function cudaPackageNote(attempts: readonly AddonAttempt[]): string {
  const c = attempts.find((a) => a.source === "cuda");
  if (!c) return `or install ${CUDA_PACKAGE}, which builds the CUDA addon at install where a CUDA toolkit with cuBLAS is found`;
  if (c.outcome === "missing") {
    return `${CUDA_PACKAGE} is installed but its addon was not built (${c.path} not found): reinstall it where the CUDA toolkit with cuBLAS is found (\`npm rebuild ${CUDA_PACKAGE}\`)`;
  }
  return `${CUDA_PACKAGE} is installed but its addon at ${c.path} failed to load (${c.error}), so the CPU addon was loaded instead`;
}

/**
 * The raw CUDA exports. A CPU-only build is an error that says how to get a CUDA build.
 */
export function cudaAddon(): RawCuda {
  const c = (native() as unknown as { cuda?: RawCuda }).cuda;
  if (!c) {
    throw new Error(
      "this build of @modulora/kernels has no CUDA backend (it was configured without a CUDA toolkit with cuBLAS): " +
        "rebuild the addon on a machine with the CUDA toolkit (MODULORA_CUDA=ON makes a missing toolkit a configure error), " +
        `or point MODULORA_KERNELS_ADDON at a CUDA build; ${cudaPackageNote(addonLoadReport().attempts)}`,
    );
  }
  return c;
}

/** What the CUDA build sees: devices, runtime version, sync mode. A CPU-only build reports `available: false`. */
export function cudaInfo(): CudaInfo {
  if (!hasCudaBuild()) return { available: false, reason: "this build of the addon has no CUDA backend", devices: [], runtimeVersion: 0, syncEveryOp: false };
  return cudaAddon().info();
}
