/**
 * LoRA adapters on a {@link LlamaModel}, and adapter directories in PEFT's layout.
 *
 * {@link attachLoRA} wraps the targeted linears of every block in a {@link LoRALayer}. The LoRA
 * implementation for a base layer is chosen by an ordered list of dispatchers, first match wins
 * (dense → `LoRALinear`, quantized → `ModuLoRALinear`), as PEFT's `_create_new_module`; a base
 * no dispatcher handles is an error listing the supported kinds.
 *
 * {@link saveAdapter} and {@link loadAdapter} read and write PEFT's files, so adapters move freely
 * between this toolkit and PEFT: `adapter_config.json` and `adapter_model.safetensors` with keys
 * `base_model.model.model.layers.{i}.{self_attn|mlp}.{name}.lora_A.weight` (f32 [r, in]) and
 * `….lora_B.weight` (f32 [out, r]). What PEFT has no field for goes in `modulora.json`:
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
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { add, assign, cast, matmul, noGrad, SafetensorsReader, saveSafetensors, scale, tensorFrom, tidy, type Device, type SafetensorsEntry, type Tensor } from "@modulora/tensor";
import { LoRALinear, ModuLoRALinear, type LoRAOptions, type QuantizedWeight } from "@modulora/core";
import { nonFiniteProblem, readHostArray } from "./checkpoint.js";
import { readJsonFile } from "./config.js";
import { moduleSelector, ModulePatternError } from "./module-pattern.js";
import { DenseLinear, QuantizedLinear } from "./linear.js";
import type { LlamaModel } from "./model.js";
import { LINEAR_MODULE, LINEAR_NAMES, type LayerForwardOptions, type Linear, type LinearName, type LlamaConfig } from "./types.js";

/** PEFT's adapter config file. */
export const ADAPTER_CONFIG_FILE = "adapter_config.json";
/** PEFT's adapter weights file. */
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";
/** Our side file: what PEFT has no field for. */
export const MODULORA_ADAPTER_FILE = "modulora.json";
/** Version of the `modulora.json` layout. */
export const MODULORA_ADAPTER_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// LoRA layers and their dispatchers
// ---------------------------------------------------------------------------------------------

/** A LoRA implementation over one base layer (`LoRALinear` and `ModuLoRALinear` both are). */
export interface LoRAModule {
  /** [r, in], requires grad. */
  readonly loraA: Tensor;
  /** [out, r], requires grad. */
  readonly loraB: Tensor;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly dropoutP: number;
  readonly rsLora: boolean;
  readonly seed: number;
  forward(x: Tensor, options?: LayerForwardOptions): Tensor;
  parameters(): Tensor[];
  /** Frees A and B only; the base weight belongs to the base layer. */
  dispose(): void;
}

/** Options a dispatcher gets for one layer: core's LoRA options and the model's device (where A and B are made). */
export type LoRALayerOptions = LoRAOptions & { device?: Device };

/** Wraps one kind of base layer with LoRA. */
export interface LoRADispatcher {
  /** What it wraps, for error messages, e.g. `dense (LoRALinear)`. */
  readonly name: string;
  /** The LoRA module over `base`, or null when `base` is not a kind this dispatcher handles. */
  create(base: Linear, options: LoRALayerOptions): LoRAModule | null;
  /** W + s·B·A as a new dense f32 [out, in] tensor (dequantizing the base if need be). */
  merge(base: Linear, lora: LoRAModule): Tensor;
}

/** Ŵ of a quantized weight as a dense f32 [out, in] tensor on `device` (materialized on the host, one copy in). */
function dequantize(w: QuantizedWeight, device: Device): Tensor {
  const buf = new Float32Array(w.outFeatures * w.inFeatures);
  w.materialize(0, w.outFeatures, buf);
  return tensorFrom(buf, { shape: [w.outFeatures, w.inFeatures], device });
}

/** The dispatchers {@link attachLoRA} and {@link loadAdapter} use by default, in order. */
export const LORA_DISPATCHERS: readonly LoRADispatcher[] = [
  {
    name: "dense (DenseLinear → LoRALinear)",
    create: (base, options) => (base instanceof DenseLinear ? new LoRALinear(base.weight, options) : null),
    merge: (_base, lora) => (lora as LoRALinear).mergedWeight(),
  },
  {
    name: "quantized (QuantizedLinear → ModuLoRALinear)",
    create: (base, options) => (base instanceof QuantizedLinear ? new ModuLoRALinear(base.weight, options) : null),
    // Merging into the packed weight would re-quantize it (ModuLoRALinear.merge refuses); a dense
    // export of Ŵ + s·B·A changes nothing in the model.
    merge: (base, lora) => noGrad(() => tidy(() => add(dequantize((base as QuantizedLinear).weight, lora.loraB.device), scale(matmul(lora.loraB, lora.loraA), lora.scaling)))),
  },
];

/** A base linear with a LoRA adapter: Y = base(X) + s·(drop(X)·Aᵀ)·Bᵀ. */
export class LoRALayer implements Linear {
  readonly kind = "lora" as const;

