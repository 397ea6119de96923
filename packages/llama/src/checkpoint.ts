// Hugging Face safetensors checkpoints (one file or sharded) → f32 (or bf16) tensors, checked against the config.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { cast, formatShape, SafetensorsReader, shapesEqual, tensorFrom, type Device, type DType, type SafetensorsEntry, type SafetensorsReadMode, type Tensor } from "@modulora/tensor";
import { readJsonFile } from "./config.js";
import { LINEAR_MODULE, LINEAR_NAMES, type LlamaConfig } from "./types.js";

/** The single-file checkpoint name. */
export const SAFETENSORS_FILE = "model.safetensors";
/** The index of a sharded checkpoint (`weight_map`: tensor name → shard file). */
export const SAFETENSORS_INDEX_FILE = "model.safetensors.index.json";

/** Options of {@link loadCheckpoint}. */
export interface LoadCheckpointOptions {
  /**
   * Called after each tensor is loaded, with the number of tensors loaded so far, the number to
   * load, and the tensor's name. Throwing from it aborts the load (nothing leaks).
   */
  onProgress?: (done: number, total: number, name: string) => void;
  /**
   * Compute dtype of the returned tensors (default `"f32"`; `"bf16"` for a bf16 model). A tensor
   * stored in another dtype is cast to it on the device.
   */
  dtype?: "f32" | "bf16";
  /**
   * The device the tensors are placed on (default `cpu`). Each tensor is read into a host buffer,
   * checked, and copied in with one host → device transfer in its stored dtype; one in another
   * dtype than `dtype` is then cast on the device. Only one tensor's bytes are on the host at a time.
   */
  device?: Device;
  /** How shards are read (default `"stream"`: positioned reads into a host buffer per tensor). */
  mode?: SafetensorsReadMode;
}

/** A tensor whose shape differs from what the config implies. */
export interface MisshapedTensor {
  name: string;
  expected: readonly number[];
  actual: readonly number[];
}

/**
 * A checkpoint that does not match its config or is internally inconsistent. Every problem found
 * is listed (not just the first): `missing`, `unexpected`, `misshaped` tensors, and `problems`
 * (all of them as sentences, including shard and dtype problems).
 */
export class CheckpointError extends Error {
  readonly dir: string;
  readonly missing: string[];
  readonly unexpected: string[];
  readonly misshaped: MisshapedTensor[];
  readonly problems: string[];

  constructor(dir: string, problems: string[], detail: { missing?: string[]; unexpected?: string[]; misshaped?: MisshapedTensor[]; cause?: unknown } = {}) {
    const shown = problems.slice(0, 40);
    const more = problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : "";
    const head = problems.length === 1 ? "1 problem" : `${problems.length} problems`;
    super(`checkpoint ${dir}: ${head}:\n  ${shown.join("\n  ")}${more}`, detail.cause !== undefined ? { cause: detail.cause } : undefined);
    this.name = "CheckpointError";
    this.dir = dir;
    this.missing = detail.missing ?? [];
    this.unexpected = detail.unexpected ?? [];
    this.misshaped = detail.misshaped ?? [];
    this.problems = problems;
  }
}

/**
 * Every tensor a LLaMA-family checkpoint must hold, with its shape, in a fixed order (embedding,
 * then each block, final norm, `lm_head` unless tied). Linear weights are PyTorch's [out, in].
 */
export function expectedTensorShapes(config: LlamaConfig): Map<string, number[]> {
  const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: m, vocabSize: v } = config;
  const linearShapes: Record<(typeof LINEAR_NAMES)[number], number[]> = {
    q_proj: [numHeads * headDim, h],
    k_proj: [numKvHeads * headDim, h],
    v_proj: [numKvHeads * headDim, h],
    o_proj: [h, numHeads * headDim],
    gate_proj: [m, h],
    up_proj: [m, h],
    down_proj: [h, m],
  };
  const out = new Map<string, number[]>();
  out.set("model.embed_tokens.weight", [v, h]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    out.set(`${p}.input_layernorm.weight`, [h]);
    out.set(`${p}.post_attention_layernorm.weight`, [h]);
    for (const name of LINEAR_NAMES) out.set(`${p}.${LINEAR_MODULE[name]}.${name}.weight`, linearShapes[name]);
  }
  out.set("model.norm.weight", [h]);
  if (!config.tieWordEmbeddings) out.set("lm_head.weight", [v, h]);
  return out;
}

