// The formats as a table of traits: sizes, checks and the reference dequantization read this
// table; nothing else switches on the format name.
import type { AffineWeight, CodebookWeight, FormatName, QuantizedWeight } from "./types.js";
import { AFFINE_BITS } from "./affine.js";
import { CODEBOOK_BITS } from "./codebook.js";
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
  /** Reference dequantization of rows [r0, r1) into `out`. */
  dequantize(w: W, r0: number, r1: number, out: Float32Array): void;
  /** Whether a fused native dequantize-matmul kernel exists for this format (else: generic path). */
  readonly fused: boolean;
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
};

const customTraits: FormatTraits = {
  name: "custom",
  bits: [],
  blockSize: (w) => w.inFeatures,
  bytesPerBlock: () => 0,
  fixedBytes: (w) => w.storageBytes(),
  dequantize: (w, r0, r1, out) => w.materialize(r0, r1, out),
  fused: false,
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
