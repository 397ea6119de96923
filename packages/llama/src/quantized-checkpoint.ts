/**
 * Quantized checkpoints: a Hugging Face-style model directory whose linear layers are stored
 * quantized.
 *
 * Directory layout (written to a temporary sibling directory, then renamed into place):
 * - `config.json`: the model's config with a `quantization_config` block (as transformers reads
 *   GPTQ models);
 * - `quantize_config.json`: the same settings as GPTQ tools write them;
 * - `model.safetensors`: dense tensors (embeddings, norms, lm_head and any linear layer left in
 *   full precision) under their Hugging Face names, and per quantized layer, under its prefix
 *   `model.layers.{i}.{self_attn|mlp}.{name}` (or `lm_head`):
 *   - `quant_method: "gptq"` (every quantized layer is `affine` with integer zero points in the
 *     code range, all with the same bits, group size and symmetry): GPTQ's tensors `qweight`
 *     i32 [in·b/32, out], `qzeros` i32 [groups, out·b/32], `scales` f16 [groups, out], `g_idx`
 *     i32 [in] (see {@link gptqFromAffine});
 *   - `quant_method: "modulora"` (anything else: codebook, affine with real zeros, custom): the
 *     tensors of core's `serializeQuantizedWeight` under `{prefix}.{tensor}` (affine: `qweight`,
 *     `scales`, `zeros`, `g_idx`; codebook: `codes`, `levels`, `absmax` or `absmax_codes`,
 *     `absmax_scale`, `absmax_offset`; custom: the plugin's names), and each layer's metadata in
 *     the safetensors `__metadata__` under the key `modulora.layers`: a JSON object from layer
 *     prefix to that layer's metadata.
 * - the tokenizer files of the source model (`copyTokenizerFiles`).
 * @module
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { cast, keep, tensorFrom, SafetensorsReader, saveSafetensors, type Device, type Tensor } from "@modulora/tensor";
import {
  affineFromTensors, deserializeQuantizedWeight, packedWords, resolveQuantizer, serializeQuantizedWeight,
  type AffineWeight, type QuantizedWeight, type QuantizerPlugin, type QuantizeOptions,
} from "@modulora/core";
import {
  CheckpointError, checkpointShards, expectedTensorShapes, layerCountProblem, nonFiniteProblem, runLoaderAsync, runLoaderSync, type HostArray, type Loader,
} from "./checkpoint.js";
import { readJsonFile, readLlamaConfig } from "./config.js";
import { DenseLinear, QuantizedLinear } from "./linear.js";
import { copyTokenizerFiles } from "./load.js";
import { checkModelDType, LlamaModel, type ModelDType } from "./model.js";
import { linearModuleName, type QuantizedLayerReport } from "./quantize.js";
import { LlamaTokenizer } from "./tokenizer.js";
import { LINEAR_MODULE, LINEAR_NAMES, type Linear, type LinearName, type LlamaConfig, type LlamaLayer } from "./types.js";

// ---------------------------------------------------------------------------------------------
// GPTQ tensor layout of one affine weight
// ---------------------------------------------------------------------------------------------

/** How `qzeros` encodes a zero point z: GPTQ "v1" stores z − 1 (so z = 0 cannot be stored), "v2" stores z. */
export type GptqZeroFormat = "v1" | "v2";

/** The four tensors GPTQ stores per quantized linear layer. */
export interface GptqTensors {
  /** i32 [⌈in/32⌉·bits, out]: codes bit-packed along `in`, low bits first. */
  qweight: Tensor;
  /** i32 [groups, ⌈out/32⌉·bits]: zero points bit-packed along `out` the same way. */
  qzeros: Tensor;
  /** f16 [groups, out]. */
  scales: Tensor;
  /** i32 [in]: the group of each input column. */
  g_idx: Tensor;
}

/**
 * Packs `rows` rows of `n` codes each (row-major) into a bit stream per row, low bits first, in
 * 32-bit words: [rows, ⌈n/32⌉·bits]. This is GPTQ's `qzeros` packing (its reference `pack` loop:
 * 32/bits codes per word for 2, 4 and 8 bits; for 3 bits 32 codes in 3 words, codes 10 and 21
 * crossing word boundaries). `n` is padded to a multiple of 32 with zero codes, so for `out`
 * divisible by 32 (every real model) the width is GPTQ's `out·bits/32`.
 */
