/**
 * Adapters on a model: the hyper-parameters ({@link LoRAConfig}), the names and seeds of the
 * wrapped layers, the {@link Adapter} handle, {@link attachLoRA} and {@link mergedWeights}.
 *
 * {@link attachLoRA} wraps the targeted linears of every block in a {@link LoRALayer}; the
 * loader installs the layers it read through the same `install`, so a failure leaves the model
 * as it was either way.
 * @module
 */
import type { Tensor } from "@modulora/tensor";
import type { LlamaModel } from "../model.js";
import { LINEAR_NAMES, type LinearName } from "../types.js";
import { linearModuleName } from "../quantize/targets.js";
import { createLoRALayer, LORA_DISPATCHERS, LoRALayer, type LoRADispatcher, type LoRALayerOptions } from "./lora-layer.js";
import type { ModuloraAdapterMetadata } from "./metadata.js";

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

/** Hugging Face module name of a block's linear: `model.layers.{i}.{self_attn|mlp}.{name}` ({@link linearModuleName}). */
export const loraModuleName: (block: number, name: LinearName) => string = linearModuleName;

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
export function install(
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
