// The formats as a table of traits: sizes, checks, dequantization and serialization read this
// table. The kernels that compute with a format are not here: they live in @modulora/tensor's
// per-backend format table (registerQuantFormatKernels), keyed by (format, backend); a format
// with kernels describes its tensors to them through `packed`. Serialization hands out the
// weight's own tensors (on whatever device they live); a checkpoint writer copies them out with
// dataSync (saveSafetensors), and a reader uploads them with tensorFrom (loadSafetensors).
import type { Device, PackedWeight, Tensor } from "@modulora/tensor";
import type { QuantizerPlugin, SerializedWeight } from "../spec.js";
import type { AffineWeight, CodebookWeight, CustomWeight, FormatName, QuantizedWeight } from "./types.js";
import { AFFINE_BITS, affineFromTensors, affinePackedWeight } from "./affine.js";
import { CODEBOOK_BITS, codebookFromTensors, codebookPackedWeight } from "./codebook.js";
import { packedWords } from "./pack.js";

/** Traits of one weight format. */
export interface FormatTraits<W extends QuantizedWeight = QuantizedWeight> {
  readonly name: FormatName;
  /** Bit widths the format can hold (empty: any, decided by the plugin). */
  readonly bits: readonly number[];
  /** Weights per block: the group size (affine), block size (codebook), or a whole row (custom). */
  blockSize(w: W): number;
  /** Stored bytes per block, codes and per-block metadata included (0 for custom). */
  bytesPerBlock(w: W): number;
  /** Bytes held once per weight rather than per block (code book, g_idx). */
  fixedBytes(w: W): number;
  /** Dequantization of rows [r0, r1) into the host array `out` (the weight's `materialize`). */
  dequantize(w: W, r0: number, r1: number, out: Float32Array): void;
  /**
   * Whether this format has kernels in the tensor package's format table (a fused
   * dequantize-matmul on backends that register them; elsewhere: the generic path).
   */
  readonly fused: boolean;
  /** The weight as the tensor package's quantized ops see it (formats with kernels only). */
  packed?(w: W): PackedWeight;
  /**
   * Named tensors (`w`'s own, not copies) and metadata of `w`, without the fields every format
   * shares (format, shape, bits), which the caller adds. `plugin`: the maker of a custom weight.
   */
  serialize(w: W, plugin: QuantizerPlugin | undefined): SerializedWeight;
  /** Rebuilds a weight from {@link FormatTraits.serialize}'s output, taking ownership of the tensors. */
  deserialize(tensors: Record<string, Tensor>, metadata: Record<string, unknown>, plugin: QuantizerPlugin | undefined): W;
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

/** The shape fields every serialized weight carries. */
function shapeOf(meta: Record<string, unknown>): { outFeatures: number; inFeatures: number; bits: number } {
  return { outFeatures: num(meta, "outFeatures"), inFeatures: num(meta, "inFeatures"), bits: num(meta, "bits") };
}

const affineTraits: FormatTraits<AffineWeight> = {
  name: "affine",
  bits: AFFINE_BITS,
  blockSize: (w) => w.groupSize,
  // A group of one output row: groupSize codes + an f16 scale + a zero point (u8 or f16).
  // (Padding of `in` to a multiple of 32 codes is counted in fixedBytes.)
  bytesPerBlock: (w) => (w.groupSize * w.bits) / 8 + 2 + (w.zeroKind === "int" ? 1 : 2),
  fixedBytes: (w) => (packedWords(w.inFeatures, w.bits) * 4 - (w.inFeatures * w.bits) / 8) * w.outFeatures + (w.gIdx ? 4 * w.inFeatures : 0),
  dequantize: (w, r0, r1, out) => w.materialize(r0, r1, out),
  fused: true,
  packed: affinePackedWeight,
  serialize: (w) => ({
    tensors: { qweight: w.qweight, scales: w.scales, zeros: w.zeros, ...(w.gIdx ? { g_idx: w.gIdx } : {}) },
    metadata: { groupSize: w.groupSize, symmetric: w.symmetric, zeroKind: w.zeroKind },
  }),
  deserialize: (tensors, meta) => affineFromTensors({
    ...shapeOf(meta), groupSize: num(meta, "groupSize"), symmetric: meta["symmetric"] === true,
    qweight: need(tensors, "qweight"), scales: need(tensors, "scales"), zeros: need(tensors, "zeros"), gIdx: tensors["g_idx"] ?? null,
  }),
};

const codebookTraits: FormatTraits<CodebookWeight> = {
  name: "codebook",
  bits: CODEBOOK_BITS,
  blockSize: (w) => w.blockSize,
  bytesPerBlock: (w) => (w.blockSize * w.bits) / 8 + (w.absmax ? 4 : 1),
  fixedBytes: (w) => {
    const stride = Math.ceil((w.inFeatures * w.bits) / 8);
    const padding = (stride - (w.inFeatures * w.bits) / 8) * w.outFeatures;
    const supers = w.absmaxScale ? w.absmaxScale.size * 8 : 0;
    return 4 * (1 << w.bits) + padding + supers;
  },
  dequantize: (w, r0, r1, out) => w.materialize(r0, r1, out),
  fused: true,
  packed: codebookPackedWeight,
  serialize: (w) => ({
    tensors: {
      codes: w.codes, levels: w.levels, ...(w.absmax ? { absmax: w.absmax } : {}),
      ...(w.absmaxCodes ? { absmax_codes: w.absmaxCodes, absmax_scale: w.absmaxScale!, absmax_offset: w.absmaxOffset! } : {}),
    },
    metadata: { blockSize: w.blockSize },
  }),
  deserialize: (tensors, meta) => codebookFromTensors({
    ...shapeOf(meta), blockSize: num(meta, "blockSize"),
    codes: need(tensors, "codes"), levels: need(tensors, "levels"), absmax: tensors["absmax"] ?? null,
    absmaxCodes: tensors["absmax_codes"] ?? null, absmaxScale: tensors["absmax_scale"] ?? null, absmaxOffset: tensors["absmax_offset"] ?? null,
  }),
};

const customTraits: FormatTraits<CustomWeight> = {
  name: "custom",
  bits: [],
  blockSize: (w) => w.inFeatures,
  bytesPerBlock: () => 0,
  fixedBytes: (w) => w.storageBytes(),
  dequantize: (w, r0, r1, out) => w.materialize(r0, r1, out),
  fused: false,
  // A custom weight is its plugin's to write and read; the plugin's name goes into the metadata.
  serialize: (w, plugin) => {
    if (!plugin || plugin.name !== w.plugin) {
      throw new Error(`cannot serialize a custom-format weight made by plugin '${w.plugin}' without that plugin${plugin ? ` (got '${plugin.name}')` : ""}`);
    }
    if (!plugin.serialize) throw new Error(`plugin '${plugin.name}' makes custom-format weights but has no serialize()`);
    const s = plugin.serialize(w);
    return { tensors: s.tensors, metadata: { ...s.metadata, plugin: plugin.name } };
  },
  deserialize: (tensors, meta, plugin) => {
    const name = meta["plugin"];
    if (!plugin || plugin.name !== name) throw new Error(`this weight was made by quantizer plugin '${String(name)}'; load that plugin (--plugin) to read it`);
    if (!plugin.deserialize) throw new Error(`plugin '${plugin.name}' has no deserialize()`);
    return plugin.deserialize(tensors, meta) as CustomWeight;
  },
};

/** The trait table, by format name. */
export const FORMAT_TRAITS: Readonly<Record<FormatName, FormatTraits<any>>> = {
  affine: affineTraits,
  codebook: codebookTraits,
  custom: customTraits,
};

/** Traits of `w`'s format; an unknown format is an error listing the known ones. */
export function formatTraits(w: QuantizedWeight): FormatTraits<QuantizedWeight> {
  const t = FORMAT_TRAITS[w.format as FormatName];
  if (!t) throw new TypeError(`unknown weight format '${String(w.format)}'; known: ${Object.keys(FORMAT_TRAITS).join(", ")}`);
  return t as FormatTraits<QuantizedWeight>;
}

/**
 * Storage bytes predicted from the traits: blocks × bytes per block + fixed bytes. The
 * conformance suite checks that it equals what the weight actually holds.
 */
export function predictedStorageBytes(w: QuantizedWeight): number {
  const t = formatTraits(w);
  const blocks = (w.outFeatures * w.inFeatures) / t.blockSize(w);
  return blocks * t.bytesPerBlock(w) + t.fixedBytes(w);
}

/** `w` as a packed weight for the tensor package's quantized ops, or null where its format has no kernels (custom). */
export function packedWeightOf(w: QuantizedWeight): PackedWeight | null {
  const t = formatTraits(w);
  return t.packed ? t.packed(w) : null;
}

/**
 * The device `w`'s packed tensors live on, or null for a custom weight (which materializes on
 * the host and so serves any device).
 */
export function weightDevice(w: QuantizedWeight): Device | null {
  return packedWeightOf(w)?.device ?? null;
}
