import { native } from "./native.js";

/**
 * Raw quantized-matmul exports of the addon (see {@link affineMatmul} and {@link codebookMatmul}
 * for the meaning of the arguments). Each op takes the weight's arrays first, in the order of its
 * format, then its own operands.
 */
export interface RawQuant {
  affineMatmul(
    qweight: Int32Array, scales: Uint16Array, zeros: Uint8Array | Uint16Array, zeroKind: AffineZeroKind,
    gIdx: Int32Array | null, bits: number, groupSize: number, groups: number, outFeatures: number, inFeatures: number,
    x: Float32Array, m: number, y: Float32Array, accumulate: boolean,
  ): void;
  affineMatmulInputGrad(
    qweight: Int32Array, scales: Uint16Array, zeros: Uint8Array | Uint16Array, zeroKind: AffineZeroKind,
    gIdx: Int32Array | null, bits: number, groupSize: number, groups: number, outFeatures: number, inFeatures: number,
    dy: Float32Array, m: number, dx: Float32Array, accumulate: boolean,
  ): void;
  affineDequantize(
    qweight: Int32Array, scales: Uint16Array, zeros: Uint8Array | Uint16Array, zeroKind: AffineZeroKind,
    gIdx: Int32Array | null, bits: number, groupSize: number, groups: number, outFeatures: number, inFeatures: number,
    rowStart: number, rowEnd: number, out: Float32Array,
  ): void;
  codebookMatmul(
    codes: Uint8Array, levels: Float32Array, absmax: Float32Array | null, absmaxCodes: Uint8Array | null,
    absmaxScale: Float32Array | null, absmaxOffset: Float32Array | null, bits: number, blockSize: number,
    outFeatures: number, inFeatures: number, x: Float32Array, m: number, y: Float32Array, accumulate: boolean,
  ): void;
  codebookMatmulInputGrad(
    codes: Uint8Array, levels: Float32Array, absmax: Float32Array | null, absmaxCodes: Uint8Array | null,
    absmaxScale: Float32Array | null, absmaxOffset: Float32Array | null, bits: number, blockSize: number,
    outFeatures: number, inFeatures: number, dy: Float32Array, m: number, dx: Float32Array, accumulate: boolean,
  ): void;
  codebookDequantize(
    codes: Uint8Array, levels: Float32Array, absmax: Float32Array | null, absmaxCodes: Uint8Array | null,
    absmaxScale: Float32Array | null, absmaxOffset: Float32Array | null, bits: number, blockSize: number,
    outFeatures: number, inFeatures: number, rowStart: number, rowEnd: number, out: Float32Array,
  ): void;
  quantMatmulInfo(): QuantMatmulInfo;
}

/** How an affine weight stores its zero points: u8 integers (GPTQ/RTN) or f16 reals (HQQ). */
export type AffineZeroKind = "int" | "real";

/**
 * The stored arrays of an `affine` weight W [outFeatures, inFeatures] (GPTQ's layout; see
 * `AffineWeight` in `@modulora/core`): ŵ[j, i] = scale[g, j] · (q − zero[g, j]) in f32, with
 * g = gIdx[i] (act-order) or ⌊i / groupSize⌋.
 */
export interface AffineArrays {
  outFeatures: number;
  inFeatures: number;
  /** 2, 3, 4 or 8. */
  bits: number;
  /** Input columns per group; without `gIdx`, `groupSize × groups` must equal `inFeatures`. */
  groupSize: number;
  groups: number;
  /**
   * i32 [⌈in/32⌉·bits, out]: column j holds row j's codes as a bit stream along `in`, low bits
   * first (code i at bit i·bits; stream word w at `qweight[w·out + j]`; 3-bit codes cross words).
   */
  qweight: Int32Array;
  /** f16 bit patterns [groups, out]. */
  scales: Uint16Array;
  /** "int": u8 zero points; "real": f16 bit patterns. */
  zeroKind: AffineZeroKind;
  /** Shape [groups, out]: a Uint8Array for "int", a Uint16Array (f16 bits) for "real". */
  zeros: Uint8Array | Uint16Array;
  /** Group of each input column (act-order), i32 [in] with values < `groups`; null: ⌊i / groupSize⌋. */
  gIdx?: Int32Array | null;
}

/**
 * The stored arrays of a `codebook` weight W [outFeatures, inFeatures] (NF4 and friends; see
 * `CodebookWeight` in `@modulora/core`): ŵ[j, i] = absmax[j·in/blockSize + ⌊i/blockSize⌋] ·
 * levels[q]. Give either `absmax`, or the double-quantized `absmaxCodes`, `absmaxScale` and
 * `absmaxOffset` (absmax = offset[s] + scale[s]·code in f32, s = ⌊block/256⌋).
 */
