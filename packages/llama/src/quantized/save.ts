// Saving a quantized model as a Hugging Face-style directory (layout: ../quantized-checkpoint.ts).
// Each quantized layer is written by one of core's codecs: GPTQ's tensors when every layer fits
// one GPTQ checkpoint, else the `modulora` layout.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { saveSafetensors, type Tensor } from "@modulora/tensor";
import {
  gptqCheckpointSettings, gptqFromAffine, ModuloraLayersEncoder, replaceDir, resolveQuantizer,
  type AffineWeight, type QuantizedWeight, type QuantizerPlugin, type QuantizeOptions,
} from "@modulora/core";
import type { DenseLinear, QuantizedLinear } from "../linear.js";
import { copyTokenizerFiles } from "../load.js";
import type { LlamaModel } from "../model.js";
import { linearModuleName, type QuantizedLayerReport } from "../quantize.js";
import { LINEAR_NAMES, type Linear } from "../types.js";
import { QUANTIZE_CONFIG_FILE, quantizationConfig } from "./config.js";

const CONFIG_FILE = "config.json";
const WEIGHTS_FILE = "model.safetensors";

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

function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** quantization_report.json's content. */
function reportJson(options: SaveQuantizedModelOptions, report: readonly QuantizedLayerReport[]): unknown {
  return {
    quantizer: typeof options.plugin === "string" ? options.plugin : (options.plugin?.name ?? null),
    layers: report.map((r) => ({
      name: r.name, bits: r.bits, bits_per_weight: r.bitsPerWeight, seconds: r.seconds,
      ...(r.error !== undefined ? { weight_error: r.error } : {}),
      ...(r.outputError !== undefined ? { output_error: r.outputError } : {}),
      ...(r.samples !== undefined ? { samples: r.samples } : {}),
    })),
  };
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
  const gptq = gptqCheckpointSettings(layers.values());
  const quantMethod = gptq ? "gptq" : "modulora";

  // Tensors in the order they are written: dense and quantized layers interleaved by module.
  const tensors = new Map<string, Tensor>();
  const temporary: Tensor[] = [];
  const modulora = new ModuloraLayersEncoder(plugin);
  const addQuantized = (prefix: string, w: QuantizedWeight) => {
    if (!gptq) return modulora.add(prefix, w, tensors);
    const g = gptqFromAffine(w as AffineWeight, gptq.zeroFormat);
    temporary.push(g.qzeros, g.g_idx);
    for (const [k, t] of Object.entries(g)) tensors.set(`${prefix}.${k}`, t);
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
    saveSafetensors(join(tmp, WEIGHTS_FILE), tensors, { format: "pt", ...(gptq ? {} : modulora.metadata()) });
    writeJson(join(tmp, CONFIG_FILE), { ...model.config.raw, quantization_config: qc });
    writeJson(join(tmp, QUANTIZE_CONFIG_FILE), qc);
    if (options.report) writeJson(join(tmp, QUANTIZATION_REPORT_FILE), reportJson(options, options.report));
    if (options.sourceDir) copyTokenizerFiles(options.sourceDir, tmp);
    // Swap into place: the old directory (empty, or replaced with overwrite) goes only once the new one is complete.
    replaceDir(tmp, target);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    for (const t of temporary) t.dispose();
  }
  return { quantMethod, dir: target };
}
