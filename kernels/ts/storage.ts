import { native } from "./native.js";

/** Raw storage, thread and CPU-feature exports of the addon. */
export interface RawStorage {
  alloc(bytes: number, zeroFill?: boolean): ArrayBuffer;
  StorageBlock: new (bytes: number, zeroFill: boolean) => StorageBlock;
  release(buffer: ArrayBuffer): boolean;
  allocScratch(bytes: number): ArrayBuffer;
  releaseScratch(buffer: ArrayBuffer): boolean;
  memoryStats(): NativeMemoryStats;
  resetPeak(): void;
  trimCache(): number;
  getNumThreads(): number;
  setNumThreads(n: number): void;
  cpuInfo(): CpuInfo;
  setIsa(isa: Isa): void;
  hasCuda(): boolean;
}

/** Byte counters of the native allocator. */
export interface NativeMemoryStats {
  /** Bytes currently held (tensor storage and kernel scratch). */
  bytes: number;
  /** High-water mark of `bytes` since the last {@link resetPeakMemory}. */
  peakBytes: number;
  /** Live storage allocations. */
  count: number;
  /** Of `bytes`, what kernels hold as scratch right now. */
  scratchBytes: number;
  /** Freed storage the caching allocator keeps for reuse (not part of `bytes`). */
  cachedBytes: number;
}

/** Instruction-set paths of the CPU kernels. */
export type Isa = "generic" | "avx2" | "avx512";

/** What the CPU supports and which kernel path is in use. */
export interface CpuInfo {
  avx2: boolean;
  avx512: boolean;
  best: Isa;
  active: Isa;
}

/**
 * One block of native storage as a native object (an N-API ObjectWrap): what a CPU tensor's
 * storage handle is. Its memory is freed by {@link StorageBlock.release} or, as a safety net,
 * when the block and every view of its buffer have been garbage-collected.
 */
export interface StorageBlock {
  /** The memory as an external ArrayBuffer (the same object every time; detached once released). */
  readonly buffer: ArrayBuffer;
  readonly byteLength: number;
  /** Whether {@link StorageBlock.release} was called. */
  readonly released: boolean;
  /** Frees the memory now and detaches {@link StorageBlock.buffer}; false if it was released already. */
  release(): boolean;
}

/**
 * Allocates a {@link StorageBlock} of `bytes` (64-byte aligned): zero-filled, or with unspecified
 * contents when `zeroFill` is false (for outputs a kernel overwrites whole).
 */
export function allocBlock(bytes: number, zeroFill = true): StorageBlock {
  return new (native().StorageBlock)(bytes, zeroFill);
}

/**
 * Allocates `bytes` of 64-byte aligned native memory and returns it as an ArrayBuffer: zero-filled,
 * or with unspecified contents when `zeroFill` is false (for outputs a kernel overwrites whole).
 * Free it with {@link releaseStorage}; garbage collection frees it too, as a safety net.
 */
export function allocStorage(bytes: number, zeroFill = true): ArrayBuffer {
  return native().alloc(bytes, zeroFill);
}

/**
 * Frees storage returned by {@link allocStorage} now and detaches the buffer, so any remaining
 * view reads as empty. Returns false if it was already released.
 */
export function releaseStorage(buffer: ArrayBuffer): boolean {
  return native().release(buffer);
}

/**
 * Allocates `bytes` of kernel scratch (counted in {@link NativeMemoryStats.scratchBytes}), for
 * work driven from TypeScript such as the generic quantized path's row-block buffer.
 */
export function allocScratch(bytes: number): ArrayBuffer {
  return native().allocScratch(bytes);
}

/** Frees scratch from {@link allocScratch} now (the buffer is detached). */
export function releaseScratch(buffer: ArrayBuffer): boolean {
  return native().releaseScratch(buffer);
}

/** Native allocator counters. */
export function nativeMemoryStats(): NativeMemoryStats {
  return native().memoryStats();
}

/** Resets the native peak-bytes counter to the current byte count. */
export function resetPeakMemory(): void {
  native().resetPeak();
}

/**
 * Returns the caching allocator's free blocks to the system; returns the bytes released.
 * (Freed tensor storage is kept for reuse, up to `MODULORA_ALLOCATOR_CACHE_MB`, default 512.)
 */
export function trimAllocatorCache(): number {
  return native().trimCache();
}

/** Threads in the native pool (default: hardware threads, or `MODULORA_NUM_THREADS`). */
export function getNumThreads(): number {
  return native().getNumThreads();
}

/** Resizes the native thread pool. */
export function setNumThreads(n: number): void {
  native().setNumThreads(n);
}

/** CPU features and the active kernel path. */
export function cpuInfo(): CpuInfo {
  return native().cpuInfo();
}

/**
 * Forces a kernel path at or below the best one the CPU supports (for tests and benchmarks).
 * The environment variable `MODULORA_CPU_ISA` does the same at load time.
 */
export function setIsa(isa: Isa): void {
  native().setIsa(isa);
}

/** Whether this build of the addon includes the CUDA backend. */
export function hasCuda(): boolean {
  return native().hasCuda();
}