export function packRowsWords(codes: ArrayLike<number>, rows: number, n: number, bits: number): Int32Array {
  const stride = packedWords(n, bits);
  const out = new Uint32Array(rows * stride);
  const mask = (1 << bits) - 1;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) {
      const q = codes[r * n + i]! & mask;
      const bit = i * bits;
      const w = r * stride + (bit >>> 5);
      const s = bit & 31;
      out[w] = (out[w]! | (q << s)) >>> 0;
      if (s + bits > 32) out[w + 1] = (out[w + 1]! | (q >>> (32 - s))) >>> 0;
    }
  }
  return new Int32Array(out.buffer);
}

/** Inverse of {@link packRowsWords}: [rows, n] codes. */
export function unpackRowsWords(words: Int32Array, rows: number, n: number, bits: number): Uint8Array {
  const stride = packedWords(n, bits);
  const out = new Uint8Array(rows * n);
  const mask = (1 << bits) - 1;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) {
      const bit = i * bits;
      const w = r * stride + (bit >>> 5);
      const s = bit & 31;
      let v = words[w]! >>> s;
      if (s + bits > 32) v |= words[w + 1]! << (32 - s);
      out[r * n + i] = v & mask;
    }
  }
  return out;
}

/**
 * Whether an affine weight can be written in GPTQ's layout: integer zero points inside the code
 * range (the zero points are read to the host: one transfer).
 */
export function isGptqCompatible(w: QuantizedWeight): w is AffineWeight {
  if (w.format !== "affine" || w.zeroKind !== "int") return false;
  const z = w.zeros.dataSync() as Uint8Array;
  const maxq = (1 << w.bits) - 1;
  for (let i = 0; i < z.length; i++) if (z[i]! > maxq) return false;
  return true;
}

/** Whether some zero point of `w` is 0 (then GPTQ v1 cannot store it). */
export function hasZeroZeroPoint(w: AffineWeight): boolean {
  return (w.zeros.dataSync() as Uint8Array).includes(0);
}

/** ⌊i / groupSize⌋ for i < in: the `g_idx` of a weight without act-order. */
export function trivialGIdx(inFeatures: number, groupSize: number): Int32Array {
  const g = new Int32Array(inFeatures);
  for (let i = 0; i < inFeatures; i++) g[i] = Math.floor(i / groupSize);
  return g;
}

/** Whether `w` has a non-trivial `g_idx` (act-order). */
export function hasActOrder(w: AffineWeight): boolean {
  if (!w.gIdx) return false;
  const g = w.gIdx.dataSync() as Int32Array;
  for (let i = 0; i < g.length; i++) if (g[i] !== Math.floor(i / w.groupSize)) return true;
  return false;
}

/**
 * GPTQ's tensors of an affine weight. `qweight` and `scales` are `w`'s own tensors (our affine
 * layout is GPTQ's): do not dispose them. `qzeros` and `g_idx` are new, packed on the host and
 * copied onto the device of `w.qweight`: dispose them.
 */