/**
 * Stored tensors that are not weights and are skipped, as transformers skips them: the rotary
 * `inv_freq` buffer that checkpoints written before transformers 4.31 contain (it is recomputed
 * from the config).
 */
const IGNORED_TENSOR = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/** On-disk dtypes we read and cast to the compute dtype. */
const SOURCE_DTYPES: ReadonlySet<DType> = new Set<DType>(["f32", "bf16", "f16"]);

/** Where one tensor is stored. */
interface Located {
  shard: string;
  entry: SafetensorsEntry;
}

/**
 * The weight files of a checkpoint directory — `model.safetensors`, or the shards that
 * `model.safetensors.index.json` names — and which tensor each should hold (`index` null for a
 * single file). Every shard name must be a plain file name in the directory (no `/`, `\`, `..`)
 * and must exist; anything else is a {@link CheckpointError}. Quantized checkpoints and the CLI's
 * checks use the same function, so all of them accept and refuse the same files.
 */
export function checkpointShards(dir: string): { files: string[]; index: Map<string, string> | null } {
  const single = join(dir, SAFETENSORS_FILE);
  const indexPath = join(dir, SAFETENSORS_INDEX_FILE);
  // transformers looks for the single file first, then the index; so do we.
  if (existsSync(single)) return { files: [SAFETENSORS_FILE], index: null };
  if (!existsSync(indexPath)) {
    const hint = existsSync(join(dir, "pytorch_model.bin")) || existsSync(join(dir, "pytorch_model.bin.index.json"))
      ? " (only PyTorch pickle weights are there: convert them to safetensors first)"
      : "";
    throw new CheckpointError(dir, [`neither ${SAFETENSORS_FILE} nor ${SAFETENSORS_INDEX_FILE} is in the directory${hint}`]);
  }
  const json = readJsonFile(indexPath, "checkpoint index", (p, cause) => new CheckpointError(dir, [`${SAFETENSORS_INDEX_FILE}: ${p}`], { cause }));
  const map = typeof json === "object" && json !== null ? (json as Record<string, unknown>)["weight_map"] : undefined;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new CheckpointError(dir, [`${SAFETENSORS_INDEX_FILE}: "weight_map" must be an object of tensor name → shard file`]);
  }
  const index = new Map<string, string>();
  const files: string[] = [];
  const problems: string[] = [];
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    // Shards are plain file names next to the index; anything else could point outside the directory.
    if (typeof file !== "string" || file.length === 0 || /[/\\]/.test(file) || file === "." || file === "..") {
      problems.push(`${SAFETENSORS_INDEX_FILE}: tensor ${JSON.stringify(name)} maps to ${JSON.stringify(file)}, which is not a file name in the directory`);
      continue;
    }
    index.set(name, file);
    if (!files.includes(file)) files.push(file);
  }
  for (const file of files) {
    if (!existsSync(join(dir, file))) {
      const held = [...index].filter(([, f]) => f === file).map(([n]) => n);
      problems.push(`shard ${file} named by ${SAFETENSORS_INDEX_FILE} is missing (it should hold ${held.length} tensor${held.length === 1 ? "" : "s"}, e.g. ${JSON.stringify(held[0])})`);
    }
  }
  if (problems.length) throw new CheckpointError(dir, problems);
  // model-00001-of-0000N first: read the shards in order.
  return { files: files.sort(), index };
}

/** "0–3" / "5" / "1, 4, 6" */
function blockRange(xs: readonly number[]): string {
  if (xs.length > 1 && xs.every((x, i) => i === 0 || x === xs[i - 1]! + 1)) return `${xs[0]}–${xs[xs.length - 1]}`;
  return xs.length > 12 ? `${xs.slice(0, 12).join(", ")}, …` : xs.join(", ");
}

