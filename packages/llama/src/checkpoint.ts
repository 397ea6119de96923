// Hugging Face safetensors checkpoints (one file or sharded) → f32 tensors, checked against the config.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { cast, formatShape, SafetensorsReader, shapesEqual, Tensor, type DType, type SafetensorsEntry, type SafetensorsReadMode } from "@modulora/tensor";
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
  /** Compute dtype of the returned tensors; only `"f32"` for now. */
  dtype?: "f32";
  /** How shards are read (default `"stream"`: positioned reads straight into native storage). */
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

/** On-disk dtypes we read and cast to f32. */
const SOURCE_DTYPES: ReadonlySet<DType> = new Set<DType>(["f32", "bf16", "f16"]);

/** Where one tensor is stored. */
interface Located {
  shard: string;
  entry: SafetensorsEntry;
}

/** The shard files of a checkpoint directory and which tensor each should hold (null: whatever the single file holds). */
function findShards(dir: string): { files: string[]; index: Map<string, string> | null } {
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
 * Loads the weights of a LLaMA-family checkpoint directory as f32 tensors, keyed by Hugging
 * Face names, in the order of {@link expectedTensorShapes}. The caller owns (and disposes) them.
 *
 * Reads `model.safetensors`, or the shards listed by `model.safetensors.index.json`. F32, BF16 and
 * F16 on disk are accepted; BF16/F16 are cast to f32 one tensor at a time, each raw copy freed
 * right after its cast, so peak memory stays near the final f32 size plus the largest raw tensor
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
  const dtype = options.dtype ?? "f32";
  if (dtype !== "f32") throw new RangeError(`loadCheckpoint: dtype ${JSON.stringify(dtype)} is not supported (only "f32")`);
  const quant = config.raw["quantization_config"];
  if (quant !== undefined && quant !== null) {
    const method = (quant as Record<string, unknown>)["quant_method"];
    throw new CheckpointError(dir, [`config.json has a quantization_config (quant_method ${JSON.stringify(method)}): loadCheckpoint reads full-precision weights only`]);
  }

  const { files, index } = findShards(dir);
  const readers = new Map<string, SafetensorsReader>();
  const loaded = new Map<string, Tensor>();
  try {
    for (const file of files) readers.set(file, SafetensorsReader.open(join(dir, file), { mode: options.mode ?? "stream" }));
    const todo = plan(dir, config, readers, index);

    let done = 0;
    for (const [i, { shard, entry }] of todo.entries()) {
      const reader = readers.get(shard)!;
      loaded.set(entry.name, readAsF32(reader, entry));
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

/** Reads one tensor into native storage; a bf16/f16 one is cast to f32 and the raw copy freed at once. */
function readAsF32(reader: SafetensorsReader, entry: SafetensorsEntry): Tensor {
  const raw = Tensor.empty(entry.shape, entry.dtype);
  try {
    reader.readInto(entry.name, raw.bytes());
    if (entry.dtype === "f32") return raw;
    const out = cast(raw, "f32");
    raw.dispose();
    return out;
  } catch (err) {
    if (!raw.isDisposed) raw.dispose();
    throw err;
  }
}