export interface CodebookArrays {
  outFeatures: number;
  inFeatures: number;
  /** 1, 2, 3 or 4. */
  bits: number;
  /** Consecutive weights of a row sharing one scale; divides `inFeatures`. */
  blockSize: number;
  /** u8 [out, ⌈in·bits/8⌉]: each row a bit stream of codes along `in`, low bits first. */
  codes: Uint8Array;
  /** f32 [2^bits]: the code book. */
  levels: Float32Array;
  /** f32 [out·in/blockSize], block b of row j at j·(in/blockSize) + b. */
  absmax?: Float32Array | null;
  /** u8 [blocks]: the double-quantized block scales. */
  absmaxCodes?: Uint8Array | null;
  /** f32 [⌈blocks/256⌉]. */
  absmaxScale?: Float32Array | null;
  /** f32 [⌈blocks/256⌉]. */
  absmaxOffset?: Float32Array | null;
}

/** The decode path and blocking the fused kernels use now (they follow `setIsa`). */
export interface QuantMatmulInfo {
  /** Instruction-set path: `"generic"`, `"avx2"` or `"avx512"`. */
  isa: string;
  /** Rows of the micro-kernel's register tile. */
  mr: number;
  /** Columns of the micro-kernel's register tile (width of a decoded panel). */
  nr: number;
  /** Depth of a decoded block. */
  kc: number;
  /** Rows of X packed per block. */
  mc: number;
  /** Columns of Ŵ (or Ŵᵀ) decoded per block and thread. */
  nc: number;
}

function affineArgs(w: AffineArrays) {
  return [
    w.qweight, w.scales, w.zeros, w.zeroKind, w.gIdx ?? null, w.bits, w.groupSize, w.groups, w.outFeatures, w.inFeatures,
  ] as const;
}

function codebookArgs(w: CodebookArrays) {
  return [
    w.codes, w.levels, w.absmax ?? null, w.absmaxCodes ?? null, w.absmaxScale ?? null, w.absmaxOffset ?? null,
    w.bits, w.blockSize, w.outFeatures, w.inFeatures,
  ] as const;
}

/**
 * Forward product with a frozen affine weight, dequantized tile by tile from its codes (never
 * whole): `y[m, out] = x[m, in] · Ŵᵀ`, or `y += x · Ŵᵀ` when `accumulate`. Row-major f32; arrays
 * must hold exactly their shape's element count, and `y` must not overlap `x`. Runs on the native
 * thread pool; the result does not depend on the thread count. Throws a `TypeError`/`RangeError`
 * naming `affineMatmul` and the argument on bad input.
 */
export function affineMatmul(weight: AffineArrays, x: Float32Array, m: number, y: Float32Array, accumulate = false): void {
  native().affineMatmul(...affineArgs(weight), x, m, y, accumulate);
}

/** Input gradient through a frozen affine weight: `dx[m, in] = dy[m, out] · Ŵ` (`+=` when `accumulate`). */
export function affineMatmulInputGrad(
  weight: AffineArrays, dy: Float32Array, m: number, dx: Float32Array, accumulate = false,
): void {
  native().affineMatmulInputGrad(...affineArgs(weight), dy, m, dx, accumulate);
}

/**
 * Rows `[rowStart, rowEnd)` of Ŵ as f32 into `out` (row-major, exactly `(rowEnd − rowStart) ×
 * inFeatures` values): the native counterpart of `AffineWeight.materialize`.
 */
export function affineDequantize(weight: AffineArrays, rowStart: number, rowEnd: number, out: Float32Array): void {
  native().affineDequantize(...affineArgs(weight), rowStart, rowEnd, out);
}

/** Forward product with a frozen codebook weight: `y[m, out] = x[m, in] · Ŵᵀ` (`+=` when `accumulate`). See {@link affineMatmul}. */
export function codebookMatmul(
  weight: CodebookArrays, x: Float32Array, m: number, y: Float32Array, accumulate = false,
): void {
  native().codebookMatmul(...codebookArgs(weight), x, m, y, accumulate);
}

/** Input gradient through a frozen codebook weight: `dx[m, in] = dy[m, out] · Ŵ` (`+=` when `accumulate`). */
export function codebookMatmulInputGrad(
  weight: CodebookArrays, dy: Float32Array, m: number, dx: Float32Array, accumulate = false,
): void {
  native().codebookMatmulInputGrad(...codebookArgs(weight), dy, m, dx, accumulate);
}

/** Rows `[rowStart, rowEnd)` of a codebook weight's Ŵ as f32 (the native `CodebookWeight.materialize`). */
export function codebookDequantize(weight: CodebookArrays, rowStart: number, rowEnd: number, out: Float32Array): void {
  native().codebookDequantize(...codebookArgs(weight), rowStart, rowEnd, out);
}

/** Describes the fused kernels' decode path and blocking (for benchmark reports). */
export function quantMatmulInfo(): QuantMatmulInfo {
  return native().quantMatmulInfo();
}
