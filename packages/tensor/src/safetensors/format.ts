// The safetensors layout, independent of any file or tensor class:
//
//   [0, 8)          N: u64 little-endian, the header length
//   [8, 8 + N)      UTF-8 JSON object, starting with '{', maybe padded with trailing spaces:
//                   { "__metadata__"?: {string: string},
//                     "<tensor name>": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] }, ... }
//   [8 + N, EOF)    the data section; offsets are relative to its start. Tensors are little-endian,
//                   row-major and contiguous; end - begin = product(shape) * dtype size.
//
// What this module accepts, beyond the letter of the spec:
// - gaps between tensors are allowed (nothing is read from them);
// - extra fields inside a tensor entry are ignored;
// - bytes after the end of the last tensor are NOT allowed ("trailing-data"): our writer never
//   produces them, the reference implementation rejects them, and they usually mean the header
//   was damaged or the file was appended to;
// - duplicate tensor names are rejected ("duplicate-name"): the spec forbids them, and JSON.parse
//   would silently keep the last one.
// Little-endian hosts only: tensor bytes are handed over as stored, never byte-swapped.
import { DTYPE_INFO, DTYPES, type DType } from "../dtype.js";
import { SafetensorsError } from "./errors.js";

/** Bytes of the header-length prefix. */
export const SAFETENSORS_PREFIX_BYTES = 8;
/** Default cap on the header length (the reference implementation's limit): 100 MiB. */
export const DEFAULT_MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** The writer pads the header so that the data section starts at a multiple of this. */
export const SAFETENSORS_DATA_ALIGNMENT = 8;
/** The reserved header key holding free-form string metadata. */
export const METADATA_KEY = "__metadata__";

/** Safetensors dtype name → our dtype, for the dtypes we can hold. */
const FROM_SAFETENSORS: ReadonlyMap<string, DType> = new Map(DTYPES.map((d) => [DTYPE_INFO[d].safetensors, d]));

/** Real safetensors dtypes that we recognise but cannot hold. */
const UNSUPPORTED_DTYPES: ReadonlySet<string> = new Set([
  "BOOL", "I16", "U16", "I64", "U64", "C64",
  "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
]);

/** One tensor as the header describes it. `begin`/`end` are byte offsets into the data section. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

/** A validated header. `tensors` are in data-section order (by `begin`; ties keep header order). */
export interface SafetensorsHeader {
  readonly tensors: SafetensorsEntry[];
  readonly metadata: Record<string, string>;
}

/** Our dtype for a safetensors dtype name, or the error saying why there is none. */
export function dtypeFromSafetensors(name: string, where: { path?: string; tensor?: string } = {}): DType {
  const d = FROM_SAFETENSORS.get(name);
  if (d) return d;
  const supported = DTYPES.map((x) => DTYPE_INFO[x].safetensors).join(", ");
  if (UNSUPPORTED_DTYPES.has(name)) {
    throw new SafetensorsError("unsupported-dtype", `dtype ${name} is not supported (supported: ${supported})`, where);
  }
  throw new SafetensorsError("unknown-dtype", `unknown dtype ${JSON.stringify(name)} (supported: ${supported})`, where);
}

/**
 * Bytes a tensor of this shape and element size takes, as a BigInt so that huge shapes neither
 * overflow nor lose precision. Shape entries must already be non-negative safe integers.
 */
export function shapeByteLength(shape: readonly number[], elementSize: number): bigint {
  let n = BigInt(elementSize);
  for (const d of shape) n *= BigInt(d);
  return n;
}

function formatShape(shape: readonly unknown[]): string {
  return `[${shape.map((d) => String(d)).join(", ")}]`;
}

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The keys of the top-level object of `text`, in order, duplicates included. `text` must already
 * be known to be valid JSON whose top level is an object, which keeps the scan simple: strings are
 * skipped whole, and at depth 1 the first string after `{` or `,` is a key.
 */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      for (i++; text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c /* \ */) i++;
      if (depth === 1 && expectKey) {
        keys.push(JSON.parse(text.slice(start, i + 1)) as string);
        expectKey = false;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */ && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

function parseMetadata(value: unknown, path: string): Record<string, string> {
  if (!isPlainObject(value)) {
    throw new SafetensorsError("metadata", `${METADATA_KEY} must be an object of strings, got ${kindOf(value)}`, { path });
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      throw new SafetensorsError("metadata", `${METADATA_KEY} value for key ${JSON.stringify(k)} must be a string, got ${kindOf(v)}`, { path });
    }
  }
  // fromEntries defines own properties, so even a key named "__proto__" survives as data.
  return Object.fromEntries(Object.entries(value)) as Record<string, string>;
}

function nonNegativeIntegers(value: unknown, field: string, where: { path: string; tensor: string }): number[] {
  if (!Array.isArray(value)) {
    throw new SafetensorsError("header-entry", `'${field}' must be an array of integers, got ${kindOf(value)}`, where);
  }
  value.forEach((d, i) => {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError("header-entry", `'${field}'[${i}] = ${JSON.stringify(d)} is not a non-negative integer (in ${field} ${JSON.stringify(value)})`, where);
    }
  });
  return value as number[];
}

