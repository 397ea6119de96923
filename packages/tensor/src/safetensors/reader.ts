import { closeSync, existsSync, fstatSync, openSync, read, readSync } from "node:fs";
import { promisify } from "node:util";
import { MAX_MAPPING_BYTES, mmapFile, unmapFile } from "@modulora/kernels";
import { DEFAULT_MAX_HEADER_BYTES, parseSafetensorsHeader, SAFETENSORS_PREFIX_BYTES, type SafetensorsEntry } from "./format.js";
import { SafetensorsError } from "./errors.js";

/**
 * How a {@link SafetensorsReader} gets at tensor bytes:
 * - `"stream"`: positioned reads (`fs.readSync`) straight into the caller's buffer; the file stays open.
 * - `"mmap"`: each tensor is memory-mapped (private, copy-on-write) when first asked for, and
 *   {@link SafetensorsReader.view} gives zero-copy views. Tensors are mapped one by one, not the
 *   whole data section at once, because one ArrayBuffer holds at most 4 GiB before Node 22 and
 *   checkpoint shards are often bigger.
 *
 * Both modes keep the file open until `close()`, and both keep reading the file that was opened
 * even if another file is renamed over its path meanwhile (mmap goes through `/proc/self/fd` on
 * Linux for this).
 */
export type SafetensorsReadMode = "stream" | "mmap";

/** Options of {@link SafetensorsReader.open}. */
export interface SafetensorsOpenOptions {
  /** Default `"stream"`. */
  mode?: SafetensorsReadMode;
  /** Largest header accepted, in bytes (default 100 MiB), so a hostile length cannot force a huge allocation. */
  maxHeaderBytes?: number;
}

// Node caps one read at 2 GiB - 1; big tensors are read in pieces.
const READ_CHUNK = 1 << 30;

/** A path that names the already open file itself, so a rename over `path` cannot redirect us. */
function pathOfFd(fd: number, path: string): string {
  const viaProc = `/proc/self/fd/${fd}`;
  return existsSync(viaProc) ? viaProc : path;
}

/** A reader that is garbage collected without close() still gives its fd back. */
const fdCleanup = new FinalizationRegistry<number>((fd) => {
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing to do
  }
});

const readAsync = promisify(read);

function ioError(path: string, what: string, err: unknown, tensor?: string): SafetensorsError {
  const reason = err instanceof Error ? err.message : String(err);
  return new SafetensorsError("io", `${what}: ${reason}`, { path, tensor, cause: err });
}

/** Fills `dest[offset, offset + length)` from the file at `position`, looping over short reads. */
function readFully(fd: number, dest: Uint8Array, offset: number, length: number, position: number, path: string, tensor?: string): void {
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = readSync(fd, dest, offset + done, Math.min(length - done, READ_CHUNK), position + done);
    } catch (err) {
      throw ioError(path, `read of ${length} bytes at file offset ${position} failed`, err, tensor);
    }
    if (n === 0) throw truncated(path, position, done, length, tensor);
    done += n;
  }
}

/** {@link readFully} on libuv's thread pool (`fs.read`): the event loop stays free during the read. */
async function readFullyAsync(fd: number, dest: Uint8Array, offset: number, length: number, position: number, path: string, tensor?: string): Promise<void> {
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = (await readAsync(fd, dest, offset + done, Math.min(length - done, READ_CHUNK), position + done)).bytesRead;
    } catch (err) {
      throw ioError(path, `read of ${length} bytes at file offset ${position} failed`, err, tensor);
    }
    if (n === 0) throw truncated(path, position, done, length, tensor);
    done += n;
  }
}

function truncated(path: string, position: number, done: number, length: number, tensor?: string): SafetensorsError {
  return new SafetensorsError(
    "io",
    `the file ended at byte ${position + done}, before the ${length} bytes expected at offset ${position} (was it truncated after opening?)`,
    { path, tensor },
  );
}

/**
 * Reads tensors out of a safetensors file, one at a time, without ever loading the whole file.
 *
 * `open` reads only the 8-byte prefix and the header, and validates the header completely (every
 * problem is a {@link SafetensorsError} with a specific code). Tensor bytes are then read on demand
 * with {@link readInto} (into any `Uint8Array`, native storage included) or, in mmap mode, viewed
 * in place with {@link view}. Call {@link close} when done.
 *
 * Bytes are returned as stored: little-endian, which is what every supported host uses.
 */