  constructor(
    /** The wrapped layer (frozen; restored by `Adapter.detach`). */
    readonly base: Linear,
    readonly lora: LoRAModule,
    /** The dispatcher that made `lora`. */
    readonly dispatcher: LoRADispatcher,
  ) {}

  get inFeatures(): number {
    return this.base.inFeatures;
  }
  get outFeatures(): number {
    return this.base.outFeatures;
  }
  get loraA(): Tensor {
    return this.lora.loraA;
  }
  get loraB(): Tensor {
    return this.lora.loraB;
  }
  get r(): number {
    return this.lora.r;
  }
  get scaling(): number {
    return this.lora.scaling;
  }
  forward(x: Tensor, options?: LayerForwardOptions): Tensor {
    return this.lora.forward(x, options);
  }
  parameters(): Tensor[] {
    return this.lora.parameters();
  }
  storageBytes(): number {
    return this.base.storageBytes() + 4 * (this.lora.loraA.size + this.lora.loraB.size);
  }
  /** W + s·B·A [out, in] f32, a new tensor (the caller owns it); nothing changes. */
  mergedWeight(): Tensor {
    return this.dispatcher.merge(this.base, this.lora);
  }
  /** Frees the adapter (A, B) but not the base. */
  disposeAdapter(): void {
    this.lora.dispose();
  }
  /** Frees the adapter and the base (the model owns its layers). */
  dispose(): void {
    this.lora.dispose();
    this.base.dispose();
  }
}

/** Wraps `base` with the first dispatcher that handles it. */
export function createLoRALayer(base: Linear, options: LoRALayerOptions, dispatchers: readonly LoRADispatcher[] = LORA_DISPATCHERS): LoRALayer {
  for (const d of dispatchers) {
    const lora = d.create(base, options);
    if (lora) return new LoRALayer(base, lora, d);
  }
  const hint = base.kind === "lora" ? " (it already carries a LoRA adapter: detach that one first)" : "";
  throw new Error(`LoRA: no dispatcher handles a '${base.kind}' layer (${base.constructor.name})${hint}; supported: ${dispatchers.map((d) => d.name).join(", ") || "none"}`);
}

// ---------------------------------------------------------------------------------------------
// Adapters on a model
// ---------------------------------------------------------------------------------------------

/** The hyper-parameters of an adapter. */
export interface LoRAConfig {
  r: number;
  alpha: number;
  dropout: number;
  /** Linears of each block that carry the adapter. */
  targets: LinearName[];
  rsLora: boolean;
  /** Layer seeds are `seed·1000 + block·7 + index of the linear in LINEAR_NAMES`. */
  seed: number;
  /** Blocks that carry the adapter (PEFT's `layers_to_transform`); null: all. */
  layers: number[] | null;
}

/** Options of {@link attachLoRA}. */
export interface AttachLoRAOptions {
  r?: number;
  alpha?: number;
  dropout?: number;
  targets?: readonly LinearName[];
  rsLora?: boolean;
  seed?: number;
  layers?: readonly number[] | null;
  dispatchers?: readonly LoRADispatcher[];
}

/** Hugging Face module name of a block's linear: `model.layers.{i}.{self_attn|mlp}.{name}`. */
export function loraModuleName(block: number, name: LinearName): string {
  return `model.layers.${block}.${LINEAR_MODULE[name]}.${name}`;
}

/** The key of a LoRA factor in PEFT's `adapter_model.safetensors`. */
export function peftTensorName(block: number, name: LinearName, factor: "A" | "B"): string {
  return `base_model.model.${loraModuleName(block, name)}.lora_${factor}.weight`;
}

/** The seed of one layer's adapter (distinct per block and linear). */
export function loraLayerSeed(seed: number, block: number, name: LinearName): number {
  return seed * 1000 + block * LINEAR_NAMES.length + LINEAR_NAMES.indexOf(name);
}

/** One wrapped layer of an adapter (internal bookkeeping). */
export interface Slot {
  block: number;
  name: LinearName;
  layer: LoRALayer;
}

/**
 * An adapter attached to a model: the LoRA layers that replaced its linears. `detach()` puts
 * the base layers back and frees A and B.
 */
export class Adapter {
  /** By module name (`model.layers.0.self_attn.q_proj`), blocks in order, linears in LINEAR_NAMES order. */
  readonly layers: ReadonlyMap<string, LoRALayer>;
  private model: LlamaModel | null;

  constructor(
    model: LlamaModel,
    readonly config: Readonly<LoRAConfig>,
    private readonly slots: readonly Slot[],
    /** `modulora.json` as read by {@link loadAdapter} (null when absent, or for a new adapter). */
    readonly metadata: ModuloraAdapterMetadata | null = null,
    /** What {@link loadAdapter} noticed but accepted (e.g. a different quantization of the base). */
    readonly warnings: readonly string[] = [],
  ) {
    this.model = model;
    this.layers = new Map(slots.map((s) => [loraModuleName(s.block, s.name), s.layer]));
  }