/**
 * Compares `num_hidden_layers` with the blocks the stored tensor names hold
 * (`model.layers.{i}.…`), before anything that grows with the layer count is built: a config
 * claiming 10 000 000 layers over a 4-layer checkpoint fails here at once, naming both counts,
 * rather than after listing 90 million expected tensors.
 */
export function checkLayerCount(dir: string, config: LlamaConfig, names: Iterable<string>): void {
  const problem = layerCountProblem(config, names);
  if (problem) throw new CheckpointError(dir, [problem]);
}

/** The problem {@link checkLayerCount} throws, or null. */
export function layerCountProblem(config: LlamaConfig, names: Iterable<string>): string | null {
  const blocks = new Set<number>();
  for (const name of names) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m && !IGNORED_TENSOR.test(name)) blocks.add(Number(m[1]));
  }
  const have = [...blocks].sort((a, b) => a - b);
  const n = config.numLayers;
  const contiguous = have.length === 0 || have[have.length - 1] === have.length - 1;
  if (have.length === n && contiguous) return null;
  const held = have.length ? `blocks ${blockRange(have)} (${have.length} layer${have.length === 1 ? "" : "s"})` : "no blocks";
  const missing = contiguous || have.length === 0 ? "" : `; missing blocks ${blockRange(Array.from({ length: have[have.length - 1]! + 1 }, (_, i) => i).filter((i) => !blocks.has(i)))}`;
  return `config.json num_hidden_layers is ${n}, but the weights hold ${held}${missing}: the config does not describe these weights (fix num_hidden_layers, or use the config that came with them)`;
}

/**
 * Checks what the shards hold against the index and the config, before anything is loaded.
 * Returns the tensors to load, in file order (shard by shard, data-section order within one).
 */
function plan(dir: string, config: LlamaConfig, readers: Map<string, SafetensorsReader>, index: Map<string, string> | null): Located[] {
  const problems: string[] = [];
  const stored = new Map<string, Located>();
  for (const [shard, reader] of readers) {
    for (const entry of reader.entries()) {
      const owner = index?.get(entry.name);
      if (index && owner === undefined) {
        if (!IGNORED_TENSOR.test(entry.name)) problems.push(`tensor ${JSON.stringify(entry.name)} is in shard ${shard} but not in ${SAFETENSORS_INDEX_FILE}`);
      } else if (owner === undefined || owner === shard) {
        stored.set(entry.name, { shard, entry });
      }
      // (A tensor that the index places in another shard is handled below, from that shard's side.)
    }
  }
  if (index) {
    for (const [name, shard] of index) {
      if (!stored.has(name) || stored.get(name)!.shard !== shard) {
        problems.push(`${SAFETENSORS_INDEX_FILE} places tensor ${JSON.stringify(name)} in shard ${shard}, which does not hold it`);
        stored.delete(name);
      }
    }
  }

  const layers = layerCountProblem(config, stored.keys());
  if (layers) throw new CheckpointError(dir, [...problems, layers]);
  const expected = expectedTensorShapes(config);
  const missing: string[] = [];
  const unexpected: string[] = [];
  const misshaped: MisshapedTensor[] = [];
  for (const [name, shape] of expected) {
    const at = stored.get(name);
    if (!at) {
      // An index entry whose shard lacks the tensor was reported above; not "missing" again.
      if (!index?.has(name)) missing.push(name);
      continue;
    }
    if (!shapesEqual(at.entry.shape, shape)) misshaped.push({ name, expected: shape, actual: at.entry.shape });
    if (!SOURCE_DTYPES.has(at.entry.dtype)) {
      problems.push(`tensor ${JSON.stringify(name)} in ${at.shard} is ${at.entry.dtype}; supported on disk: ${[...SOURCE_DTYPES].join(", ")}`);
    }
  }
  for (const [name, at] of stored) {
    if (expected.has(name) || IGNORED_TENSOR.test(name)) continue;
    // Tied embeddings: transformers ignores a stored lm_head and uses embed_tokens; so do we
    // (it is not loaded, so it is not compared with embed_tokens either). Its shape is still checked.
    if (name === "lm_head.weight" && config.tieWordEmbeddings) {
      const want = [config.vocabSize, config.hiddenSize];
      if (!shapesEqual(at.entry.shape, want)) misshaped.push({ name, expected: want, actual: at.entry.shape });
      continue;
    }
    unexpected.push(name);
  }

  for (const name of missing) problems.push(`missing tensor ${JSON.stringify(name)} (expected shape ${formatShape(expected.get(name)!)})`);
  for (const name of unexpected) problems.push(`unexpected tensor ${JSON.stringify(name)} (${stored.get(name)!.shard}, shape ${formatShape(stored.get(name)!.entry.shape)}): not part of a ${config.architecture}`);
  for (const m of misshaped) problems.push(`tensor ${JSON.stringify(m.name)} has shape ${formatShape(m.actual)}, expected ${formatShape(m.expected)} from the config`);
  if (problems.length) throw new CheckpointError(dir, problems, { missing, unexpected, misshaped });

  const order = [...readers.keys()];
  return [...expected.keys()]
    .map((name) => stored.get(name)!)
    .sort((a, b) => order.indexOf(a.shard) - order.indexOf(b.shard) || a.entry.begin - b.entry.begin);
}

