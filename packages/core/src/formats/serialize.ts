// Serialization of quantized weights to named tensors + JSON metadata. What each format stores is
// its entry in the trait table (traits.ts); custom weights are written and read by their plugin.
import type { Tensor } from "@modulora/tensor";
import type { QuantizerPlugin, SerializedWeight } from "../spec.js";
import { FORMAT_TRAITS, formatTraits } from "./traits.js";
import type { FormatName, QuantizedWeight } from "./types.js";

/** Tensors and metadata of `w`. The tensors are `w`'s own (not copies): do not dispose them. */
export function serializeQuantizedWeight(w: QuantizedWeight, plugin?: QuantizerPlugin): SerializedWeight {
  const s = formatTraits(w).serialize(w, plugin);
  // The shared fields lead and win over a plugin's own metadata keys of the same names.
  const base = { format: w.format, outFeatures: w.outFeatures, inFeatures: w.inFeatures, bits: w.bits };
  return { tensors: s.tensors, metadata: { ...base, ...s.metadata, ...base } };
}

/** Rebuilds a weight from {@link serializeQuantizedWeight}'s output; it takes ownership of the tensors. */
export function deserializeQuantizedWeight(tensors: Record<string, Tensor>, metadata: Record<string, unknown>, plugin?: QuantizerPlugin): QuantizedWeight {
  const format = metadata["format"];
  const traits = typeof format === "string" && Object.hasOwn(FORMAT_TRAITS, format) ? FORMAT_TRAITS[format as FormatName] : undefined;
  if (!traits) throw new Error(`unknown quantized weight format ${JSON.stringify(format)}; known: ${Object.keys(FORMAT_TRAITS).join(", ")}`);
  return traits.deserialize(tensors, metadata, plugin);
}