  /** Whether the adapter is still attached (not detached). */
  get attached(): boolean {
    return this.model !== null;
  }

  /** The model it is attached to. */
  get attachedModel(): LlamaModel {
    if (!this.model) throw new Error("Adapter: detached");
    return this.model;
  }

  /** The trainable tensors, [A, B] per layer in the order of `layers`. */
  parameters(): Tensor[] {
    if (!this.model) throw new Error("Adapter.parameters: the adapter was detached (its tensors are freed)");
    return this.slots.flatMap((s) => s.layer.parameters());
  }

  /** Restores the base layers in the model and frees A and B. */
  detach(): void {
    const model = this.model;
    if (!model) throw new Error("Adapter.detach: already detached");
    const moved = this.slots.filter((s) => model.layers[s.block]!.linears[s.name] !== s.layer).map((s) => loraModuleName(s.block, s.name));
    if (moved.length) throw new Error(`Adapter.detach: these layers were replaced since the adapter was attached, nothing was changed: ${moved.join(", ")}`);
    for (const s of this.slots) {
      model.layers[s.block]!.linears[s.name] = s.layer.base;
      s.layer.disposeAdapter();
    }
    this.model = null;
  }
}

function checkTargets(who: string, targets: readonly string[]): LinearName[] {
  if (!Array.isArray(targets) || targets.length === 0) throw new RangeError(`${who}: targets must be a non-empty list of ${LINEAR_NAMES.join(", ")}`);
  const bad = targets.filter((t) => !(LINEAR_NAMES as readonly string[]).includes(t));
  if (bad.length) throw new RangeError(`${who}: unknown target${bad.length > 1 ? "s" : ""} ${bad.map((b) => `'${b}'`).join(", ")}; targets are ${LINEAR_NAMES.join(", ")}`);
  // In LINEAR_NAMES order, without duplicates.
  return LINEAR_NAMES.filter((n) => targets.includes(n));
}

function checkLayers(who: string, layers: readonly number[] | null | undefined, numLayers: number): number[] | null {
  if (layers === null || layers === undefined) return null;
  const bad = layers.filter((l) => !Number.isInteger(l) || l < 0 || l >= numLayers);
  if (!Array.isArray(layers) || layers.length === 0 || bad.length) {
    throw new RangeError(`${who}: layers must be a non-empty list of block indices in [0, ${numLayers}), got ${JSON.stringify(layers)}`);
  }
  return [...new Set(layers)].sort((a, b) => a - b);
}

/**
 * Builds every LoRA layer first, then installs them all, so a failure leaves the model as it was.
 * `init(slot, lora)` may overwrite the fresh A and B (loading).
 */
function install(
  model: LlamaModel, config: LoRAConfig, pairs: readonly { block: number; name: LinearName }[], dispatchers: readonly LoRADispatcher[],
  init?: (block: number, name: LinearName, lora: LoRALayer) => void, metadata: ModuloraAdapterMetadata | null = null, warnings: string[] = [],
): Adapter {
  const taken = pairs.filter(({ block, name }) => model.layers[block]!.linears[name].kind === "lora").map(({ block, name }) => loraModuleName(block, name));
  if (taken.length) throw new Error(`LoRA: ${taken.length} target layer(s) already carry an adapter (${taken.slice(0, 4).join(", ")}${taken.length > 4 ? ", …" : ""}); detach it first`);
  const slots: Slot[] = [];
  try {
    for (const { block, name } of pairs) {
      // A and B are made by kernels on the model's device (the same numbers on every device).
      const options: LoRALayerOptions = { r: config.r, alpha: config.alpha, dropout: config.dropout, rsLora: config.rsLora, seed: loraLayerSeed(config.seed, block, name), device: model.device };
      const layer = createLoRALayer(model.layers[block]!.linears[name], options, dispatchers);
      slots.push({ block, name, layer });
      init?.(block, name, layer);
    }
  } catch (err) {
    for (const s of slots) s.layer.disposeAdapter();
    throw err;
  }
  for (const s of slots) model.layers[s.block]!.linears[s.name] = s.layer;
  return new Adapter(model, config, slots, metadata, warnings);
}

/**
 * Attaches a fresh LoRA adapter (A Kaiming-uniform, B zeros: the model's outputs are unchanged
 * until it trains) to the `targets` of every block (or of `layers`). Defaults: r 8, alpha 16,
 * dropout 0.05, all seven linears, s = alpha / r, seed 0.
 */
export function attachLoRA(model: LlamaModel, options: AttachLoRAOptions = {}): Adapter {
  const who = "attachLoRA";
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`${who}: seed must be a non-negative integer, got ${seed}`);
  const config: LoRAConfig = {
    r: options.r ?? 8,
    alpha: options.alpha ?? 16,
    dropout: options.dropout ?? 0.05,
    targets: checkTargets(who, options.targets ?? LINEAR_NAMES),
    rsLora: options.rsLora ?? false,
    seed,
    layers: checkLayers(who, options.layers, model.layers.length),
  };
  const blocks = config.layers ?? model.layers.map((_, i) => i);
  return install(model, config, blocks.flatMap((block) => config.targets.map((name) => ({ block, name }))), options.dispatchers ?? LORA_DISPATCHERS);
}