/**
 * Everything {@link loadCheckpoint} checks before it reads a weight — shards, index, layer count,
 * names, shapes, dtypes — from the headers alone (nothing is allocated). With `quantized`, only
 * the shards, the index and the layer count (a quantized checkpoint's per-layer tensors are
 * checked by `loadQuantizedModel`). Throws {@link CheckpointError}; `SafetensorsError` for a
 * malformed header.
 */
export function checkCheckpointHeaders(dir: string, config: LlamaConfig, options: { quantized?: boolean } = {}): void {
  const { files, index } = checkpointShards(dir);
  const readers = new Map<string, SafetensorsReader>();
  try {
    for (const file of files) readers.set(file, SafetensorsReader.open(join(dir, file), { mode: "stream" }));
    if (options.quantized) checkLayerCount(dir, config, [...readers.values()].flatMap((r) => r.names()));
    else plan(dir, config, readers, index);
  } finally {
    for (const r of readers.values()) r.close();
  }
}

/**
 * Loads the weights of a LLaMA-family checkpoint directory as f32 tensors (bf16 with `dtype: "bf16"`), keyed by Hugging
 * Face names, in the order of {@link expectedTensorShapes}. The caller owns (and disposes) them.
 *
 * Reads `model.safetensors`, or the shards listed by `model.safetensors.index.json`. F32, BF16 and
 * F16 on disk are accepted; a tensor stored in another dtype than the compute dtype is cast one
 * tensor at a time, each raw copy freed right after its cast, so peak memory stays near the final size plus the largest raw tensor
 * (no shard is ever held in memory as a whole).
 *
 * Before anything is allocated, every shard header is read and the whole checkpoint is checked
 * against the config and the index; all problems go into one {@link CheckpointError}: missing,
 * unexpected and mis-shaped tensors, unsupported dtypes, shards the index names but that are
 * absent, index entries their shard does not hold. A stored `lm_head.weight` with tied
 * embeddings and old `rotary_emb.inv_freq` buffers are skipped, as transformers does.
 *
 * @throws {@link CheckpointError}; `SafetensorsError` for a malformed shard.
 */
export function loadCheckpoint(dir: string, config: LlamaConfig, options: LoadCheckpointOptions = {}): Map<string, Tensor> {
  return runLoaderSync(checkpointLoader(dir, config, options));
}

/** {@link loadCheckpoint} with every file read off the event loop (libuv's thread pool), one tensor at a time. */
export function loadCheckpointAsync(dir: string, config: LlamaConfig, options: LoadCheckpointOptions = {}): Promise<Map<string, Tensor>> {
  return runLoaderAsync(checkpointLoader(dir, config, options));
}

