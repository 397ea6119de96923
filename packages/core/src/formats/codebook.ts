import { hasQuantFormatKernels, keep, packedWeight, quantDequantize, tensorFrom, type AnyTypedArray, type Device, type DType, type PackedWeight, type Tensor } from "@modulora/tensor";
import { packRowsBytes, unpackRowByteCode } from "./pack.js";
import type { CodebookWeight } from "./types.js";
import { checkRows } from "./rows.js";

/** Bit widths of the `codebook` format. */
export const CODEBOOK_BITS = [1, 2, 3, 4] as const;
/** Blocks per super-block when the per-block absmax is itself quantized. */
export const ABSMAX_SUPERBLOCK = 256;

/** What a plugin hands to {@link createCodebookWeight}. */
export interface CodebookParts {
  outFeatures: number;
  inFeatures: number;
  bits: number;
  /** Consecutive weights of a row sharing one absmax; must divide `inFeatures`. */
  blockSize: number;
  /** Codes in [0, 2^bits), row-major [out, in]. */
  codes: Uint8Array;
  /** The 2^bits levels. */
  levels: Float32Array;
  /** Per-block scale, [out · in/blockSize] (block b of row j at j · in/blockSize + b). */
  absmax: Float32Array;
  /** Quantize `absmax` to 8 bits per block with an f32 scale and offset per 256 blocks. */
  doubleQuant?: boolean;
  /** Device the packed tensors are uploaded to, once (default `cpu`). */
  device?: Device;
}

function fail(msg: string): never {
  throw new RangeError(`codebook weight: ${msg}`);
}

/** Validates and packs a codebook weight (see {@link CodebookWeight}). */
export function createCodebookWeight(p: CodebookParts): CodebookWeight {
  const { outFeatures: out, inFeatures: inF, bits, blockSize } = p;
  if (!Number.isInteger(out) || out < 1 || !Number.isInteger(inF) || inF < 1) fail(`shape [${out}, ${inF}] must be positive integers`);
  if (!(CODEBOOK_BITS as readonly number[]).includes(bits)) fail(`bits must be one of ${CODEBOOK_BITS.join(", ")}, got ${bits}`);
  if (!Number.isInteger(blockSize) || blockSize < 1 || inF % blockSize !== 0) fail(`block size ${blockSize} does not divide in = ${inF}`);
  if (p.levels.length !== 1 << bits) fail(`levels hold ${p.levels.length} values, expected 2^${bits} = ${1 << bits}`);
  const blocks = (out * inF) / blockSize;
  if (p.codes.length !== out * inF) fail(`codes hold ${p.codes.length} values, expected out × in = ${out * inF}`);
  if (p.absmax.length !== blocks) fail(`absmax holds ${p.absmax.length} values, expected ${blocks} blocks`);
  for (let i = 0; i < p.codes.length; i++) if (p.codes[i]! >= 1 << bits) fail(`code ${p.codes[i]} at ${i} does not fit in ${bits} bits`);
  for (const v of p.levels) if (!Number.isFinite(v)) fail("levels must be finite");
  for (const v of p.absmax) if (!Number.isFinite(v)) fail("absmax values must be finite");
  const stride = Math.ceil((inF * bits) / 8);
  const device = p.device ?? "cpu";
  const up = (a: AnyTypedArray, shape: number[], dtype: DType) => keep(tensorFrom(a, { shape, dtype, device }));
  const codes = up(packRowsBytes(p.codes, out, inF, bits), [out, stride], "u8");
  const levels = up(Float32Array.from(p.levels), [1 << bits], "f32");
  if (!p.doubleQuant) {
    const absmax = up(Float32Array.from(p.absmax), [blocks], "f32");
    return new CodebookWeightImpl(out, inF, bits, blockSize, codes, levels, absmax, null, null, null);
  }
  const supers = Math.ceil(blocks / ABSMAX_SUPERBLOCK);
  const q = new Uint8Array(blocks);
  const scale = new Float32Array(supers);
  const offset = new Float32Array(supers);
  for (let s = 0; s < supers; s++) {
    const a = s * ABSMAX_SUPERBLOCK;
    const b = Math.min(blocks, a + ABSMAX_SUPERBLOCK);
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = a; i < b; i++) {
      lo = Math.min(lo, p.absmax[i]!);
      hi = Math.max(hi, p.absmax[i]!);
    }
    offset[s] = lo;
    scale[s] = hi > lo ? (hi - lo) / 255 : 0;
    for (let i = a; i < b; i++) q[i] = scale[s]! > 0 ? Math.min(255, Math.max(0, Math.round((p.absmax[i]! - lo) / scale[s]!))) : 0;
  }
  return new CodebookWeightImpl(
    out, inF, bits, blockSize, codes, levels, null,
    up(q, [blocks], "u8"),
    up(scale, [supers], "f32"),
    up(offset, [supers], "f32"),
  );
}