/**
 * W + s·B·A (dense f32 [out, in], quantized bases dequantized) of every LoRA layer of the model,
 * keyed by Hugging Face tensor name (`model.layers.{i}.{module}.{name}.weight`), for exporting a
 * merged checkpoint. The model is not changed; the caller owns the returned tensors.
 */
export function mergedWeights(model: LlamaModel): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  try {
    model.layers.forEach((layer, block) => {
      for (const name of LINEAR_NAMES) {
        const l = layer.linears[name];
        if (l instanceof LoRALayer) out.set(`${loraModuleName(block, name)}.weight`, l.mergedWeight());
      }
    });
  } catch (err) {
    for (const t of out.values()) t.dispose();
    throw err;
  }
  return out;
}

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

// ---------------------------------------------------------------------------------------------
// Saving
// ---------------------------------------------------------------------------------------------

/** modulora.json fields given by the caller; known ones are written in snake_case. */
export interface AdapterExtra {
  /** Name of the quantizer plugin that made the base (bits, group size and format are read from the model). */
  quantizer?: string;
  taskFormat?: string;
  promptTemplate?: string;
  labels?: string[];
  /** Anything else, written as given. */
  [key: string]: unknown;
}

/** Options of {@link saveAdapter}. */
export interface SaveAdapterOptions {
  /** PEFT's `base_model_name_or_path` (a hub id or a path); null if unknown. */
  baseModelNameOrPath: string | null;
  extra?: AdapterExtra;
  /** Replace an existing non-empty directory (default false: refuse). */
  overwrite?: boolean;
}

const EXTRA_KEYS: Record<string, string> = { taskFormat: "task_format", promptTemplate: "prompt_template", labels: "labels" };

function sortedObject(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}

/** adapter_config.json for an adapter (PEFT's LoraConfig fields; keys sorted as PEFT writes them). */
export function peftAdapterConfig(config: LoRAConfig, baseModelNameOrPath: string | null): Record<string, unknown> {
  return sortedObject({
    alpha_pattern: {},
    base_model_name_or_path: baseModelNameOrPath,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: config.layers,
    lora_alpha: config.alpha,
    lora_dropout: config.dropout,
    modules_to_save: null,
    peft_type: "LORA",
    r: config.r,
    rank_pattern: {},
    target_modules: [...config.targets],
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: config.rsLora,
  });
}

/**
 * Writes the adapter as a PEFT directory (`adapter_config.json`, `adapter_model.safetensors`)
 * plus `modulora.json`. The files go into a temporary sibling directory that is renamed into
 * place, so `dir` never holds a half-written adapter; an existing non-empty `dir` is refused
 * unless `overwrite`. Returns the directory and the files written.
 */