function* checkpointLoader(dir: string, config: LlamaConfig, options: LoadCheckpointOptions): Loader<Map<string, Tensor>> {
  const dtype = options.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "bf16") throw new RangeError(`loadCheckpoint: dtype ${JSON.stringify(dtype)} is not a compute dtype; use "f32" or "bf16"`);
  const device = options.device ?? "cpu";
  const quant = config.raw["quantization_config"];
  if (quant !== undefined && quant !== null) {
    const method = (quant as Record<string, unknown>)["quant_method"];
    throw new CheckpointError(dir, [`config.json has a quantization_config (quant_method ${JSON.stringify(method)}): loadCheckpoint reads full-precision weights only`]);
  }

  const { files, index } = checkpointShards(dir);
  const readers = new Map<string, SafetensorsReader>();
  const loaded = new Map<string, Tensor>();
  try {
    for (const file of files) readers.set(file, SafetensorsReader.open(join(dir, file), { mode: options.mode ?? "stream" }));
    const todo = plan(dir, config, readers, index);

    let done = 0;
    for (const [i, { shard, entry }] of todo.entries()) {
      const reader = readers.get(shard)!;
      const host: HostArray = yield { reader, entry };
      loaded.set(entry.name, placeAs(dir, entry, host, device, dtype));
      options.onProgress?.(++done, todo.length, entry.name);
      // Close each shard as soon as its last tensor is read.
      if (todo[i + 1]?.shard !== shard) reader.close();
    }
    const ordered = new Map<string, Tensor>();
    for (const name of expectedTensorShapes(config).keys()) ordered.set(name, loaded.get(name)!);
    return ordered;
  } catch (err) {
    for (const t of loaded.values()) t.dispose();
    throw err;
  } finally {
    for (const r of readers.values()) r.close();
  }
}

/**
 * Where a floating-point tensor's raw bytes (f32, f64, bf16 or f16, little-endian) hold NaN or ±Inf:
 * the first such element, its value and how many there are; null when all are finite. Reads the
 * exponent bits only (an all-ones exponent), one pass over the data; other dtypes give null.
 */
export function findNonFinite(bytes: Uint8Array, dtype: DType): { index: number; value: number; count: number } | null {
  let index = -1;
  let count = 0;
  let value = NaN;
  if (dtype === "f32") {
    const u = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
    for (let i = 0; i < u.length; i++) {
      if ((u[i]! & 0x7f800000) === 0x7f800000) {
        if (count++ === 0) index = i;
      }
    }
    if (count) value = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2)[index]!;
  } else if (dtype === "f64") {
    const f = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + (bytes.byteLength & ~7)));
    for (let i = 0; i < f.length; i++) {
      if (!Number.isFinite(f[i]!)) {
        if (count++ === 0) index = i;
      }
    }
    if (count) value = f[index]!;
  } else if (dtype === "bf16" || dtype === "f16") {
    const u = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 1);
    const mask = dtype === "bf16" ? 0x7f80 : 0x7c00;
    for (let i = 0; i < u.length; i++) {
      if ((u[i]! & mask) === mask) {
        if (count++ === 0) index = i;
      }
    }
    if (count) {
      const frac = dtype === "bf16" ? u[index]! & 0x7f : u[index]! & 0x3ff;
      value = frac ? NaN : u[index]! & 0x8000 ? -Infinity : Infinity;
    }
  }
  return count ? { index, value, count } : null;
}

/** "tensor 'x' holds NaN at element 12 (3 of 65536 values are not finite)" when it does, else null. */
export function nonFiniteProblem(name: string, bytes: Uint8Array, dtype: DType, shape: readonly number[]): string | null {
  const bad = findNonFinite(bytes, dtype);
  if (!bad) return null;
  const size = shape.reduce((a, b) => a * b, 1);
  return `tensor ${JSON.stringify(name)} holds ${bad.value} at element ${bad.index} (${bad.count} of ${size} values are not finite): the weights are damaged, or a run that wrote them diverged`;
}

