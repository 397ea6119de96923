import type { Tensor } from "@modulora/tensor";

/** The weight formats core knows. `custom` covers every other layout. */
export type FormatName = "affine" | "codebook" | "custom";

/** What every quantized weight provides, whatever its format. W is [outFeatures, inFeatures]. */
export interface QuantizedWeightBase {
  readonly format: FormatName;
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** Bits per code. */
  readonly bits: number;
  /** Writes rows [rowStart, rowEnd) of Ŵ as f32 into `out` (row-major, `(rowEnd − rowStart) × inFeatures`). */
  materialize(rowStart: number, rowEnd: number, out: Float32Array): void;
  /** Bytes of everything the weight holds: codes and all metadata (scales, zeros, tables, indices). */
  storageBytes(): number;
  /** `storageBytes() × 8 / (outFeatures × inFeatures)`: the true storage cost, metadata included. */
  bitsPerWeight(): number;
  /** Frees the weight's storage. */
  dispose(): void;
}

/**
 * `affine`: ŵ = scale · (q − zero) per group of input columns, GPTQ's representation.
 *
 * Layout (the GPTQ tensor layout, so checkpoints need no repacking):
 * - `qweight` i32 [⌈in/32⌉·bits, out]: column j holds the codes of W[j, :] as a bit stream along
 *   `in`, low bits first: code i sits at bit i·bits of the stream, and stream word w is
 *   `qweight[w, j]`. For bits = 3 this packs 32 codes in 3 words, codes 10 and 21 crossing word
 *   boundaries. `in` is padded to a multiple of 32 with zero codes.
 * - `scales` f16 [groups, out] (computed in f32, rounded to f16 when the weight is finalised).
 * - `zeros`: integer zero points u8 [groups, out] (`zeroKind = "int"`, GPTQ/RTN), or real-valued
 *   f16 [groups, out] (`zeroKind = "real"`, HQQ).
 * - `gIdx` i32 [in] or null: the group of each input column (act-order); null means ⌊i / groupSize⌋.
 */
export interface AffineWeight extends QuantizedWeightBase {
  readonly format: "affine";
  /** Input columns per group (`inFeatures` for one group per row). */
  readonly groupSize: number;
  readonly groups: number;
  readonly symmetric: boolean;
  readonly zeroKind: "int" | "real";
  readonly qweight: Tensor;
  readonly scales: Tensor;
  readonly zeros: Tensor;
  readonly gIdx: Tensor | null;
}

/**
 * `codebook`: ŵ = absmax[block] · levels[q] for blocks of `blockSize` consecutive weights of a
 * row (NF4 and friends).
 *
 * Layout: `codes` u8 [out, ⌈in·bits/8⌉], each row a bit stream of `bits`-bit codes along `in`,
 * low bits first; `levels` f32 [2^bits] (the code book, typically in [−1, 1]); the per-block
 * scale either as `absmax` f32 [out · in/blockSize], or double-quantized: `absmaxCodes` u8
 * [blocks] with `absmaxScale` and `absmaxOffset` f32 [⌈blocks/256⌉] per super-block of 256
 * blocks (absmax ≈ offset + scale · code).
 */
export interface CodebookWeight extends QuantizedWeightBase {
  readonly format: "codebook";
  readonly blockSize: number;
  readonly codes: Tensor;
  readonly levels: Tensor;
  readonly absmax: Tensor | null;
  readonly absmaxCodes: Tensor | null;
  readonly absmaxScale: Tensor | null;
  readonly absmaxOffset: Tensor | null;
}

/**
 * `custom`: any layout. The object itself provides `materialize`; the plugin that made it
 * (`plugin`) provides `serialize`/`deserialize`. Trains through the generic path.
 */
export interface CustomWeight extends QuantizedWeightBase {
  readonly format: "custom";
  /** Name of the plugin that made it (and can serialize it). */
  readonly plugin: string;
}

/** A frozen quantized weight matrix in one of the formats. */
export type QuantizedWeight = AffineWeight | CodebookWeight | CustomWeight;