export function saveAdapter(adapter: Adapter, dir: string, options: SaveAdapterOptions): { dir: string; files: string[] } {
  if (!options || options.baseModelNameOrPath === undefined) throw new TypeError("saveAdapter: options.baseModelNameOrPath is required (a hub id or a path, or null)");
  const model = adapter.attachedModel;
  const target = resolve(dir);
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new Error(`saveAdapter: ${target} exists and is not a directory`);
    if (readdirSync(target).length > 0 && !options.overwrite) throw new Error(`saveAdapter: ${target} exists and is not empty; pass overwrite: true to replace it`);
  }
  const { quantizer, ...rest } = options.extra ?? {};
  if (quantizer !== undefined && typeof quantizer !== "string") throw new TypeError(`saveAdapter: extra.quantizer must be a string, got ${JSON.stringify(quantizer)}`);
  const extra = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined).map(([k, v]) => [EXTRA_KEYS[k] ?? k, v]));
  const metadata: ModuloraAdapterMetadata = {
    modulora_adapter_version: MODULORA_ADAPTER_VERSION,
    base_model: baseModelFingerprint(model.config),
    quantization: (() => {
      try {
        return adapterQuantizationOf([...adapter.layers.values()].map((l) => l.base), quantizer ?? null);
      } catch (err) {
        throw new Error(`saveAdapter: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    })(),
    seed: adapter.config.seed,
    ...extra,
  };
  const tensors = new Map<string, Tensor>();
  for (const [name, layer] of [...adapter.layers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    tensors.set(`base_model.model.${name}.lora_A.weight`, layer.loraA);
    tensors.set(`base_model.model.${name}.lora_B.weight`, layer.loraB);
  }
  const tmp = `${target}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  const old = `${target}.old-${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    mkdirSync(tmp, { recursive: true });
    writeFileSync(join(tmp, ADAPTER_CONFIG_FILE), `${JSON.stringify(peftAdapterConfig(adapter.config as LoRAConfig, options.baseModelNameOrPath), null, 2)}\n`);
    saveSafetensors(join(tmp, ADAPTER_WEIGHTS_FILE), tensors, { format: "pt" });
    writeFileSync(join(tmp, MODULORA_ADAPTER_FILE), `${JSON.stringify(metadata, null, 2)}\n`);
    // An existing directory moves aside first and is removed once the new one is in place.
    if (existsSync(target)) renameSync(target, old);
    renameSync(tmp, target);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(old) && !existsSync(target)) renameSync(old, target);
    throw new Error(`saveAdapter: cannot write ${target}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  rmSync(old, { recursive: true, force: true });
  return { dir: target, files: [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, MODULORA_ADAPTER_FILE] };
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/** An adapter that cannot be applied to a model; every problem found is listed. */
export class AdapterError extends Error {
  readonly dir: string;
  readonly problems: string[];

  constructor(dir: string, problems: string[], cause?: unknown) {
    const shown = problems.slice(0, 40);
    const more = problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : "";
    super(`adapter ${dir}: ${problems.length === 1 ? "1 problem" : `${problems.length} problems`}:\n  ${shown.join("\n  ")}${more}`, cause !== undefined ? { cause } : undefined);
    this.name = "AdapterError";
    this.dir = dir;
    this.problems = problems;
  }
}

/** Options of {@link loadAdapter}. */
export interface LoadAdapterOptions {
  /**
   * Default true: a base-model identity in modulora.json that differs from the model's is an
   * error. With false it becomes a warning (`adapter.warnings`). Shapes, names and ranks must
   * match either way: an adapter that does not fit cannot be attached.
   */
  strict?: boolean;
  dispatchers?: readonly LoRADispatcher[];
}

/** PEFT LoraConfig fields this loader refuses when set to anything but their default. */
const REFUSED: readonly { key: string; ok: (v: unknown) => boolean; why: string }[] = [
  { key: "use_dora", ok: (v) => v === false || v == null, why: "DoRA (weight-decomposed LoRA) is not supported" },
  { key: "bias", ok: (v) => v === "none" || v == null, why: 'trained biases are not supported; only bias "none"' },
  { key: "modules_to_save", ok: (v) => v == null || (Array.isArray(v) && v.length === 0), why: "fully trained extra modules (modules_to_save) are not supported" },
  { key: "fan_in_fan_out", ok: (v) => v === false || v == null, why: "fan_in_fan_out (Conv1D/GPT-2 weight layout) does not apply to LLaMA linears" },
  { key: "lora_bias", ok: (v) => v === false || v == null, why: "a bias on lora_B is not supported" },
  { key: "rank_pattern", ok: (v) => v == null || (typeof v === "object" && Object.keys(v).length === 0), why: "per-module ranks (rank_pattern) are not supported" },
  { key: "alpha_pattern", ok: (v) => v == null || (typeof v === "object" && Object.keys(v).length === 0), why: "per-module alphas (alpha_pattern) are not supported" },
  { key: "layer_replication", ok: (v) => v == null, why: "layer_replication is not supported" },
  { key: "use_qalora", ok: (v) => v === false || v == null, why: "QA-LoRA is not supported" },
  { key: "target_parameters", ok: (v) => v == null || (Array.isArray(v) && v.length === 0), why: "LoRA on parameters (target_parameters) is not supported" },
  { key: "trainable_token_indices", ok: (v) => v == null, why: "trainable token embeddings are not supported" },
];

/** Module-name selectors of PEFT (see module-pattern.ts: regexes run on a linear-time NFA, never on `RegExp`). */
type Selector = (path: string) => boolean;

interface ParsedPeftConfig {
  config: LoRAConfig;
  /** target_modules as written. */
  spec: string | string[];
  targets: Selector;
  exclude: Selector | null;
}

function parsePeftConfig(json: unknown, numLayers: number, problems: string[]): ParsedPeftConfig | null {
  const f = ADAPTER_CONFIG_FILE;
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    problems.push(`${f} must hold a JSON object`);
    return null;
  }
  const c = json as Record<string, unknown>;
  const before = problems.length;
  if (c["peft_type"] !== "LORA") problems.push(`${f}: peft_type is ${JSON.stringify(c["peft_type"])}, this loader reads "LORA" adapters`);
  if (c["task_type"] != null && c["task_type"] !== "CAUSAL_LM") problems.push(`${f}: task_type is ${JSON.stringify(c["task_type"])}; only "CAUSAL_LM" adapters apply to a causal LM`);
  for (const { key, ok, why } of REFUSED) if (!ok(c[key])) problems.push(`${f}: ${key} = ${JSON.stringify(c[key])}: ${why}`);
  const r = c["r"];
  if (typeof r !== "number" || !Number.isInteger(r) || r < 1) problems.push(`${f}: r must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = c["lora_alpha"];
  if (typeof alpha !== "number" || !(alpha > 0) || !Number.isFinite(alpha)) problems.push(`${f}: lora_alpha must be a positive number, got ${JSON.stringify(alpha)}`);
  const dropout = c["lora_dropout"] ?? 0;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) problems.push(`${f}: lora_dropout must be a number in [0, 1), got ${JSON.stringify(dropout)}`);
  const rs = c["use_rslora"] ?? false;
  if (typeof rs !== "boolean") problems.push(`${f}: use_rslora must be true or false, got ${JSON.stringify(rs)}`);
  const isSpec = (v: unknown): v is string | string[] => typeof v === "string" || (Array.isArray(v) && v.length > 0 && v.every((t) => typeof t === "string"));
  const tm = c["target_modules"];
  if (!isSpec(tm)) problems.push(`${f}: target_modules must be a non-empty list of module names or a regex string, got ${JSON.stringify(tm)}`);
  const em = c["exclude_modules"];
  if (em != null && !isSpec(em)) problems.push(`${f}: exclude_modules must be a list of module names or a regex string, got ${JSON.stringify(em)}`);
  let layers: number[] | null = null;
  const lt = c["layers_to_transform"];
  if (lt != null) {
    const list = typeof lt === "number" ? [lt] : lt;
    if (!Array.isArray(list) || list.length === 0 || !list.every((l) => Number.isInteger(l) && l >= 0)) problems.push(`${f}: layers_to_transform must be a block index or a list of them, got ${JSON.stringify(lt)}`);
    else {
      layers = [...new Set(list as number[])].sort((a, b) => a - b);
      const out = layers.filter((l) => l >= numLayers);
      if (out.length) problems.push(`${f}: layers_to_transform names block(s) ${out.join(", ")}, the model has ${numLayers} (0–${numLayers - 1})`);
    }
  }
  let targets: Selector | null = null;
  let exclude: Selector | null = null;
  for (const [key, spec] of [["target_modules", tm], ["exclude_modules", em]] as const) {
    if (spec == null || !isSpec(spec)) continue;
    try {
      const sel = moduleSelector(spec);
      if (key === "target_modules") targets = sel;
      else exclude = sel;
    } catch (err) {
      const why = err instanceof ModulePatternError ? "the regex is outside the supported subset (literals, ., classes, groups, |, ? * + {m,n}, ^ $)" : "the regex is not valid";
      problems.push(`${f}: ${key}: ${why}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (problems.length > before || !targets) return null;
  // targets: the linears found in the file (set after the tensors are checked).
  const config: LoRAConfig = { r: r as number, alpha: alpha as number, dropout: dropout as number, targets: [], rsLora: rs as boolean, seed: 0, layers };
  return { config, spec: tm as string | string[], targets, exclude };
}

function readModuloraJson(path: string, problems: string[]): ModuloraAdapterMetadata | null {
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

/** "0–3" / "5" / "1, 4, 6" */
function rangeText(xs: number[]): string {
  if (xs.length > 1 && xs.every((x, i) => i === 0 || x === xs[i - 1]! + 1)) return `${xs[0]}–${xs[xs.length - 1]}`;
  return xs.join(", ");
}

const KEY = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.([A-Za-z0-9_]+)\.lora_([AB])\.weight$/;

/**
 * Checks every tensor of the adapter file against the model and the config: names, which
 * modules and layers are covered, shapes and ranks. Returns the entries to load by (block, name).
 */
function checkTensors(model: LlamaModel, entries: readonly SafetensorsEntry[], parsed: ParsedPeftConfig, problems: string[]): Map<string, { block: number; name: LinearName; a: string; b: string }> {
  const numLayers = model.layers.length;
  const { config, targets, exclude } = parsed;
  const found = new Map<string, { block: number; name: LinearName; a?: SafetensorsEntry; b?: SafetensorsEntry }>();
  const outOfRange = new Set<number>();
  const blocksSeen = new Set<number>();
  for (const e of entries) {
    const m = KEY.exec(e.name);
    if (!m) {
      const why = /lora_magnitude_vector/.test(e.name) ? "a DoRA magnitude vector (DoRA is not supported)"
        : /lora_embedding_[AB]/.test(e.name) ? "LoRA on an embedding (not supported)"
        : "not a LoRA factor of a block linear (keys are base_model.model.model.layers.{i}.{self_attn|mlp}.{name}.lora_{A|B}.weight)";
      problems.push(`tensor ${e.name}: ${why}`);
      continue;
    }
    const block = Number(m[1]);
    const [, , module, rawName, factor] = m as unknown as [string, string, string, string, "A" | "B"];
    blocksSeen.add(block);
    if (block >= numLayers) {
      outOfRange.add(block);
      continue;
    }
    const path = `model.layers.${block}.${module}.${rawName}`;
    if (!(LINEAR_NAMES as readonly string[]).includes(rawName) || LINEAR_MODULE[rawName as LinearName] !== module) {
      problems.push(`tensor ${e.name}: ${path} is not a linear of a LLaMA block (${LINEAR_NAMES.map((n) => `${LINEAR_MODULE[n]}.${n}`).join(", ")})`);
      continue;
    }
    const name = rawName as LinearName;
    if (!targets(path) || exclude?.(path)) {
      problems.push(`tensor ${e.name}: ${path} is not one of the adapter's target_modules`);
      continue;
    }
    if (config.layers && !config.layers.includes(block)) {
      problems.push(`tensor ${e.name}: block ${block} is not in layers_to_transform [${config.layers.join(", ")}]`);
      continue;
    }
    const slot = found.get(path) ?? { block, name };
    if (factor === "A") slot.a = e;
    else slot.b = e;
    found.set(path, slot);
  }
  if (outOfRange.size) {
    const seen = [...blocksSeen].sort((a, b) => a - b);
    problems.unshift(`layer count: the adapter has tensors for blocks ${rangeText(seen)} (${seen.length} layers), the model has ${numLayers}; blocks ${rangeText([...outOfRange].sort((a, b) => a - b))} do not exist`);
  }
  // Coverage: every targeted linear of every targeted block has both factors.
  const blocks = config.layers ?? model.layers.map((_, i) => i);
  const empty: number[] = [];
  const missing: string[] = [];
  for (const block of blocks) {
    const expected = LINEAR_NAMES.filter((n) => targets(loraModuleName(block, n)) && !exclude?.(loraModuleName(block, n)));
    const slots = expected.map((n) => found.get(loraModuleName(block, n)));
    if (expected.length && slots.every((x) => !x)) {
      empty.push(block);
      continue;
    }
    const ms = expected.flatMap((n, i) => (!slots[i] ? [n] : [!slots[i]!.a ? `${n}.lora_A` : "", !slots[i]!.b ? `${n}.lora_B` : ""].filter(Boolean)));
    if (ms.length) missing.push(`missing tensors in block ${block}: ${ms.join(", ")}`);
  }
  if (empty.length === blocks.length) problems.push(`no LoRA tensors for the targeted modules in any block (target_modules ${JSON.stringify(parsed.spec)})`);
  else if (empty.length && !config.layers && !outOfRange.size) {
    const have = blocks.filter((b) => !empty.includes(b));
    problems.unshift(`layer count: the adapter has tensors for ${have.length} layers (${rangeText(have)}), the model has ${numLayers}; blocks ${rangeText(empty)} have none`);
  } else if (empty.length) missing.push(`blocks ${rangeText(empty)} have no tensors`);
  problems.push(...missing);
  // Shapes and ranks.
  const out = new Map<string, { block: number; name: LinearName; a: string; b: string }>();
  for (const [path, slot] of found) {
    if (!slot.a || !slot.b) continue;
    const base = model.layers[slot.block]!.linears[slot.name];
    const wantA = [config.r, base.inFeatures];
    const wantB = [base.outFeatures, config.r];
    let ok = true;
    for (const [e, want, f] of [[slot.a, wantA, "A"], [slot.b, wantB, "B"]] as const) {
      if (e.shape.length !== 2 || e.shape[0] !== want[0] || e.shape[1] !== want[1]) {
        const rankHint = e.shape.length === 2 && (f === "A" ? e.shape[0] : e.shape[1]) !== config.r ? ` (r is ${config.r} in ${ADAPTER_CONFIG_FILE})` : "";
        problems.push(`${path}.lora_${f} is [${e.shape.join(", ")}], the model needs [${want.join(", ")}]${rankHint}`);
        ok = false;
      }
      if (!["f32", "f16", "bf16", "f64"].includes(e.dtype)) {
        problems.push(`${path}.lora_${f} has dtype ${e.dtype}; LoRA factors are floating point`);
        ok = false;
      }
    }
    if (ok) out.set(path, { block: slot.block, name: slot.name, a: slot.a.name, b: slot.b.name });
  }
  return out;
}

function compareFingerprint(saved: BaseModelFingerprint, model: LlamaModel): string[] {
  const mine = baseModelFingerprint(model.config);
  return (Object.keys(mine) as (keyof BaseModelFingerprint)[])
    .filter((k) => saved[k] !== mine[k])
    .map((k) => `base model ${k}: the adapter was trained on ${JSON.stringify(saved[k])}, the model has ${JSON.stringify(mine[k])}${k === "config_sha256" ? " (config.json differs)" : ""}`);
}

/** `rtn affine, 4-bit, group 64, asymmetric (28 layers)`, or `full precision (not quantized)`. */
export function describeAdapterQuantization(q: AdapterQuantization | null): string {
  if (!q) return "full precision (not quantized)";
  const list = (v: unknown) => (Array.isArray(v) ? v.join("/") : String(v));
  const sym = q.symmetric === null ? "" : Array.isArray(q.symmetric) ? ", mixed symmetry" : q.symmetric ? ", symmetric" : ", asymmetric";
  return `${q.quantizer ?? "unnamed quantizer"} ${list(q.format)}, ${list(q.bits)}-bit, group ${list(q.group_size)}${sym} (${q.layers} layers)`;
}

/**
 * The base quantization recorded in modulora.json against the model's layers under the adapter.
 * Problems: a different format, bits, group size, symmetry or layer count (a quantized record on
 * a full-precision model or the reverse included), or two different known quantizer names.
 * Warnings: no record (a modulora.json without `quantization`), or a quantizer name known on one
 * side only.
 */
function compareQuantization(metadata: ModuloraAdapterMetadata, bases: readonly Linear[]): { problems: string[]; warnings: string[] } {
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

/**
 * Loads a PEFT LoRA adapter directory (ours, or one PEFT wrote) and attaches it to the model.
 * Everything is checked before anything is attached — the config (PEFT options this toolkit
 * does not implement are refused, by name), the tensors against the model (layer count, module
 * names, shapes, r), and the base identity in modulora.json when present — and every problem
 * is reported in one {@link AdapterError}. Scaling follows the config: `lora_alpha / r`, or
 * `lora_alpha / √r` with `use_rslora`.
 */
export function loadAdapter(model: LlamaModel, dir: string, options: LoadAdapterOptions = {}): Adapter {
  const strict = options.strict ?? true;
  const root = resolve(dir);
  const fail = (problems: string[], cause?: unknown) => new AdapterError(root, problems, cause);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw fail(["the directory does not exist"]);
  const configPath = join(root, ADAPTER_CONFIG_FILE);
  const weightsPath = join(root, ADAPTER_WEIGHTS_FILE);
  const problems: string[] = [];
  let json: unknown;
  try {
    json = readJsonFile(configPath, ADAPTER_CONFIG_FILE, (p) => new Error(`${ADAPTER_CONFIG_FILE}: ${p}`));
  } catch (err) {
    throw fail([err instanceof Error ? err.message : String(err)], err);
  }
  const parsed = parsePeftConfig(json, model.layers.length, problems);
  const warnings: string[] = [];
  const metadataPath = join(root, MODULORA_ADAPTER_FILE);
  const metadata = existsSync(metadataPath) ? readModuloraJson(metadataPath, problems) : null;
  if (metadata) {
    const diffs = compareFingerprint(metadata.base_model, model);
    if (strict) problems.push(...diffs);
    else warnings.push(...diffs);
  }
  if (!existsSync(weightsPath)) {
    const bin = existsSync(join(root, "adapter_model.bin"));
    problems.push(bin ? `${ADAPTER_WEIGHTS_FILE} is missing; adapter_model.bin (PyTorch pickle) is not read: re-save the adapter with safe_serialization=True` : `${ADAPTER_WEIGHTS_FILE} is missing`);
  }
  // Without a usable config or weights file the tensors cannot be checked; otherwise go on, so
  // that every problem (identity and tensors) is reported at once.
  if (!parsed || !existsSync(weightsPath)) throw fail(problems);

  let entries: readonly SafetensorsEntry[];
  try {
    const reader = SafetensorsReader.open(weightsPath);
    entries = reader.entries();
    reader.close();
  } catch (err) {
    throw fail([`${ADAPTER_WEIGHTS_FILE}: ${err instanceof Error ? err.message : String(err)}`], err);
  }
  const slots = checkTensors(model, entries, parsed, problems);
  if (problems.length) throw fail(problems);

  if (metadata) {
    const bases = [...slots.values()].map((s) => model.layers[s.block]!.linears[s.name]);
    const check = compareQuantization(metadata, bases);
    if (strict) problems.push(...check.problems);
    else warnings.push(...check.problems);
    warnings.push(...check.warnings);
    if (problems.length) throw fail(problems);
    parsed.config.seed = Number.isSafeInteger(metadata.seed) ? metadata.seed : 0;
  }
  parsed.config.targets = LINEAR_NAMES.filter((n) => [...slots.values()].some((s) => s.name === n));
  // The factors are read and checked for NaN/Inf on the host, from the file's bytes, then copied
  // onto the model's device: one transfer per factor.
  const tensors = new Map<string, Tensor>();
  const reader = SafetensorsReader.open(weightsPath);
  try {
    for (const name of [...slots.values()].flatMap((s) => [s.a, s.b])) {
      const e = reader.entry(name);
      const host = readHostArray(reader, e);
      const bad = nonFiniteProblem(name, new Uint8Array(host.buffer, host.byteOffset, host.byteLength), e.dtype, e.shape);
      if (bad) throw new AdapterError(root, [`${ADAPTER_WEIGHTS_FILE}: ${bad}`]);
      tensors.set(name, tensorFrom(host, { shape: e.shape, dtype: e.dtype, device: model.device }));
    }
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  } finally {
    reader.close();
  }
  try {
    const pairs = [...slots.values()].sort((x, y) => x.block - y.block || LINEAR_NAMES.indexOf(x.name) - LINEAR_NAMES.indexOf(y.name));
    return install(model, parsed.config, pairs, options.dispatchers ?? LORA_DISPATCHERS, (block, name, layer) => {
      const s = slots.get(loraModuleName(block, name))!;
      noGrad(() => {
        for (const [dst, src] of [[layer.loraA, tensors.get(s.a)!], [layer.loraB, tensors.get(s.b)!]] as const) {
          if (src.dtype === "f32") assign(dst, src);
          else tidy(() => assign(dst, cast(src, "f32")));
        }
      });
    }, metadata, warnings);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
