/**
 * The files of an adapter directory and what `modulora.json` holds: the base model's identity
 * ({@link baseModelFingerprint}) and how its layers were quantized ({@link adapterQuantizationOf}),
 * with reading `modulora.json` and comparing its records against a model.
 *
 * PEFT's files are `adapter_config.json` and `adapter_model.safetensors`; what PEFT has no field
 * for goes in `modulora.json`:
 *
 * ```jsonc
 * {
 *   "modulora_adapter_version": 1,
 *   "base_model": {              // identity of the base the adapter was trained on (baseModelFingerprint)
 *     "architecture": "LlamaForCausalLM", "model_type": "llama", "hidden_size": 256,
 *     "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
 *     "intermediate_size": 768, "vocab_size": 4096, "config_sha256": "3f9a…"
 *   },
 *   "quantization": null,        // or { quantizer, format, bits, group_size, symmetric, layers }
 *   "seed": 0,                   // attachLoRA's seed (layer seeds derive from it)
 *   "task_format": "…", "prompt_template": "…", "labels": ["…"]   // from `extra`, when given
 * }
 * ```
 *
 * `config_sha256` is the SHA-256 (hex) of the model's `config.json` in a canonical form: keys
 * sorted at every level, compact JSON, and without the keys that do not change what the weights
 * mean ({@link FINGERPRINT_IGNORED_KEYS}: storage dtype, quantization block, transformers
 * version, …), so the same base stored in bf16 or quantized keeps its identity.
 * @module
 */
import { createHash } from "node:crypto";
import { readJsonFile } from "../config.js";
import { QuantizedLinear } from "../linear.js";
import type { LlamaModel } from "../model.js";
import type { Linear, LlamaConfig } from "../types.js";

/** PEFT's adapter config file. */
export const ADAPTER_CONFIG_FILE = "adapter_config.json";
/** PEFT's adapter weights file. */
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";
/** Our side file: what PEFT has no field for. */
export const MODULORA_ADAPTER_FILE = "modulora.json";
/** Version of the `modulora.json` layout. */
export const MODULORA_ADAPTER_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Base model identity
// ---------------------------------------------------------------------------------------------

/** config.json keys left out of `config_sha256`: they do not change what the weights mean. */
export const FINGERPRINT_IGNORED_KEYS: readonly string[] = ["quantization_config", "dtype", "torch_dtype", "transformers_version", "_name_or_path", "use_cache"];

