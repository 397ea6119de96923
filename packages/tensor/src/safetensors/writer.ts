import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { DTYPE_INFO, DTYPES, isDType, type DType } from "../dtype.js";
import { encodeSafetensorsHeader, METADATA_KEY, shapeByteLength, type SafetensorsHeaderEntry } from "./format.js";
import { SafetensorsError } from "./errors.js";

/** One tensor to write: raw little-endian, row-major, contiguous bytes. */
export interface SafetensorsTensorData {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/** Options of {@link writeSafetensors}. */
export interface WriteSafetensorsOptions {
  /**
   * Called after each tensor's bytes are written, with the data bytes written so far and in
   * total. Throwing from it aborts the write (the target is left untouched).
   */
  onProgress?: (written: number, total: number, name: string) => void;
}

// Node caps one write at 2 GiB - 1; big tensors are written in pieces.
const WRITE_CHUNK = 1 << 30;

function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) {
    done += writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, WRITE_CHUNK));
  }
}

/** Checks the arguments and lays the tensors out back to back; nothing touches the disk. */
function layOut(path: string, tensors: readonly SafetensorsTensorData[], metadata: Readonly<Record<string, string>> | undefined): SafetensorsHeaderEntry[] {
  if (metadata !== undefined) {
    if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
      throw new SafetensorsError("metadata", "metadata must be an object of strings", { path });
    }
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new SafetensorsError("metadata", `metadata value for key ${JSON.stringify(k)} must be a string, got ${typeof v}`, { path });
      }
    }
  }
  const seen = new Set<string>();
  const entries: SafetensorsHeaderEntry[] = [];
  let offset = 0;
  for (const t of tensors) {
    const name = t.name;
    if (typeof name !== "string" || name.length === 0) {
      throw new SafetensorsError("header-entry", `tensor names must be non-empty strings, got ${JSON.stringify(name)}`, { path });
    }
    const where = { path, tensor: name };
    if (name === METADATA_KEY) throw new SafetensorsError("header-entry", `${METADATA_KEY} is reserved for metadata`, where);
    if (seen.has(name)) throw new SafetensorsError("duplicate-name", "two tensors have this name", where);
    seen.add(name);
    if (!isDType(t.dtype)) {
      throw new SafetensorsError("unknown-dtype", `unknown dtype ${JSON.stringify(t.dtype)} (known: ${DTYPES.join(", ")})`, where);
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError("header-entry", `shape must be an array of non-negative integers, got ${JSON.stringify(t.shape)}`, where);
    }
    if (!(t.data instanceof Uint8Array)) {
      throw new SafetensorsError("header-entry", "data must be a Uint8Array", where);
    }
    const need = shapeByteLength(t.shape, DTYPE_INFO[t.dtype].size);
    if (need !== BigInt(t.data.byteLength)) {
      throw new SafetensorsError(
        "size-mismatch",
        `shape [${t.shape.join(", ")}] of ${t.dtype} needs ${need} bytes but data holds ${t.data.byteLength}`,
        where,
      );
    }
    const n = t.data.byteLength;
    if (offset + n > Number.MAX_SAFE_INTEGER) throw new SafetensorsError("size-mismatch", "the file would exceed 2^53 bytes", where);
    entries.push({ name, dtype: t.dtype, shape: [...t.shape], begin: offset, end: offset + n });
    offset += n;
  }
  return entries;
}

/**
 * Writes tensors to a safetensors file, atomically.
 *
 * The header lists `__metadata__` first (when non-empty) and then the tensors in the order
 * given, with their data back to back in the same order; it is padded with spaces so that the
 * data section starts at a multiple of 8 bytes. All arguments are checked before anything is
 * written. The file is written to `<path>.tmp-<pid>-<random>` in the same directory, flushed to
 * disk and renamed over `path`, so readers see either the old file or the complete new one; on
 * any failure the temporary file is removed and an existing `path` is left untouched.
 *
 * @throws {@link SafetensorsError}: `header-entry`, `duplicate-name`, `unknown-dtype`,
 * `size-mismatch` or `metadata` for invalid arguments, `io` when the file system fails.
 */
export function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsTensorData[],
  metadata?: Readonly<Record<string, string>>,
  options: WriteSafetensorsOptions = {},
): void {
  const entries = layOut(path, tensors, metadata);
  const header = encodeSafetensorsHeader(entries, metadata);
  const total = entries.length ? entries[entries.length - 1]!.end : 0;

  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "wx");
    writeFully(fd, header);
    let written = 0;
    tensors.forEach((t) => {
      writeFully(fd!, t.data);
      written += t.data.byteLength;
      options.onProgress?.(written, total, t.name);
    });
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // the write already failed; report that error, not this one
      }
    }
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or already gone
    }
    if (err instanceof SafetensorsError) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    throw new SafetensorsError("io", `writing failed, the file was left unchanged: ${reason}`, { path, cause: err });
  }
  // Make the rename itself durable. Best effort: some file systems refuse fsync on a directory.
  try {
    const dirFd = openSync(dirname(path), "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch {
    // the data is written and renamed; only durability across a crash is weaker here
  }
}
