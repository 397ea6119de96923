// The `modulora` codec: any quantized weight (affine, codebook, or custom through its plugin) as
// named tensors `{prefix}.{tensor}` (the tensors of serializeQuantizedWeight) plus per-layer
// JSON metadata, all layers' metadata together under one safetensors `__metadata__` key.
import type { Tensor } from "@modulora/tensor";
import type { QuantizerPlugin } from "../../spec.js";
import { deserializeQuantizedWeight, serializeQuantizedWeight } from "../serialize.js";
import type { QuantizedWeight } from "../types.js";

/** The safetensors `__metadata__` key holding the per-layer metadata of a `modulora` checkpoint. */
export const MODULORA_LAYERS_METADATA_KEY = "modulora.layers";

/** Per-layer metadata of a `modulora` checkpoint, by layer prefix. */
export type ModuloraLayersMetadata = Record<string, Record<string, unknown>>;

/**
 * Writes quantized layers in the `modulora` layout: {@link ModuloraLayersEncoder.add} adds a layer's
 * tensors (its own, not copies: do not dispose them) under `{prefix}.{name}`, to the caller's
 * map, in order; {@link ModuloraLayersEncoder.metadata} is the safetensors `__metadata__` entry
 * of all layers added so far.
 */
export class ModuloraLayersEncoder {
  /** Layers added so far, by prefix. */
  readonly layers: ModuloraLayersMetadata = {};

  /** `plugin`: the maker of custom-format weights (required to write them). */
  constructor(private readonly plugin?: QuantizerPlugin) {}

  /** Adds `w` under `prefix`: its tensors go into `tensors` as `{prefix}.{name}`. */
  add(prefix: string, w: QuantizedWeight, tensors: Map<string, Tensor>): void {
    const s = serializeQuantizedWeight(w, this.plugin);
    for (const [k, t] of Object.entries(s.tensors)) tensors.set(`${prefix}.${k}`, t);
    this.layers[prefix] = s.metadata;
  }

  /** `{ [MODULORA_LAYERS_METADATA_KEY]: JSON of every layer's metadata }`. */
  metadata(): Record<string, string> {
    return { [MODULORA_LAYERS_METADATA_KEY]: JSON.stringify(this.layers) };
  }
}

/**
 * The per-layer metadata of a `modulora` checkpoint, from the `__metadata__` of its safetensors
 * files (the first that has the key). Missing or invalid JSON is an Error that says so.
 */
export function readModuloraLayersMetadata(metadatas: Iterable<Readonly<Record<string, string>>>): ModuloraLayersMetadata {
  let raw: string | undefined;
  for (const m of metadatas) if ((raw = m[MODULORA_LAYERS_METADATA_KEY]) !== undefined) break;
  if (raw === undefined) throw new Error(`model.safetensors has no '${MODULORA_LAYERS_METADATA_KEY}' metadata (quant_method "modulora" keeps each layer's format there)`);
  try {
    return JSON.parse(raw) as ModuloraLayersMetadata;
  } catch (err) {
    throw new Error(`the '${MODULORA_LAYERS_METADATA_KEY}' metadata is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Of `names`, those of the layer under `prefix` (`{prefix}.{tensor}`, one level down), in order. */
export function moduloraLayerTensorNames(prefix: string, names: Iterable<string>): string[] {
  const out: string[] = [];
  for (const name of names) if (name.startsWith(`${prefix}.`) && !name.slice(prefix.length + 1).includes(".")) out.push(name);
  return out;
}

/**
 * Checks the shape a layer's metadata records against [outFeatures, inFeatures] (a checkpoint
 * reader calls it before reading the layer's tensors); a mismatch is an Error naming the layer.
 */
export function checkModuloraLayerShape(prefix: string, meta: Record<string, unknown>, shape: { outFeatures: number; inFeatures: number }): void {
  if (meta["outFeatures"] !== shape.outFeatures || meta["inFeatures"] !== shape.inFeatures) {
    throw new Error(`layer '${prefix}' is [${String(meta["outFeatures"])}, ${String(meta["inFeatures"])}] in the metadata, expected [${shape.outFeatures}, ${shape.inFeatures}] from the config`);
  }
}

/**
 * Rebuilds the layer under `prefix` from its tensors (keyed by full name, as
 * {@link moduloraLayerTensorNames} lists them; it takes ownership) and its metadata, checking
 * the recorded shape against [outFeatures, inFeatures]. Errors name the layer.
 */
export function decodeModuloraLayer(
  prefix: string, tensors: ReadonlyMap<string, Tensor>, meta: Record<string, unknown>, shape: { outFeatures: number; inFeatures: number },
  plugin?: QuantizerPlugin,
): QuantizedWeight {
  checkModuloraLayerShape(prefix, meta, shape);
  const own: Record<string, Tensor> = {};
  for (const [name, t] of tensors) own[name.slice(prefix.length + 1)] = t;
  try {
    return deserializeQuantizedWeight(own, meta, plugin);
  } catch (err) {
    throw new Error(`layer '${prefix}': ${err instanceof Error ? err.message : String(err)}`);
  }
}