class CodebookWeightImpl implements CodebookWeight {
  readonly format = "codebook" as const;
  constructor(
    readonly outFeatures: number,
    readonly inFeatures: number,
    readonly bits: number,
    readonly blockSize: number,
    readonly codes: Tensor,
    readonly levels: Tensor,
    readonly absmax: Tensor | null,
    readonly absmaxCodes: Tensor | null,
    readonly absmaxScale: Tensor | null,
    readonly absmaxOffset: Tensor | null,
  ) {}

  /**
   * Rows [rowStart, rowEnd) of Ŵ into `out`: by the format's dequantize kernel on the weight's
   * device and one copy out; where the device has none, by {@link codebookReferenceDequantize}.
   */
  materialize(rowStart: number, rowEnd: number, out: Float32Array): void {
    checkRows(this, rowStart, rowEnd, out);
    if (!hasQuantFormatKernels("codebook", this.codes.device)) {
      codebookReferenceDequantize(this, rowStart, rowEnd, out);
      return;
    }
    const block = quantDequantize(codebookPackedWeight(this), rowStart, rowEnd);
    try {
      out.set(block.dataSync());
    } finally {
      block.dispose();
    }
  }

  storageBytes(): number {
    return [this.codes, this.levels, this.absmax, this.absmaxCodes, this.absmaxScale, this.absmaxOffset].reduce(
      (s, t) => s + (t ? t.size * (t.dtype === "u8" ? 1 : 4) : 0),
      0,
    );
  }

  bitsPerWeight(): number {
    return (this.storageBytes() * 8) / (this.outFeatures * this.inFeatures);
  }

  dispose(): void {
    for (const t of [this.codes, this.levels, this.absmax, this.absmaxCodes, this.absmaxScale, this.absmaxOffset]) t?.dispose();
  }
}

