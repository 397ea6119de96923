import { hasQuantFormatKernels, keep, packedWeight, quantDequantize, tensorFrom, type Device, type PackedWeight, type Tensor } from "@modulora/tensor";
import { f16Table } from "./f16.js";
import { packColumns, packedWords, unpackColumnCode } from "./pack.js";
import type { AffineWeight } from "./types.js";
import { checkRows } from "./rows.js";

/** Bit widths of the `affine` format. */
export const AFFINE_BITS = [2, 3, 4, 8] as const;

/** What a plugin hands to {@link createAffineWeight}: unpacked codes and per-group parameters. */
export interface AffineParts {
  outFeatures: number;
  inFeatures: number;
  bits: number;
  /** Input columns per group; `inFeatures` (or "row") for one group per row. */
  groupSize: number | "row";
  /** Codes q in [0, 2^bits), row-major [out, in]. */
  codes: Uint8Array;
  /** Scales in f32, [out, groups] row-major (stored rounded to f16). */
  scales: Float32Array;
  /** Zero points, [out, groups]: integers (Uint8Array, `zeroKind` "int") or real values (Float32Array, "real"). */
  zeros: Uint8Array | Float32Array;
  symmetric?: boolean;
  /** Group of each input column (act-order), Int32Array [in]; default ⌊i / groupSize⌋. */
  gIdx?: Int32Array | null;
  /** Device the packed tensors are uploaded to, once (default `cpu`). */
  device?: Device;
}

function fail(msg: string): never {
  throw new RangeError(`affine weight: ${msg}`);
}