export function gptqFromAffine(w: AffineWeight, zeroFormat: GptqZeroFormat): GptqTensors {
  if (!isGptqCompatible(w)) throw new RangeError("gptqFromAffine: GPTQ's layout needs integer zero points in [0, 2^bits)");
  const device = w.qweight.device;
  const z = w.zeros.dataSync() as Uint8Array; // [groups, out]
  let stored: ArrayLike<number> = z;
  if (zeroFormat === "v1") {
    if (hasZeroZeroPoint(w)) throw new RangeError("gptqFromAffine: a zero point is 0, which GPTQ v1 (zero − 1) cannot store; use v2");
    stored = Uint8Array.from(z, (v) => v - 1);
  }
  const qzeros = keep(tensorFrom(packRowsWords(stored, w.groups, w.outFeatures, w.bits), { shape: [w.groups, packedWords(w.outFeatures, w.bits)], dtype: "i32", device }));
  const gIdx = w.gIdx ? (w.gIdx.dataSync() as Int32Array) : trivialGIdx(w.inFeatures, w.groupSize);
  const g_idx = keep(tensorFrom(gIdx, { shape: [w.inFeatures], dtype: "i32", device }));
  return { qweight: w.qweight, qzeros, scales: w.scales, g_idx };
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

/** What {@link affineFromGptq} needs besides the tensors. */
export interface GptqLayerInfo {
  /** Tensor prefix, for error messages. */
  name: string;
  outFeatures: number;
  inFeatures: number;
  bits: number;
  /** Group size; −1 (or ≥ in) for one group per row. */
  groupSize: number;
  symmetric: boolean;
  zeroFormat: GptqZeroFormat;
}

/**
 * Rebuilds an affine weight from GPTQ's tensors (it takes ownership of `qweight` and `scales`
 * and disposes `qzeros` and `g_idx`). Zero points: v2 as stored; v1 `(stored + 1) & (2^b − 1)`,
 * the way AutoGPTQ's kernels read them. A `g_idx` equal to ⌊i / groupSize⌋ is dropped (no
 * act-order); any other is kept. Shapes are checked against the layer's [out, in] and errors
 * name the tensor. `qzeros` and `g_idx` are read to the host (keep them on `cpu` to spare the
 * transfer) and the unpacked zero points and `g_idx` are copied onto the device of `qweight`.
 */
export function affineFromGptq(t: { qweight: Tensor; qzeros: Tensor; scales: Tensor; g_idx?: Tensor | null }, info: GptqLayerInfo): AffineWeight {
  const { name, outFeatures: out, inFeatures: inF, bits } = info;
  const groupSize = info.groupSize <= 0 || info.groupSize > inF ? inF : info.groupSize;
  const bad = (tensorName: string, t: Tensor, want: string) =>
    new RangeError(`quantized checkpoint: tensor '${name}.${tensorName}' is ${t.dtype} [${t.shape}], expected ${want} for a ${bits}-bit layer [out ${out}, in ${inF}]`);
  const words = packedWords(inF, bits);
  if (t.qweight.dtype !== "i32" || !sameShape(t.qweight.shape, [words, out])) throw bad("qweight", t.qweight, `i32 [${words}, ${out}]`);
  let gIdx: Int32Array | null = null;
  if (t.g_idx) {
    if (t.g_idx.dtype !== "i32" || !sameShape(t.g_idx.shape, [inF])) throw bad("g_idx", t.g_idx, `i32 [${inF}]`);
    gIdx = t.g_idx.dataSync() as Int32Array;
  }
  let groups = Math.ceil(inF / groupSize);
  if (gIdx) {
    let max = -1;
    for (let i = 0; i < inF; i++) {
      const g = gIdx[i]!;
      if (!Number.isInteger(g) || g < 0) throw new RangeError(`quantized checkpoint: tensor '${name}.g_idx' holds an invalid group ${g} at ${i}`);
      max = Math.max(max, g);
    }
    groups = Math.max(groups, max + 1);
  }
  if (t.scales.dtype !== "f16" || !sameShape(t.scales.shape, [groups, out])) throw bad("scales", t.scales, `f16 [${groups}, ${out}]`);
  const zw = packedWords(out, bits);
  if (t.qzeros.dtype !== "i32" || !sameShape(t.qzeros.shape, [groups, zw])) throw bad("qzeros", t.qzeros, `i32 [${groups}, ${zw}]`);
  if (gIdx && !hasNonTrivial(gIdx, groupSize)) gIdx = null;
  if (!gIdx && groups * groupSize !== inF) {
    throw new RangeError(`quantized checkpoint: layer '${name}': group size ${groupSize} does not divide in = ${inF}; such a layer needs a g_idx`);
  }

  const maxq = (1 << bits) - 1;
  const zeros = unpackRowsWords(t.qzeros.dataSync() as Int32Array, groups, out, bits);
  if (info.zeroFormat === "v1") for (let i = 0; i < zeros.length; i++) zeros[i] = (zeros[i]! + 1) & maxq;
  const device = t.qweight.device;
  const zerosT = keep(tensorFrom(zeros, { shape: [groups, out], dtype: "u8", device }));
  const gIdxT = gIdx ? keep(tensorFrom(gIdx, { shape: [inF], dtype: "i32", device })) : null;
  t.qzeros.dispose();
  t.g_idx?.dispose();
  return affineFromTensors({
    outFeatures: out, inFeatures: inF, bits, groupSize, symmetric: info.symmetric,
    qweight: t.qweight, scales: t.scales, zeros: zerosT, gIdx: gIdxT,
  });
}

function hasNonTrivial(gIdx: Int32Array, groupSize: number): boolean {
  for (let i = 0; i < gIdx.length; i++) if (gIdx[i] !== Math.floor(i / groupSize)) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Saving a quantized model
// ---------------------------------------------------------------------------------------------

/** The safetensors `__metadata__` key holding the per-layer metadata of a `modulora` checkpoint. */
export const MODULORA_LAYERS_METADATA_KEY = "modulora.layers";
/** Files of a quantized checkpoint besides the tokenizer's. */
export const QUANTIZE_CONFIG_FILE = "quantize_config.json";
const CONFIG_FILE = "config.json";
const WEIGHTS_FILE = "model.safetensors";
const WEIGHTS_INDEX_FILE = "model.safetensors.index.json";

/** Options of {@link saveQuantizedModel}. */
export interface SaveQuantizedModelOptions {
  /** The original model directory: its tokenizer files (and generation_config.json) are copied. */
  sourceDir?: string;
  /** The quantizer that made the weights (recorded; required to save `custom` formats). */
  plugin?: QuantizerPlugin | string;
  /** The quantization options used (recorded in quantize_config.json). */
  options?: Partial<QuantizeOptions>;
  /** Replace an existing non-empty directory (default false: refuse). */
  overwrite?: boolean;
  /** The per-layer report of `quantizeModel`, written as quantization_report.json. */
  report?: readonly QuantizedLayerReport[];
}

/** The per-layer report's file in a quantized checkpoint. */
export const QUANTIZATION_REPORT_FILE = "quantization_report.json";

/** The quantizer the model's quantized layers record, when they all name the same one; else null. */
function layersQuantizer(model: LlamaModel): string | null {
  const names = new Set<string | null>();
  const visit = (l: Linear) => { if (l.kind === "quantized") names.add((l as QuantizedLinear).quantizer); };
  for (const layer of model.layers) for (const n of LINEAR_NAMES) visit(layer.linears[n]);
  visit(model.lmHead);
  return names.size === 1 ? [...names][0]! : null;
}

/** The quantized linears of a model, by module prefix (`model.layers.{i}.{module}.{name}` or `lm_head`). */
function quantizedLayers(model: LlamaModel): Map<string, QuantizedWeight> {
  const out = new Map<string, QuantizedWeight>();
  const visit = (prefix: string, l: Linear) => {
    if (l.kind === "lora") throw new Error(`saveQuantizedModel: ${prefix} carries a LoRA adapter; save the adapter separately (the base is saved without it)`);
    if (l.kind === "quantized") out.set(prefix, (l as QuantizedLinear).weight);
  };
  model.layers.forEach((layer, i) => { for (const n of LINEAR_NAMES) visit(linearModuleName(i, n), layer.linears[n]); });
  visit("lm_head", model.lmHead);
  return out;
}

/** GPTQ settings shared by all layers, or null if the layers cannot be stored as one GPTQ checkpoint. */
function gptqSettings(layers: Map<string, QuantizedWeight>): { bits: number; groupSize: number; sym: boolean; descAct: boolean; zeroFormat: GptqZeroFormat } | null {
  const ws = [...layers.values()];
  if (!ws.every(isGptqCompatible)) return null;
  const aw = ws as AffineWeight[];
  const bits = aw[0]!.bits;
  const sym = aw[0]!.symmetric;
  if (!aw.every((w) => w.bits === bits && w.symmetric === sym)) return null;
  // group_size is one number per model: −1 when every layer has one group per row, else the
  // group size all layers share.
  const g = aw[0]!.groupSize;
  let groupSize: number;
  if (aw.every((w) => w.groups === 1)) groupSize = -1;
  else if (aw.every((w) => w.groupSize === g)) groupSize = g;
  else return null;
  return { bits, groupSize, sym, descAct: aw.some(hasActOrder), zeroFormat: aw.some(hasZeroZeroPoint) ? "v2" : "v1" };
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Writes a quantized model as a directory (see the module comment for the layout). It is written
 * into a temporary sibling directory and renamed into place, so `dir` is never half-written; an
 * existing non-empty `dir` is refused unless `overwrite`.
 */
export function saveQuantizedModel(model: LlamaModel, dir: string, options: SaveQuantizedModelOptions = {}): { quantMethod: "gptq" | "modulora"; dir: string } {
  const target = resolve(dir);
  if (existsSync(target) && readdirSync(target).length > 0 && !options.overwrite) {
    throw new Error(`saveQuantizedModel: ${target} exists and is not empty; pass overwrite: true to replace it`);
  }
  const plugin = options.plugin === undefined ? undefined : resolveQuantizer(options.plugin);
  const layers = quantizedLayers(model);
  if (layers.size === 0) throw new Error("saveQuantizedModel: the model has no quantized layers; quantize it first (quantizeModel)");
  const gptq = gptqSettings(layers);
  const quantMethod = gptq ? "gptq" : "modulora";

  const tensors = new Map<string, Tensor>();
  const temporary: Tensor[] = [];
  const layerMeta: Record<string, Record<string, unknown>> = {};
  const addQuantized = (prefix: string, w: QuantizedWeight) => {
    if (gptq) {
      const g = gptqFromAffine(w as AffineWeight, gptq.zeroFormat);
      temporary.push(g.qzeros, g.g_idx);
      for (const [k, t] of Object.entries(g)) tensors.set(`${prefix}.${k}`, t);
    } else {
      const s = serializeQuantizedWeight(w, plugin);
      for (const [k, t] of Object.entries(s.tensors)) tensors.set(`${prefix}.${k}`, t);
      layerMeta[prefix] = s.metadata;
    }
  };
  const addLinear = (prefix: string, l: Linear) => {
    const q = layers.get(prefix);
    if (q) addQuantized(prefix, q);
    else tensors.set(`${prefix}.weight`, (l as DenseLinear).weight);
  };

  const tmp = join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    tensors.set("model.embed_tokens.weight", model.embedTokens);
    model.layers.forEach((layer, i) => {
      tensors.set(`model.layers.${i}.input_layernorm.weight`, layer.inputNorm);
      tensors.set(`model.layers.${i}.post_attention_layernorm.weight`, layer.postAttentionNorm);
      for (const n of LINEAR_NAMES) addLinear(linearModuleName(i, n), layer.linears[n]);
    });
    tensors.set("model.norm.weight", model.norm);
    // Tied embeddings: a dense lm_head is the embedding itself and is not stored (as transformers does).
    if (layers.has("lm_head") || !model.config.tieWordEmbeddings) addLinear("lm_head", model.lmHead);

    const qc = quantizationConfig(model, layers, gptq, plugin, plugin?.name ?? layersQuantizer(model), options.options);
    mkdirSync(tmp, { recursive: true });
    const metadata: Record<string, string> = { format: "pt" };
    if (!gptq) metadata[MODULORA_LAYERS_METADATA_KEY] = JSON.stringify(layerMeta);
    saveSafetensors(join(tmp, WEIGHTS_FILE), tensors, metadata);
    writeJson(join(tmp, CONFIG_FILE), { ...model.config.raw, quantization_config: qc });
    writeJson(join(tmp, QUANTIZE_CONFIG_FILE), qc);
    if (options.report) {
      writeJson(join(tmp, QUANTIZATION_REPORT_FILE), {
        quantizer: typeof options.plugin === "string" ? options.plugin : (options.plugin?.name ?? null),
        layers: options.report.map((r) => ({
          name: r.name, bits: r.bits, bits_per_weight: r.bitsPerWeight, seconds: r.seconds,
          ...(r.error !== undefined ? { weight_error: r.error } : {}),
          ...(r.outputError !== undefined ? { output_error: r.outputError } : {}),
          ...(r.samples !== undefined ? { samples: r.samples } : {}),
        })),
      });
    }
    if (options.sourceDir) copyTokenizerFiles(options.sourceDir, tmp);
    // Swap into place: the old directory (empty, or replaced with overwrite) goes only once the new one is complete.
    if (existsSync(target)) {
      const old = `${tmp}.old`;
      renameSync(target, old);
      renameSync(tmp, target);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, target);
    }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    for (const t of temporary) t.dispose();
  }
  return { quantMethod, dir: target };
}

/** The `quantization_config` block (also written as quantize_config.json). */
function quantizationConfig(
  model: LlamaModel, layers: Map<string, QuantizedWeight>, gptq: ReturnType<typeof gptqSettings>,
  plugin: QuantizerPlugin | undefined, quantizer: string | null, options: Partial<QuantizeOptions> | undefined,
): Record<string, unknown> {
  const provenance = { quantizer: [`modulora-ts:${quantizer ?? "unknown"}`], options: options ?? null };
  // Which linears of a block are quantized (transformers' `modules_in_block_to_quantize`), when not all.
  const inBlock = LINEAR_NAMES.filter((n) => model.layers.every((_, i) => layers.has(linearModuleName(i, n))));
  const partial = inBlock.length < LINEAR_NAMES.length ? { modules_in_block_to_quantize: [inBlock.map((n) => `${LINEAR_MODULE[n]}.${n}`)] } : {};
  if (gptq) {
    return {
      quant_method: "gptq", bits: gptq.bits, group_size: gptq.groupSize, desc_act: gptq.descAct, sym: gptq.sym,
      // quantizeModel calibrates true-sequentially unless told otherwise.
      true_sequential: plugin !== undefined && plugin.calibration !== "none" && options?.["trueSequential"] !== false,
      static_groups: options?.["staticGroups"] === true, ...(typeof options?.["percdamp"] === "number" ? { damp_percent: options["percdamp"] } : {}),
      lm_head: layers.has("lm_head"),
      checkpoint_format: gptq.zeroFormat === "v2" ? "gptq_v2" : "gptq", ...partial, meta: provenance,
    };
  }
  const ws = [...layers.values()];
  return {
    quant_method: "modulora", formats: [...new Set(ws.map((w) => w.format))].sort(), bits: [...new Set(ws.map((w) => w.bits))].sort(),
    plugin: quantizer, lm_head: layers.has("lm_head"), ...partial, meta: provenance,
  };
}

// ---------------------------------------------------------------------------------------------
// Loading a quantized model
// ---------------------------------------------------------------------------------------------

/** Options of {@link loadQuantizedModel}. */
export interface LoadQuantizedModelOptions {
  /** The plugin that made `custom`-format weights (needed to read them). */
  plugin?: QuantizerPlugin | string;
  /**
   * Where the model goes (default `cpu`): each tensor is read and checked on the host, then copied
   * in with one transfer (GPTQ's `qzeros` and `g_idx` are unpacked on the host first).
   */
  device?: Device;
  /**
   * Compute dtype (default `"f32"`): the dense tensors (embeddings, norms, dense linears) are cast
   * to it on the device; with `"bf16"` the quantized linears take bf16 activations and compute in f32.
   */
  dtype?: ModelDType;
}

/** A quantized checkpoint that cannot be read: the message names the directory and the tensor or key. */
export class QuantizedCheckpointError extends Error {
  constructor(readonly dir: string, problem: string) {
    super(`quantized checkpoint ${dir}: ${problem}`);
    this.name = "QuantizedCheckpointError";
  }
}

/** The safetensors files of a directory (`checkpointShards`: the same files, and the same refusals, as the full-precision loader). */
function openWeights(dir: string): { readers: SafetensorsReader[]; where: Map<string, SafetensorsReader> } {
  let files: string[];
  try {
    files = checkpointShards(dir).files;
  } catch (err) {
    throw new QuantizedCheckpointError(dir, err instanceof CheckpointError ? err.problems.join("; ") : err instanceof Error ? err.message : String(err));
  }
  const readers: SafetensorsReader[] = [];
  const where = new Map<string, SafetensorsReader>();
  try {
    for (const f of files) {
      const r = SafetensorsReader.open(join(dir, f));
      readers.push(r);
      for (const name of r.names()) where.set(name, r);
    }
  } catch (err) {
    for (const r of readers) r.close();
    throw err;
  }
  return { readers, where };
}

/** The quantization settings of a directory: config.json's `quantization_config`, else quantize_config.json. */
function readQuantizationConfig(dir: string, config: LlamaConfig): Record<string, unknown> {
  let qc = config.raw["quantization_config"];
  if (qc === undefined || qc === null) {
    const path = join(dir, QUANTIZE_CONFIG_FILE);
    if (!existsSync(path)) throw new QuantizedCheckpointError(dir, `config.json has no quantization_config and there is no ${QUANTIZE_CONFIG_FILE}: not a quantized checkpoint (load it with loadLlama)`);
    qc = readJsonFile(path, QUANTIZE_CONFIG_FILE);
  }
  if (typeof qc !== "object" || qc === null || Array.isArray(qc)) throw new QuantizedCheckpointError(dir, "quantization_config must be an object");
  const q = qc as Record<string, unknown>;
  // AutoGPTQ's quantize_config.json predates quant_method; its keys say GPTQ.
  const method = q["quant_method"] ?? (typeof q["bits"] === "number" && "group_size" in q ? "gptq" : undefined);
  if (method !== "gptq" && method !== "modulora") {
    throw new QuantizedCheckpointError(dir, `unknown quant_method ${JSON.stringify(method)} in quantization_config; this loader reads "gptq" and "modulora"`);
  }
  return { ...q, quant_method: method };
}

/**
 * The quantizer named by a quantization_config: `plugin` (quant_method "modulora"), else the
 * provenance `meta.quantizer` (`["modulora-ts:rtn"]` → `rtn`; another tool's entry, e.g.
 * `auto_gptq:0.7.1`, as written), else null.
 */
export function recordedQuantizer(qc: Record<string, unknown>): string | null {
  if (typeof qc["plugin"] === "string" && qc["plugin"]) return qc["plugin"];
  const meta = qc["meta"] as { quantizer?: unknown } | null | undefined;
  const q = Array.isArray(meta?.quantizer) ? meta!.quantizer[0] : meta?.quantizer;
  if (typeof q !== "string" || !q) return null;
  const name = q.replace(/^modulora-ts:/, "");
  return name === "unknown" ? null : name;
}

/**
 * Loads a quantized checkpoint written by {@link saveQuantizedModel} or by GPTQ tools
 * (`quant_method: "gptq"`, v1 or `checkpoint_format: "gptq_v2"` zero points, with or without
 * act-order `g_idx`). Dense tensors (cast to `options.dtype`, default f32) and the quantized layers are checked
 * against the config; a missing tensor, a wrong shape, an unexpected tensor or an unknown
 * `quant_method` is an error naming it. `tokenizer` is null if the directory has no tokenizer.json.
 */
export function loadQuantizedModel(dir: string, options: LoadQuantizedModelOptions = {}): LoadedQuantizedModel {
  return runLoaderSync(quantizedLoader(dir, options));
}

/** {@link loadQuantizedModel} with every file read off the event loop (libuv's thread pool), one tensor at a time. */
export function loadQuantizedModelAsync(dir: string, options: LoadQuantizedModelOptions = {}): Promise<LoadedQuantizedModel> {
  return runLoaderAsync(quantizedLoader(dir, options));
}

/** What {@link loadQuantizedModel} returns. */
export interface LoadedQuantizedModel {
  model: LlamaModel;
  tokenizer: LlamaTokenizer | null;
  config: LlamaConfig;
}

function* quantizedLoader(dir: string, options: LoadQuantizedModelOptions): Loader<LoadedQuantizedModel> {
  const dtype = checkModelDType(options.dtype, "loadQuantizedModel");
  const device = options.device ?? "cpu";
  const config = readLlamaConfig(dir);
  const qc = readQuantizationConfig(dir, config);
  const plugin = options.plugin === undefined ? undefined : resolveQuantizer(options.plugin);
  const fail = (problem: string) => new QuantizedCheckpointError(dir, problem);
  const gptq = qc["quant_method"] === "gptq";
  let gptqInfo: Omit<GptqLayerInfo, "name" | "outFeatures" | "inFeatures"> | null = null;
  if (gptq) {
    const bits = qc["bits"];
    if (typeof bits !== "number" || ![2, 3, 4, 8].includes(bits)) throw fail(`quantization_config.bits must be 2, 3, 4 or 8 for GPTQ, got ${JSON.stringify(bits)}`);
    const g = qc["group_size"] ?? -1;
    if (typeof g !== "number" || !Number.isInteger(g) || (g < 1 && g !== -1)) throw fail(`quantization_config.group_size must be a positive integer or -1, got ${JSON.stringify(g)}`);
    const fmt = qc["checkpoint_format"] ?? "gptq";
    if (fmt !== "gptq" && fmt !== "gptq_v2") throw fail(`quantization_config.checkpoint_format ${JSON.stringify(fmt)} is not one of "gptq", "gptq_v2"`);
    gptqInfo = { bits, groupSize: g, symmetric: qc["sym"] !== false, zeroFormat: fmt === "gptq_v2" ? "v2" : "v1" };
  }

  const quantizerName = recordedQuantizer(qc);
  const { readers, where } = openWeights(dir);
  // Everything allocated so far, freed if anything fails (dispose is idempotent).
  const owned: Tensor[] = [];
  const built: Linear[] = [];
  const used = new Set<string>();
  try {
    let layerMeta: Record<string, Record<string, unknown>> = {};
    if (!gptq) {
      const raw = readers.map((r) => r.metadata[MODULORA_LAYERS_METADATA_KEY]).find((v) => v !== undefined);
      if (raw === undefined) throw fail(`model.safetensors has no '${MODULORA_LAYERS_METADATA_KEY}' metadata (quant_method "modulora" keeps each layer's format there)`);
      try {
        layerMeta = JSON.parse(raw) as Record<string, Record<string, unknown>>;
      } catch (err) {
        throw fail(`the '${MODULORA_LAYERS_METADATA_KEY}' metadata is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    // Read on the host, checked there, then one copy onto `on` (the model's device by default).
    function* read(name: string, on: Device = device): Loader<Tensor> {
      const r = where.get(name);
      if (!r) throw fail(`missing tensor '${name}'`);
      const e = r.entry(name);
      const host: HostArray = yield { reader: r, entry: e };
      const bad = nonFiniteProblem(name, new Uint8Array(host.buffer, host.byteOffset, host.byteLength), e.dtype, e.shape);
      if (bad) throw fail(bad);
      const t = keep(tensorFrom(host, { shape: e.shape, dtype: e.dtype, device: on }));
      owned.push(t);
      used.add(name);
      return t;
    }
    function* dense(name: string, shape: readonly number[]): Loader<Tensor> {
      const t = yield* read(name);
      if (!sameShape(t.shape, shape)) throw fail(`tensor '${name}' has shape [${t.shape}], expected [${shape}] from the config`);
      if (!["f32", "bf16", "f16"].includes(t.dtype)) throw fail(`tensor '${name}' is ${t.dtype}; dense weights must be f32, bf16 or f16`);
      if (t.dtype === dtype) return t;
      const f = keep(cast(t, dtype));
      owned.push(f);
      t.dispose();
      return f;
    }
    // Before anything that grows with num_hidden_layers is built or read.
    const layerProblem = layerCountProblem(config, where.keys());
    if (layerProblem) throw fail(layerProblem);
    const shapes = expectedTensorShapes(config);
    function* linear(prefix: string): Loader<Linear> {
      const [out, inF] = shapes.get(`${prefix}.weight`) ?? [config.vocabSize, config.hiddenSize];
      const l = yield* linearOf(prefix, out!, inF!);
      built.push(l);
      return l;
    }
    function* linearOf(prefix: string, out: number, inF: number): Loader<Linear> {
      if (where.has(`${prefix}.weight`)) return new DenseLinear(yield* dense(`${prefix}.weight`, [out, inF]));
      if (gptq) {
        if (!where.has(`${prefix}.qweight`)) throw fail(`missing tensor '${prefix}.qweight' (nor is there a dense '${prefix}.weight')`);
        if (where.has(`${prefix}.bias`)) throw fail(`tensor '${prefix}.bias': linear biases are not supported (LLaMA has none)`);
        // qzeros and g_idx are unpacked on the host: they stay there, and what they become goes to the device.
        const qweight = yield* read(`${prefix}.qweight`);
        const qzeros = yield* read(`${prefix}.qzeros`, "cpu");
        const scales = yield* read(`${prefix}.scales`);
        const g_idx = where.has(`${prefix}.g_idx`) ? yield* read(`${prefix}.g_idx`, "cpu") : null;
        const t = { qweight, qzeros, scales, g_idx };
        return new QuantizedLinear(affineFromGptq(t, { ...gptqInfo!, name: prefix, outFeatures: out, inFeatures: inF }), quantizerName);
      }
      const meta = layerMeta[prefix];
      if (!meta) throw fail(`layer '${prefix}' has neither a dense '${prefix}.weight' nor an entry in the '${MODULORA_LAYERS_METADATA_KEY}' metadata`);
      if (meta["outFeatures"] !== out || meta["inFeatures"] !== inF) {
        throw fail(`layer '${prefix}' is [${String(meta["outFeatures"])}, ${String(meta["inFeatures"])}] in the metadata, expected [${out}, ${inF}] from the config`);
      }
      const tensors: Record<string, Tensor> = {};
      for (const name of where.keys()) if (name.startsWith(`${prefix}.`) && !name.slice(prefix.length + 1).includes(".")) tensors[name.slice(prefix.length + 1)] = yield* read(name);
      try {
        return new QuantizedLinear(deserializeQuantizedWeight(tensors, meta, plugin), quantizerName);
      } catch (err) {
        throw fail(`layer '${prefix}': ${err instanceof Error ? err.message : String(err)}`);
      }
    }

    const c = config.hiddenSize;
    const embed = yield* dense("model.embed_tokens.weight", [config.vocabSize, c]);
    const layers: LlamaLayer[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      const inputNorm = yield* dense(`model.layers.${i}.input_layernorm.weight`, [c]);
      const postAttentionNorm = yield* dense(`model.layers.${i}.post_attention_layernorm.weight`, [c]);
      const linears: Partial<Record<LinearName, Linear>> = {};
      for (const n of LINEAR_NAMES) linears[n] = yield* linear(linearModuleName(i, n));
      layers.push({ inputNorm, postAttentionNorm, linears: linears as Record<LinearName, Linear> });
    }
    const norm = yield* dense("model.norm.weight", [c]);
    const quantHead = where.has("lm_head.qweight") || (!gptq && layerMeta["lm_head"] !== undefined);
    let lmHead: Linear;
    if (config.tieWordEmbeddings && !quantHead) {
      if (where.has("lm_head.weight")) used.add("lm_head.weight"); // ignored, as transformers does
      // A second handle on the embedding's storage, as LlamaModel.fromTensors does.
      lmHead = new DenseLinear(keep(embed.detach()));
      built.push(lmHead);
    } else lmHead = yield* linear("lm_head");

    const unexpected = [...where.keys()].filter((n) => !used.has(n));
    if (unexpected.length) throw fail(`unexpected tensor${unexpected.length > 1 ? "s" : ""} ${unexpected.slice(0, 8).map((n) => `'${n}'`).join(", ")}${unexpected.length > 8 ? ", …" : ""}`);
    const model = new LlamaModel(config, embed, layers, norm, lmHead);
    const tokenizer = existsSync(join(dir, "tokenizer.json")) ? LlamaTokenizer.fromDir(dir) : null;
    return { model, tokenizer, config };
  } catch (err) {
    for (const l of built) l.dispose();
    for (const t of owned) t.dispose();
    throw err;
  } finally {
    for (const r of readers) r.close();
  }
}