/** Wraps stored tensors (e.g. read from a checkpoint) as a codebook weight, after checking them. */
export function codebookFromTensors(t: {
  outFeatures: number; inFeatures: number; bits: number; blockSize: number;
  codes: Tensor; levels: Tensor; absmax: Tensor | null; absmaxCodes: Tensor | null; absmaxScale: Tensor | null; absmaxOffset: Tensor | null;
}): CodebookWeight {
  const { outFeatures: out, inFeatures: inF, bits, blockSize } = t;
  if (!(CODEBOOK_BITS as readonly number[]).includes(bits)) fail(`bits must be one of ${CODEBOOK_BITS.join(", ")}, got ${bits}`);
  if (!Number.isInteger(blockSize) || blockSize < 1 || inF % blockSize !== 0) fail(`block size ${blockSize} does not divide in = ${inF}`);
  const stride = Math.ceil((inF * bits) / 8);
  const blocks = (out * inF) / blockSize;
  const eq = (a: readonly number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
  if (t.codes.dtype !== "u8" || !eq(t.codes.shape, [out, stride])) fail(`codes must be u8 [${out}, ${stride}]`);
  if (t.levels.dtype !== "f32" || !eq(t.levels.shape, [1 << bits])) fail(`levels must be f32 [${1 << bits}]`);
  if (t.absmax) {
    if (t.absmax.dtype !== "f32" || !eq(t.absmax.shape, [blocks])) fail(`absmax must be f32 [${blocks}]`);
  } else {
    const supers = Math.ceil(blocks / ABSMAX_SUPERBLOCK);
    if (!t.absmaxCodes || t.absmaxCodes.dtype !== "u8" || !eq(t.absmaxCodes.shape, [blocks])) fail(`absmax_codes must be u8 [${blocks}] when absmax is absent`);
    for (const s of [t.absmaxScale, t.absmaxOffset]) if (!s || s.dtype !== "f32" || !eq(s.shape, [supers])) fail(`absmax_scale and absmax_offset must be f32 [${supers}]`);
  }
  for (const x of [t.levels, t.absmax, t.absmaxCodes, t.absmaxScale, t.absmaxOffset]) {
    if (x && x.device !== t.codes.device) fail(`all tensors must be on one device: codes are on '${t.codes.device}', another on '${x.device}'`);
  }
  return new CodebookWeightImpl(out, inF, bits, blockSize, t.codes, t.levels, t.absmax, t.absmaxCodes, t.absmaxScale, t.absmaxOffset);
}

const packedCache = new WeakMap<CodebookWeight, PackedWeight>();

/**
 * The weight as the quantized ops of @modulora/tensor see it: tensors `codes`, `levels`, and
 * `absmax` or `absmaxCodes`/`absmaxScale`/`absmaxOffset` (the others null); param `blockSize`.
 */
export function codebookPackedWeight(w: CodebookWeight): PackedWeight {
  let p = packedCache.get(w);
  if (!p) {
    p = packedWeight({
      format: "codebook", outFeatures: w.outFeatures, inFeatures: w.inFeatures, bits: w.bits,
      tensors: { codes: w.codes, levels: w.levels, absmax: w.absmax, absmaxCodes: w.absmaxCodes, absmaxScale: w.absmaxScale, absmaxOffset: w.absmaxOffset },
      params: { blockSize: w.blockSize },
    });
    packedCache.set(w, p);
  }
  return p;
}

/**
 * Plain TypeScript reference dequantization of rows [rowStart, rowEnd) (the kernels are checked
 * against it): ŵ = absmax[block] · levels[q]. Copies the packed tensors out (one read each).
 */
export function codebookReferenceDequantize(w: CodebookWeight, rowStart: number, rowEnd: number, out: Float32Array): void {
  checkRows(w, rowStart, rowEnd, out);
  const inF = w.inFeatures;
  const codes = w.codes.dataSync() as Uint8Array;
  const levels = w.levels.dataSync() as Float32Array;
  const am = w.absmax ? (w.absmax.dataSync() as Float32Array) : null;
  const aq = w.absmaxCodes ? (w.absmaxCodes.dataSync() as Uint8Array) : null;
  const sc = w.absmaxScale ? (w.absmaxScale.dataSync() as Float32Array) : null;
  const off = w.absmaxOffset ? (w.absmaxOffset.dataSync() as Float32Array) : null;
  const blockScale = (b: number) => {
    if (am) return am[b]!;
    const s = Math.floor(b / ABSMAX_SUPERBLOCK);
    return Math.fround(off![s]! + Math.fround(sc![s]! * aq![b]!));
  };
  const stride = w.codes.shape[1]!;
  const perRow = inF / w.blockSize;
  for (let j = rowStart; j < rowEnd; j++) {
    for (let i = 0; i < inF; i++) {
      const scale = blockScale(j * perRow + Math.floor(i / w.blockSize));
      out[(j - rowStart) * inF + i] = scale * levels[unpackRowByteCode(codes, stride, j, i, w.bits)]!;
    }
  }
}