/** Transposes a row-major [rows, cols] array into [cols, rows]. */
function transpose<T extends Float32Array | Uint8Array | Uint16Array>(a: T, rows: number, cols: number, make: (n: number) => T): T {
  const out = make(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

/**
 * Validates and packs an affine weight into its stored layout (see {@link AffineWeight}): codes
 * bit-packed along `in` in GPTQ's layout, scales rounded to f16, zeros as u8 or f16.
 */
export function createAffineWeight(p: AffineParts): AffineWeight {
  const { outFeatures: out, inFeatures: inF, bits } = p;
  if (!Number.isInteger(out) || out < 1 || !Number.isInteger(inF) || inF < 1) fail(`shape [${out}, ${inF}] must be positive integers`);
  if (!(AFFINE_BITS as readonly number[]).includes(bits)) fail(`bits must be one of ${AFFINE_BITS.join(", ")}, got ${bits}`);
  const groupSize = p.groupSize === "row" ? inF : p.groupSize;
  if (!Number.isInteger(groupSize) || groupSize < 1) fail(`group size must be a positive integer or "row", got ${p.groupSize}`);
  let groups: number;
  if (p.gIdx) {
    if (p.gIdx.length !== inF) fail(`g_idx has ${p.gIdx.length} entries, expected in = ${inF}`);
    groups = 0;
    for (const g of p.gIdx) {
      if (!Number.isInteger(g) || g < 0) fail(`g_idx holds an invalid group ${g}`);
      groups = Math.max(groups, g + 1);
    }
  } else {
    if (inF % groupSize !== 0) fail(`group size ${groupSize} does not divide in = ${inF}`);
    groups = inF / groupSize;
  }
  if (p.codes.length !== out * inF) fail(`codes hold ${p.codes.length} values, expected out × in = ${out * inF}`);
  if (p.scales.length !== out * groups) fail(`scales hold ${p.scales.length} values, expected out × groups = ${out * groups}`);
  if (p.zeros.length !== out * groups) fail(`zeros hold ${p.zeros.length} values, expected out × groups = ${out * groups}`);
  const maxCode = (1 << bits) - 1;
  for (let i = 0; i < p.codes.length; i++) if (p.codes[i]! > maxCode) fail(`code ${p.codes[i]} at ${i} does not fit in ${bits} bits`);
  for (let i = 0; i < p.scales.length; i++) if (!Number.isFinite(p.scales[i]!)) fail(`scale ${p.scales[i]} at ${i} is not finite`);
  const zeroKind = p.zeros instanceof Uint8Array ? "int" : "real";
  if (zeroKind === "real") for (let i = 0; i < p.zeros.length; i++) if (!Number.isFinite(p.zeros[i]!)) fail(`zero point ${p.zeros[i]} at ${i} is not finite`);

  const words = packedWords(inF, bits);
  const device = p.device ?? "cpu";
  // One upload per tensor; scales (and real zeros) are rounded to f16 by the device's cast kernel.
  const qweight = keep(tensorFrom(packColumns(p.codes, out, inF, bits), { shape: [words, out], dtype: "i32", device }));
  const scales = keep(tensorFrom(transpose(p.scales, out, groups, (n) => new Float32Array(n)), { shape: [groups, out], dtype: "f16", device }));
  const zeros =
    zeroKind === "int"
      ? keep(tensorFrom(transpose(p.zeros as Uint8Array, out, groups, (n) => new Uint8Array(n)), { shape: [groups, out], dtype: "u8", device }))
      : keep(tensorFrom(transpose(p.zeros as Float32Array, out, groups, (n) => new Float32Array(n)), { shape: [groups, out], dtype: "f16", device }));
  const gIdx = p.gIdx ? keep(tensorFrom(Int32Array.from(p.gIdx), { shape: [inF], dtype: "i32", device })) : null;
  return new AffineWeightImpl(out, inF, bits, groupSize, groups, p.symmetric ?? false, zeroKind, qweight, scales, zeros, gIdx);
}

/** Wraps stored tensors (e.g. read from a checkpoint) as an affine weight, after checking their shapes. */
export function affineFromTensors(t: {
  outFeatures: number; inFeatures: number; bits: number; groupSize: number; symmetric?: boolean;
  qweight: Tensor; scales: Tensor; zeros: Tensor; gIdx?: Tensor | null;
}): AffineWeight {
  const { outFeatures: out, inFeatures: inF, bits } = t;
  if (!(AFFINE_BITS as readonly number[]).includes(bits)) fail(`bits must be one of ${AFFINE_BITS.join(", ")}, got ${bits}`);
  const words = packedWords(inF, bits);
  const eq = (a: readonly number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
  if (t.qweight.dtype !== "i32" || !eq(t.qweight.shape, [words, out])) fail(`qweight must be i32 [${words}, ${out}], got ${t.qweight.dtype} [${t.qweight.shape}]`);
  const groups = t.scales.shape[0]!;
  if (t.scales.dtype !== "f16" || !eq(t.scales.shape, [groups, out])) fail(`scales must be f16 [groups, ${out}], got ${t.scales.dtype} [${t.scales.shape}]`);
  if (!eq(t.zeros.shape, [groups, out]) || (t.zeros.dtype !== "u8" && t.zeros.dtype !== "f16")) fail(`zeros must be u8 or f16 [${groups}, ${out}], got ${t.zeros.dtype} [${t.zeros.shape}]`);
  if (t.gIdx && (t.gIdx.dtype !== "i32" || !eq(t.gIdx.shape, [inF]))) fail(`g_idx must be i32 [${inF}]`);
  if (!t.gIdx && groups * t.groupSize !== inF) fail(`${groups} groups of ${t.groupSize} do not cover in = ${inF}`);
  for (const x of [t.scales, t.zeros, t.gIdx]) if (x && x.device !== t.qweight.device) fail(`all tensors must be on one device: qweight is on '${t.qweight.device}', another on '${x.device}'`);
  return new AffineWeightImpl(out, inF, bits, t.groupSize, groups, t.symmetric ?? false, t.zeros.dtype === "u8" ? "int" : "real", t.qweight, t.scales, t.zeros, t.gIdx ?? null);
}

class AffineWeightImpl implements AffineWeight {
  readonly format = "affine" as const;
  constructor(
    readonly outFeatures: number,
    readonly inFeatures: number,
    readonly bits: number,
    readonly groupSize: number,
    readonly groups: number,
    readonly symmetric: boolean,
    readonly zeroKind: "int" | "real",
    readonly qweight: Tensor,
    readonly scales: Tensor,
    readonly zeros: Tensor,
    readonly gIdx: Tensor | null,
  ) {}

  /**
   * Rows [rowStart, rowEnd) of Ŵ into `out`: by the format's dequantize kernel on the weight's
   * device and one copy out; where the device has none, by {@link affineReferenceDequantize}.
   */
  materialize(rowStart: number, rowEnd: number, out: Float32Array): void {
    checkRows(this, rowStart, rowEnd, out);
    if (!hasQuantFormatKernels("affine", this.qweight.device)) {
      affineReferenceDequantize(this, rowStart, rowEnd, out);
      return;
    }
    const block = quantDequantize(affinePackedWeight(this), rowStart, rowEnd);
    try {
      out.set(block.dataSync());
    } finally {
      block.dispose();
    }
  }

  storageBytes(): number {
    return [this.qweight, this.scales, this.zeros, this.gIdx].reduce((s, t) => s + (t ? t.size * (t.dtype === "u8" ? 1 : t.dtype === "f16" ? 2 : 4) : 0), 0);
  }

  bitsPerWeight(): number {
    return (this.storageBytes() * 8) / (this.outFeatures * this.inFeatures);
  }

  dispose(): void {
    for (const t of [this.qweight, this.scales, this.zeros, this.gIdx]) t?.dispose();
  }
}

const packedCache = new WeakMap<AffineWeight, PackedWeight>();

/**
 * The weight as the quantized ops of @modulora/tensor see it: tensors `qweight`, `scales`,
 * `zeros`, `gIdx` (or null) and params `groupSize`, `groups`, `zeroKind` (built once per weight).
 */
export function affinePackedWeight(w: AffineWeight): PackedWeight {
  let p = packedCache.get(w);
  if (!p) {
    p = packedWeight({
      format: "affine", outFeatures: w.outFeatures, inFeatures: w.inFeatures, bits: w.bits,
      tensors: { qweight: w.qweight, scales: w.scales, zeros: w.zeros, gIdx: w.gIdx },
      params: { groupSize: w.groupSize, groups: w.groups, zeroKind: w.zeroKind },
    });
    packedCache.set(w, p);
  }
  return p;
}

/**
 * Plain TypeScript reference dequantization of rows [rowStart, rowEnd) (the kernels are checked
 * against it): ŵ = f16(scale) · (q − zero). Copies the packed tensors out (one read each).
 */
export function affineReferenceDequantize(w: AffineWeight, rowStart: number, rowEnd: number, out: Float32Array): void {
  checkRows(w, rowStart, rowEnd, out);
  const inF = w.inFeatures;
  const rows = w.outFeatures;
  const f16 = f16Table();
  const scales = w.scales.dataSync() as Uint16Array;
  const zeros = w.zeros.dataSync() as Uint8Array | Uint16Array;
  const realZeros = w.zeroKind === "real";
  const gIdx = w.gIdx ? (w.gIdx.dataSync() as Int32Array) : null;
  const packed = w.qweight.dataSync() as Int32Array;
  for (let j = rowStart; j < rowEnd; j++) {
    const o = (j - rowStart) * inF;
    for (let i = 0; i < inF; i++) {
      const q = unpackColumnCode(packed, rows, j, i, w.bits);
      const k = (gIdx ? gIdx[i]! : Math.floor(i / w.groupSize)) * rows + j;
      const z = realZeros ? f16[zeros[k]!]! : zeros[k]!;
      out[o + i] = f16[scales[k]!]! * (q - z);
    }
  }
}