/**
 * The file bytes of one tensor as a host typed array of its dtype (bf16/f16 as `Uint16Array`
 * bits), read into a fresh aligned buffer.
 */
export function readHostArray(reader: SafetensorsReader, entry: SafetensorsEntry): HostArray {
  const buffer = new ArrayBuffer(reader.byteLength(entry.name));
  reader.readInto(entry.name, new Uint8Array(buffer));
  return typedAs(entry, buffer);
}

/** {@link readHostArray}, read off the event loop. */
export async function readHostArrayAsync(reader: SafetensorsReader, entry: SafetensorsEntry): Promise<HostArray> {
  const buffer = new ArrayBuffer(reader.byteLength(entry.name));
  await reader.readIntoAsync(entry.name, new Uint8Array(buffer));
  return typedAs(entry, buffer);
}

/** A tensor's file bytes on the host, as a typed array of its dtype (bf16/f16 as raw bits). */
export type HostArray = Float32Array | Uint16Array | Int32Array | Uint8Array | Int8Array | Uint32Array | Float64Array;

/** One read a loader asks its driver for: the bytes of `entry` from `reader`. */
export interface HostRead {
  readonly reader: SafetensorsReader;
  readonly entry: SafetensorsEntry;
}

/**
 * A checkpoint loader written once for both drivers: a generator that yields each tensor it needs
 * read and receives its bytes. {@link runLoaderSync} reads with blocking reads;
 * {@link runLoaderAsync} with reads on libuv's thread pool, so a long load leaves the event loop
 * free (signals, progress, timers) between and during reads.
 */
export type Loader<T> = Generator<HostRead, T, HostArray>;

/** Drives a loader with blocking reads. A failed read is thrown into the loader, so its cleanup runs. */
export function runLoaderSync<T>(loader: Loader<T>): T {
  let r = loader.next(undefined as unknown as HostArray);
  while (!r.done) {
    let host: HostArray;
    try {
      host = readHostArray(r.value.reader, r.value.entry);
    } catch (err) {
      r = loader.throw(err);
      continue;
    }
    r = loader.next(host);
  }
  return r.value;
}

/** Drives a loader with reads off the event loop. */
export async function runLoaderAsync<T>(loader: Loader<T>): Promise<T> {
  let r = loader.next(undefined as unknown as HostArray);
  while (!r.done) {
    let host: HostArray;
    try {
      host = await readHostArrayAsync(r.value.reader, r.value.entry);
    } catch (err) {
      r = loader.throw(err);
      continue;
    }
    r = loader.next(host);
  }
  return r.value;
}

function typedAs(entry: SafetensorsEntry, buffer: ArrayBuffer): HostArray {
  switch (entry.dtype) {
    case "f32": return new Float32Array(buffer);
    case "f64": return new Float64Array(buffer);
    case "bf16": case "f16": return new Uint16Array(buffer);
    case "i32": return new Int32Array(buffer);
    case "u32": return new Uint32Array(buffer);
    case "i8": return new Int8Array(buffer);
    case "u8": return new Uint8Array(buffer);
  }
}

/**
 * Given one tensor's bytes read on the host, checks them for NaN/Inf there (before anything is copied
 * in), and places them on `device` with one transfer; a tensor stored in another dtype than
 * `dtype` is cast by a kernel on the device and the raw copy freed at once.
 */
function placeAs(dir: string, entry: SafetensorsEntry, host: HostArray, device: Device, dtype: "f32" | "bf16"): Tensor {
  const bad = nonFiniteProblem(entry.name, new Uint8Array(host.buffer, host.byteOffset, host.byteLength), entry.dtype, entry.shape);
  if (bad) throw new CheckpointError(dir, [bad]);
  const raw = tensorFrom(host, { shape: entry.shape, dtype: entry.dtype, device });
  if (entry.dtype === dtype) return raw;
  try {
    return cast(raw, dtype);
  } finally {
    raw.dispose();
  }
}