function parseEntry(name: string, value: unknown, dataSectionLength: number, path: string): SafetensorsEntry {
  const where = { path, tensor: name };
  if (!isPlainObject(value)) {
    throw new SafetensorsError("header-entry", `entry must be an object with dtype, shape and data_offsets, got ${kindOf(value)}`, where);
  }
  for (const field of ["dtype", "shape", "data_offsets"]) {
    if (!(field in value)) throw new SafetensorsError("header-entry", `entry has no '${field}'`, where);
  }
  if (typeof value.dtype !== "string") {
    throw new SafetensorsError("header-entry", `'dtype' must be a string, got ${kindOf(value.dtype)}`, where);
  }
  const shape = nonNegativeIntegers(value.shape, "shape", where);
  const offsets = nonNegativeIntegers(value.data_offsets, "data_offsets", where);
  if (offsets.length !== 2) {
    throw new SafetensorsError("header-entry", `'data_offsets' must be [begin, end], got ${offsets.length} numbers`, where);
  }
  const dtype = dtypeFromSafetensors(value.dtype, where);
  const [begin, end] = offsets as [number, number];
  if (begin > end) {
    throw new SafetensorsError("offset-range", `data_offsets [${begin}, ${end}] end before they begin`, where);
  }
  if (end > dataSectionLength) {
    throw new SafetensorsError(
      "offset-range",
      `data_offsets [${begin}, ${end}] run past the end of the data section (${dataSectionLength} bytes); is the file truncated?`,
      where,
    );
  }
  const need = shapeByteLength(shape, DTYPE_INFO[dtype].size);
  if (need !== BigInt(end - begin)) {
    throw new SafetensorsError(
      "size-mismatch",
      `shape ${formatShape(shape)} of ${value.dtype} needs ${need} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
      where,
    );
  }
  return { name, dtype, shape: [...shape], begin, end };
}

/**
 * Parses and validates a safetensors header.
 *
 * @param headerBytes - the N header bytes (after the 8-byte prefix), padding included.
 * @param dataSectionLength - bytes in the file after the header (file size - 8 - N).
 * @param source - the file name (or any label) that error messages name.
 * @throws {@link SafetensorsError} with a specific code for any problem (see {@link SafetensorsErrorCode}).
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, dataSectionLength: number, source: string): SafetensorsHeader {
  const path = source;
  if (!Number.isSafeInteger(dataSectionLength) || dataSectionLength < 0) {
    throw new RangeError(`parseSafetensorsHeader: dataSectionLength must be a non-negative integer, got ${dataSectionLength}`);
  }
  if (headerBytes.length === 0 || headerBytes[0] !== 0x7b) {
    const found = headerBytes.length === 0 ? "an empty header" : `byte 0x${headerBytes[0]!.toString(16).padStart(2, "0")}`;
    throw new SafetensorsError("header-json", `the header must start with '{', found ${found}`, { path });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (err) {
    throw new SafetensorsError("header-json", "the header is not valid UTF-8", { path, cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError("header-json", `the header is not valid JSON (${(err as Error).message})`, { path, cause: err });
  }
  if (!isPlainObject(json)) {
    throw new SafetensorsError("header-json", `the header must be a JSON object, got ${kindOf(json)}`, { path });
  }
  const keys = topLevelKeys(text);
  if (keys.length !== Object.keys(json).length) {
    const seen = new Set<string>();
    const dup = keys.find((k) => (seen.has(k) ? true : (seen.add(k), false)));
    throw new SafetensorsError("duplicate-name", "the name appears more than once in the header", { path, tensor: dup ?? "?" });
  }

  let metadata: Record<string, string> = {};
  const tensors: SafetensorsEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === METADATA_KEY) metadata = parseMetadata(value, path);
    else tensors.push(parseEntry(name, value, dataSectionLength, path));
  }

  // Data order. Array.prototype.sort is stable, so empty tensors at one offset keep header order.
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: SafetensorsEntry | undefined;
  let maxEnd = 0;
  for (const t of tensors) {
    if (t.begin === t.end) continue; // empty tensors own no bytes, so they overlap nothing
    if (prev && t.begin < prev.end) {
      throw new SafetensorsError(
        "overlap",
        `bytes [${t.begin}, ${t.end}) overlap those of tensor ${JSON.stringify(prev.name)} [${prev.begin}, ${prev.end})`,
        { path, tensor: t.name },
      );
    }
    prev = t;
    maxEnd = Math.max(maxEnd, t.end);
  }
  if (maxEnd < dataSectionLength) {
    throw new SafetensorsError(
      "trailing-data",
      `the data section holds ${dataSectionLength} bytes but the tensors end at byte ${maxEnd}: ${dataSectionLength - maxEnd} unexplained bytes at the end`,
      { path },
    );
  }
  return { tensors, metadata };
}

/** One tensor's header fields, for {@link encodeSafetensorsHeader}. */
export interface SafetensorsHeaderEntry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

/**
 * Encodes the 8-byte prefix and the header, space-padded so that the data section starts at a
 * multiple of {@link SAFETENSORS_DATA_ALIGNMENT}. Keys appear in the order given, `__metadata__`
 * first (the JSON is assembled by hand because a JS object would move integer-like names first).
 * Inputs are not validated here; the writer does that.
 */
export function encodeSafetensorsHeader(entries: readonly SafetensorsHeaderEntry[], metadata?: Readonly<Record<string, string>>): Uint8Array {
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) parts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  for (const e of entries) {
    const body = `{"dtype":${JSON.stringify(DTYPE_INFO[e.dtype].safetensors)},"shape":${JSON.stringify(e.shape)},"data_offsets":[${e.begin},${e.end}]}`;
    parts.push(`${JSON.stringify(e.name)}:${body}`);
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const unpadded = SAFETENSORS_PREFIX_BYTES + json.length;
  const total = Math.ceil(unpadded / SAFETENSORS_DATA_ALIGNMENT) * SAFETENSORS_DATA_ALIGNMENT;
  const out = new Uint8Array(total);
  new DataView(out.buffer).setBigUint64(0, BigInt(total - SAFETENSORS_PREFIX_BYTES), true);
  out.set(json, SAFETENSORS_PREFIX_BYTES);
  out.fill(0x20, unpadded);
  return out;
}