export class SafetensorsReader {
  /** The file this reader reads. */
  readonly path: string;
  readonly mode: SafetensorsReadMode;
  /** The `__metadata__` map (empty if the file has none). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Size of the file when it was opened. */
  readonly fileSize: number;
  /** File offset of the data section (8 + header length); tensor offsets are relative to it. */
  readonly dataOffset: number;

  private readonly tensors: readonly SafetensorsEntry[];
  private readonly byName: ReadonlyMap<string, SafetensorsEntry>;
  private fd: number | undefined;
  /** mmap mode: the tensors mapped so far, by name. */
  private readonly mapped = new Map<string, ArrayBuffer>();
  private isClosed = false;

  private constructor(path: string, mode: SafetensorsReadMode, fileSize: number, dataOffset: number, tensors: SafetensorsEntry[], metadata: Record<string, string>) {
    this.path = path;
    this.mode = mode;
    this.fileSize = fileSize;
    this.dataOffset = dataOffset;
    this.tensors = tensors;
    this.metadata = metadata;
    this.byName = new Map(tensors.map((t) => [t.name, t]));
  }

  /**
   * Opens and validates a safetensors file.
   * @throws {@link SafetensorsError} (`io` if it cannot be opened or read; header codes otherwise).
   */
  static open(path: string, options: SafetensorsOpenOptions = {}): SafetensorsReader {
    const mode = options.mode ?? "stream";
    if (mode !== "stream" && mode !== "mmap") throw new TypeError(`SafetensorsReader.open: mode must be "stream" or "mmap", got ${JSON.stringify(mode)}`);
    const maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
    if (!Number.isSafeInteger(maxHeaderBytes) || maxHeaderBytes < 2) {
      throw new RangeError(`SafetensorsReader.open: maxHeaderBytes must be an integer >= 2, got ${maxHeaderBytes}`);
    }

    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (err) {
      throw ioError(path, "cannot open the file", err);
    }
    try {
      let size: number;
      try {
        const st = fstatSync(fd);
        if (!st.isFile()) throw new Error("not a regular file");
        size = st.size;
      } catch (err) {
        throw ioError(path, "cannot stat the file", err);
      }
      if (size < SAFETENSORS_PREFIX_BYTES) {
        throw new SafetensorsError("file-too-small", `the file has ${size} bytes, fewer than the 8-byte header length prefix`, { path });
      }
      const prefix = new Uint8Array(SAFETENSORS_PREFIX_BYTES);
      readFully(fd, prefix, 0, SAFETENSORS_PREFIX_BYTES, 0, path);
      // Compared as BigInt: a lying prefix can claim up to 2^64 - 1 bytes.
      const claimed = new DataView(prefix.buffer).getBigUint64(0, true);
      if (claimed > BigInt(maxHeaderBytes)) {
        throw new SafetensorsError(
          "header-length",
          `the header length prefix says ${claimed} bytes, over the limit of ${maxHeaderBytes} (raise maxHeaderBytes if the file is genuine)`,
          { path },
        );
      }
      const headerBytes = Number(claimed);
      if (SAFETENSORS_PREFIX_BYTES + headerBytes > size) {
        throw new SafetensorsError(
          "header-length",
          `the header length prefix says ${headerBytes} bytes but only ${size - SAFETENSORS_PREFIX_BYTES} follow it: the file is truncated or the prefix is corrupt`,
          { path },
        );
      }
      const header = new Uint8Array(headerBytes);
      readFully(fd, header, 0, headerBytes, SAFETENSORS_PREFIX_BYTES, path);
      const dataOffset = SAFETENSORS_PREFIX_BYTES + headerBytes;
      const parsed = parseSafetensorsHeader(header, size - dataOffset, path);

      const reader = new SafetensorsReader(path, mode, size, dataOffset, parsed.tensors, parsed.metadata);
      reader.fd = fd;
      // Mappings unmap themselves when collected; the descriptor needs this.
      fdCleanup.register(reader, fd, reader);
      return reader;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Tensor names in data-section order (the order the writer stored them). */
  names(): string[] {
    return this.tensors.map((t) => t.name);
  }

  /** Every tensor entry, in data-section order. */
  entries(): readonly SafetensorsEntry[] {
    return this.tensors;
  }

  /** Whether the file holds a tensor of this name. */
  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The header entry of one tensor. @throws {@link SafetensorsError} `not-found`. */
  entry(name: string): SafetensorsEntry {
    const e = this.byName.get(name);
    if (!e) {
      const known = this.tensors.length <= 8 ? `; the file holds: ${this.tensors.map((t) => JSON.stringify(t.name)).join(", ") || "no tensors"}` : ` (among ${this.tensors.length} tensors)`;
      throw new SafetensorsError("not-found", `no tensor of this name in the file${known}`, { path: this.path, tensor: name });
    }
    return e;
  }

  /** Bytes of one tensor's data. */
  byteLength(name: string): number {
    const e = this.entry(name);
    return e.end - e.begin;
  }

  /**
   * Copies one tensor's bytes into `dest`, which must be exactly {@link byteLength} bytes long.
   * In stream mode the bytes are read from the file straight into `dest` (no intermediate
   * buffer), so `dest` can be a view of native tensor storage.
   */
  readInto(name: string, dest: Uint8Array): void {
    const n = this.checkDest(name, dest, "readInto");
    if (n === 0) return;
    // (A destination is a single buffer, so it never exceeds what one mapping can hold.)
    if (this.mode === "stream") readFully(this.fd!, dest, 0, n, this.dataOffset + this.entry(name).begin, this.path, name);
    else dest.set(this.view(name));
  }

  /**
   * {@link readInto} without blocking the event loop: in stream mode the read runs on libuv's
   * thread pool. `dest` must not be touched until the promise settles, and the reader must stay open.
   */
  async readIntoAsync(name: string, dest: Uint8Array): Promise<void> {
    const n = this.checkDest(name, dest, "readIntoAsync");
    if (n === 0) return;
    if (this.mode === "stream") await readFullyAsync(this.fd!, dest, 0, n, this.dataOffset + this.entry(name).begin, this.path, name);
    else dest.set(this.view(name));
  }

  /** The byte length of `name`, after checking that `dest` is a Uint8Array of exactly that length. */
  private checkDest(name: string, dest: Uint8Array, op: string): number {
    this.assertOpen();
    const e = this.entry(name);
    const n = e.end - e.begin;
    if (!(dest instanceof Uint8Array)) {
      throw new TypeError(`safetensors '${this.path}', tensor ${JSON.stringify(name)}: ${op} needs a Uint8Array destination`);
    }
    if (dest.byteLength !== n) {
      throw new RangeError(`safetensors '${this.path}', tensor ${JSON.stringify(name)}: the destination holds ${dest.byteLength} bytes but the tensor has ${n}`);
    }
    return n;
  }

  /** One tensor's bytes in a new `Uint8Array` (a convenience over {@link readInto}). */
  read(name: string): Uint8Array {
    const out = new Uint8Array(this.byteLength(name));
    this.readInto(name, out);
    return out;
  }

  /**
   * A zero-copy view of one tensor's bytes in the mapped file (mmap mode only; the tensor is
   * mapped on first use). The view is valid until {@link close}, after which it reads as empty.
   * Writes to it stay private to this process. A tensor larger than one buffer can hold
   * (`MAX_MAPPING_BYTES`, 4 GiB before Node 22) cannot be viewed.
   */
  view(name: string): Uint8Array {
    this.assertOpen();
    if (this.mode !== "mmap") {
      throw new Error(`safetensors '${this.path}': view() needs a reader opened with mode "mmap"; use readInto() in stream mode`);
    }
    const e = this.entry(name);
    const n = e.end - e.begin;
    let buf = this.mapped.get(name);
    if (!buf) {
      if (n > MAX_MAPPING_BYTES) {
        throw new RangeError(
          `safetensors '${this.path}', tensor ${JSON.stringify(name)}: ${n} bytes do not fit in one mapping on this Node (at most ${MAX_MAPPING_BYTES})`,
        );
      }
      buf = this.map(e.begin, n, name);
      this.mapped.set(name, buf);
    }
    return new Uint8Array(buf);
  }

  /** Maps `length` bytes at data-section offset `begin` of the open file. */
  private map(begin: number, length: number, tensor: string): ArrayBuffer {
    try {
      return mmapFile(pathOfFd(this.fd!, this.path), this.dataOffset + begin, length);
    } catch (err) {
      throw ioError(this.path, `cannot memory-map ${length} bytes at file offset ${this.dataOffset + begin}`, err, tensor);
    }
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Closes the file or unmaps it. Views from {@link view} become empty. Safe to call twice. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.fd !== undefined) {
      fdCleanup.unregister(this);
      const fd = this.fd;
      this.fd = undefined;
      closeSync(fd);
    }
    for (const buf of this.mapped.values()) unmapFile(buf);
    this.mapped.clear();
  }

  private assertOpen(): void {
    if (this.isClosed) throw new SafetensorsError("closed", "the reader was closed", { path: this.path });
  }
}
