/**
 * What went wrong with a safetensors file, as a stable code callers can branch on.
 *
 * Reading:
 * - `file-too-small`: shorter than the 8-byte header-length prefix.
 * - `header-length`: the header length runs past the end of the file or over the limit.
 * - `header-json`: the header is not UTF-8, not JSON, does not start with `{`, or is not an object.
 * - `header-entry`: a tensor entry lacks `dtype`/`shape`/`data_offsets` or has the wrong types.
 * - `duplicate-name`: a tensor name appears twice in the header (the spec forbids it).
 * - `unknown-dtype`: a dtype string that is not a safetensors dtype at all.
 * - `unsupported-dtype`: a real safetensors dtype (`I64`, `BOOL`, `F8_E4M3`...) we cannot hold.
 * - `size-mismatch`: the shape and dtype do not account for exactly `end - begin` bytes.
 * - `offset-range`: offsets outside the data section, or `begin > end`.
 * - `overlap`: two tensors share bytes.
 * - `trailing-data`: bytes after the end of the last tensor.
 * - `metadata`: `__metadata__` is not an object of strings.
 * - `not-found`: no tensor of that name in the file.
 * - `closed`: the reader was used after `close()`.
 *
 * Writing reuses `header-entry`, `duplicate-name`, `size-mismatch` and `metadata` for invalid
 * arguments. `io` is any operating-system failure (open, read, write, rename), with the system
 * error as `cause`.
 */
export type SafetensorsErrorCode =
  | "file-too-small"
  | "header-length"
  | "header-json"
  | "header-entry"
  | "duplicate-name"
  | "unknown-dtype"
  | "unsupported-dtype"
  | "size-mismatch"
  | "offset-range"
  | "overlap"
  | "trailing-data"
  | "metadata"
  | "not-found"
  | "closed"
  | "io";

/**
 * An invalid or unreadable safetensors file, or invalid arguments to the writer. The message
 * reads `safetensors '<file>', tensor '<name>': <problem>`.
 */
export class SafetensorsError extends Error {
  /** What went wrong (see {@link SafetensorsErrorCode}). */
  readonly code: SafetensorsErrorCode;
  /** The tensor concerned, if any. */
  readonly tensor?: string;
  /** The file (or, for in-memory headers, the source label given by the caller). */
  readonly path?: string;

  constructor(code: SafetensorsErrorCode, problem: string, where: { path?: string; tensor?: string; cause?: unknown } = {}) {
    const file = where.path !== undefined ? ` '${where.path}'` : "";
    const tensor = where.tensor !== undefined ? `, tensor ${JSON.stringify(where.tensor)}` : "";
    super(`safetensors${file}${tensor}: ${problem}`, where.cause !== undefined ? { cause: where.cause } : undefined);
    this.name = "SafetensorsError";
    this.code = code;
    if (where.tensor !== undefined) this.tensor = where.tensor;
    if (where.path !== undefined) this.path = where.path;
  }
}
