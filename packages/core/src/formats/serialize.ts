// Serialization of quantized weights to named tensors + JSON metadata. Known formats are
// serialized here (affine in the GPTQ tensor names); custom ones through their plugin.
import type { Tensor } from "@modulora/tensor";
import type { QuantizerPlugin, SerializedWeight } from "../spec.js";
import { affineFromTensors } from "./affine.js";
import { codebookFromTensors } from "./codebook.js";
import type { QuantizedWeight } from "./types.js";

/** Tensors and metadata of `w`. The tensors are `w`'s own (not copies): do not dispose them. */
export function serializeQuantizedWeight(w: QuantizedWeight, plugin?: QuantizerPlugin): SerializedWeight {
  const base = { format: w.format, outFeatures: w.outFeatures, inFeatures: w.inFeatures, bits: w.bits };
  if (w.format === "affine") {
    const tensors: Record<string, Tensor> = { qweight: w.qweight, scales: w.scales, zeros: w.zeros };
    if (w.gIdx) tensors.g_idx = w.gIdx;
    return { tensors, metadata: { ...base, groupSize: w.groupSize, symmetric: w.symmetric, zeroKind: w.zeroKind } };
  }
  if (w.format === "codebook") {
    const tensors: Record<string, Tensor> = { codes: w.codes, levels: w.levels };
    if (w.absmax) tensors.absmax = w.absmax;
    if (w.absmaxCodes) Object.assign(tensors, { absmax_codes: w.absmaxCodes, absmax_scale: w.absmaxScale!, absmax_offset: w.absmaxOffset! });
    return { tensors, metadata: { ...base, blockSize: w.blockSize } };
  }
  if (!plugin || plugin.name !== w.plugin) {
    throw new Error(`cannot serialize a custom-format weight made by plugin '${w.plugin}' without that plugin${plugin ? ` (got '${plugin.name}')` : ""}`);
  }
  if (!plugin.serialize) throw new Error(`plugin '${plugin.name}' makes custom-format weights but has no serialize()`);
  const s = plugin.serialize(w);
  return { tensors: s.tensors, metadata: { ...s.metadata, format: "custom", plugin: plugin.name, outFeatures: w.outFeatures, inFeatures: w.inFeatures, bits: w.bits } };
}

function num(meta: Record<string, unknown>, key: string): number {
  const v = meta[key];
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`quantized weight metadata: '${key}' must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function need(tensors: Record<string, Tensor>, key: string): Tensor {
  const t = tensors[key];
  if (!t) throw new Error(`quantized weight: tensor '${key}' is missing (have: ${Object.keys(tensors).join(", ") || "none"})`);
  return t;
}

/** Rebuilds a weight from {@link serializeQuantizedWeight}'s output; it takes ownership of the tensors. */
export function deserializeQuantizedWeight(tensors: Record<string, Tensor>, metadata: Record<string, unknown>, plugin?: QuantizerPlugin): QuantizedWeight {
  const format = metadata.format;
  if (format === "affine") {
    return affineFromTensors({
      outFeatures: num(metadata, "outFeatures"), inFeatures: num(metadata, "inFeatures"), bits: num(metadata, "bits"),
      groupSize: num(metadata, "groupSize"), symmetric: metadata.symmetric === true,
      qweight: need(tensors, "qweight"), scales: need(tensors, "scales"), zeros: need(tensors, "zeros"), gIdx: tensors.g_idx ?? null,
    });
  }
  if (format === "codebook") {
    return codebookFromTensors({
      outFeatures: num(metadata, "outFeatures"), inFeatures: num(metadata, "inFeatures"), bits: num(metadata, "bits"), blockSize: num(metadata, "blockSize"),
      codes: need(tensors, "codes"), levels: need(tensors, "levels"), absmax: tensors.absmax ?? null,
      absmaxCodes: tensors.absmax_codes ?? null, absmaxScale: tensors.absmax_scale ?? null, absmaxOffset: tensors.absmax_offset ?? null,
    });
  }
  if (format === "custom") {
    const name = metadata.plugin;
    if (!plugin || plugin.name !== name) throw new Error(`this weight was made by quantizer plugin '${String(name)}'; load that plugin (--plugin) to read it`);
    if (!plugin.deserialize) throw new Error(`plugin '${plugin.name}' has no deserialize()`);
    return plugin.deserialize(tensors, metadata);
  }
  throw new Error(`unknown quantized weight format ${JSON.stringify(format)}; known: affine, codebook, custom`);
}