/** Identity of a base model (written to modulora.json, checked on load). */
export interface BaseModelFingerprint {
  architecture: string;
  model_type: string;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  intermediate_size: number;
  vocab_size: number;
  /** SHA-256 (hex) of the canonical config.json (module comment). */
  config_sha256: string;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** The identity of a model's base, from its config (see the module comment). */
export function baseModelFingerprint(config: LlamaConfig): BaseModelFingerprint {
  const raw = Object.fromEntries(Object.entries(config.raw).filter(([k]) => !FINGERPRINT_IGNORED_KEYS.includes(k)));
  return {
    architecture: config.architecture,
    model_type: config.modelType,
    hidden_size: config.hiddenSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads,
    intermediate_size: config.intermediateSize,
    vocab_size: config.vocabSize,
    config_sha256: createHash("sha256").update(canonicalJson(raw)).digest("hex"),
  };
}

/** How the adapter's base layers were quantized (null: a dense base). */
export interface AdapterQuantization {
  /** The quantizer plugin's name when known (from `extra.quantizer`, or a custom format's plugin). */
  quantizer: string | null;
  /** A value, or the distinct values when the layers differ. */
  format: string | string[];
  bits: number | number[];
  /** Affine: columns per group; codebook: block size; custom: null. */
  group_size: number | null | (number | null)[];
  symmetric: boolean | null | (boolean | null)[];
  /** How many of the adapter's base layers are quantized. */
  layers: number;
}

/** The contents of modulora.json. */
export interface ModuloraAdapterMetadata {
  modulora_adapter_version: number;
  base_model: BaseModelFingerprint;
  quantization: AdapterQuantization | null;
  seed: number;
  task_format?: string;
  prompt_template?: string;
  labels?: string[];
  [key: string]: unknown;
}

function distinct<T>(values: T[]): T | T[] {
  const d = [...new Set(values)];
  return d.length === 1 ? d[0]! : d;
}

/**
 * How the given base layers are quantized (null: none is). The quantizer's name comes from the
 * layers (`QuantizedLinear.quantizer`, set by quantizeModel and loadQuantizedModel), else from a
 * custom format's plugin, else from `quantizer` (the caller's `extra.quantizer`).
 */
export function adapterQuantizationOf(bases: readonly Linear[], quantizer: string | null = null): AdapterQuantization | null {
  const qs = bases.filter((b): b is QuantizedLinear => b instanceof QuantizedLinear);
  const ws = qs.map((b) => b.weight);
  if (ws.length === 0) return null;
  const plugins = ws.filter((w) => w.format === "custom").map((w) => (w as { plugin: string }).plugin);
  const named = [...new Set(qs.map((b) => b.quantizer).filter((n): n is string => n !== null))];
  if (named.length > 1) throw new Error(`the base layers were quantized by several quantizers (${named.join(", ")}); an adapter records one`);
  const known = named[0] ?? (plugins.length ? (distinct(plugins) as string) : null);
  if (known !== null && quantizer !== null && known !== quantizer) {
    throw new Error(`extra.quantizer is '${quantizer}' but the base layers were quantized by '${known}'`);
  }
  return {
    quantizer: known ?? quantizer,
    format: distinct(ws.map((w) => w.format)),
    bits: distinct(ws.map((w) => w.bits)),
    group_size: distinct(ws.map((w) => (w.format === "affine" ? w.groupSize : w.format === "codebook" ? w.blockSize : null))),
    symmetric: distinct(ws.map((w) => (w.format === "affine" ? w.symmetric : null))),
    layers: ws.length,
  };
}

/** `rtn affine, 4-bit, group 64, asymmetric (28 layers)`, or `full precision (not quantized)`. */
export function describeAdapterQuantization(q: AdapterQuantization | null): string {
  if (!q) return "full precision (not quantized)";
  const list = (v: unknown) => (Array.isArray(v) ? v.join("/") : String(v));
  const sym = q.symmetric === null ? "" : Array.isArray(q.symmetric) ? ", mixed symmetry" : q.symmetric ? ", symmetric" : ", asymmetric";
  return `${q.quantizer ?? "unnamed quantizer"} ${list(q.format)}, ${list(q.bits)}-bit, group ${list(q.group_size)}${sym} (${q.layers} layers)`;
}

// ---------------------------------------------------------------------------------------------
// Reading and comparing
// ---------------------------------------------------------------------------------------------

/** Reads and checks `modulora.json` (object, layout version, base_model); null with the problems added when it is unusable. */
export function readModuloraJson(path: string, problems: string[]): ModuloraAdapterMetadata | null {
  let json: unknown;
  try {
    json = readJsonFile(path, MODULORA_ADAPTER_FILE, (p) => new Error(`${MODULORA_ADAPTER_FILE}: ${p}`));
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
    return null;
  }
  const m = json as Partial<ModuloraAdapterMetadata>;
  if (typeof json !== "object" || json === null || Array.isArray(json)) problems.push(`${MODULORA_ADAPTER_FILE} must hold a JSON object`);
  else if (m.modulora_adapter_version !== MODULORA_ADAPTER_VERSION) problems.push(`${MODULORA_ADAPTER_FILE}: modulora_adapter_version is ${JSON.stringify(m.modulora_adapter_version)}, this loader reads version ${MODULORA_ADAPTER_VERSION}`);
  else if (typeof m.base_model !== "object" || m.base_model === null) problems.push(`${MODULORA_ADAPTER_FILE}: base_model is missing`);
  else return m as ModuloraAdapterMetadata;
  return null;
}

/** The differences between a saved base identity and the model's, one problem line each. */
export function compareFingerprint(saved: BaseModelFingerprint, model: LlamaModel): string[] {
  const mine = baseModelFingerprint(model.config);
  return (Object.keys(mine) as (keyof BaseModelFingerprint)[])
    .filter((k) => saved[k] !== mine[k])
    .map((k) => `base model ${k}: the adapter was trained on ${JSON.stringify(saved[k])}, the model has ${JSON.stringify(mine[k])}${k === "config_sha256" ? " (config.json differs)" : ""}`);
}

/**
 * The base quantization recorded in modulora.json against the model's layers under the adapter.
 * Problems: a different format, bits, group size, symmetry or layer count (a quantized record on
 * a full-precision model or the reverse included), or two different known quantizer names.
 * Warnings: no record (a modulora.json without `quantization`), or a quantizer name known on one
 * side only.
 */
export function compareQuantization(metadata: ModuloraAdapterMetadata, bases: readonly Linear[]): { problems: string[]; warnings: string[] } {
  if (!("quantization" in metadata)) return { problems: [], warnings: [`${MODULORA_ADAPTER_FILE} does not record the base's quantization; it was not checked`] };
  const saved = metadata.quantization ?? null;
  let now: AdapterQuantization | null;
  try {
    now = adapterQuantizationOf(bases);
  } catch (err) {
    return { problems: [`base quantization: ${err instanceof Error ? err.message : String(err)}`], warnings: [] };
  }
  const shape = (q: AdapterQuantization | null) => (q ? canonicalJson({ ...q, quantizer: null }) : "null");
  const both = `the adapter was trained on a base that is ${describeAdapterQuantization(saved)}; this model's layers are ${describeAdapterQuantization(now)}`;
  if (shape(saved) !== shape(now)) return { problems: [`base quantization: ${both}`], warnings: [] };
  if (saved && now && saved.quantizer !== now.quantizer) {
    if (saved.quantizer !== null && now.quantizer !== null) return { problems: [`base quantizer: ${both}`], warnings: [] };
    return { problems: [], warnings: [`base quantizer not known on both sides (${both}); format, bits and group size match`] };
  }
  return { problems: [], warnings: [] };
}
