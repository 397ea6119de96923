import { constants } from "node:buffer";
import { native } from "./native.js";

/** Raw file I/O exports of the addon. */
export interface RawIo {
  mmapFile(path: string, offset: number, length: number): ArrayBuffer;
  unmapFile(buffer: ArrayBuffer): boolean;
}

/**
 * The most bytes one {@link mmapFile} call can map: Node's largest buffer, 2^32 bytes on Node 20
 * and 21 (2^53 - 1 from Node 22). Map bigger ranges in pieces.
 */
export const MAX_MAPPING_BYTES: number = constants.MAX_LENGTH;

/**
 * Memory-maps bytes `[offset, offset + length)` of the file at `path` and returns them as an
 * ArrayBuffer (no copy: pages are read from the file as they are touched).
 *
 * The mapping is private and copy-on-write: writing through a view changes only this process's
 * copy, never the file. `offset` need not be page aligned. A `length` of 0 returns an empty
 * buffer and maps nothing. Unmap with {@link unmapFile}; garbage collection of the buffer unmaps
 * it too, as a safety net.
 *
 * Throws (naming `mmapFile` and the path) if the file cannot be opened, if the range runs past
 * the end of the file, if `length` exceeds {@link MAX_MAPPING_BYTES}, or if mmap fails. Do not truncate a file while it is mapped: touching
 * pages past the new end kills the process with SIGBUS.
 */
export function mmapFile(path: string, offset: number, length: number): ArrayBuffer {
  return native().mmapFile(path, offset, length);
}

/**
 * Unmaps a buffer returned by {@link mmapFile} now and detaches it, so every view over it reads
 * as empty (byteLength 0) instead of touching unmapped memory. Returns false if it was already
 * unmapped; throws a `TypeError` for a buffer that `mmapFile` did not return.
 */
export function unmapFile(buffer: ArrayBuffer): boolean {
  return native().unmapFile(buffer);
}
