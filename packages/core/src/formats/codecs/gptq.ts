// The GPTQ codec of the `affine` format: the four tensors GPTQ tools store per quantized linear
// layer (`qweight`, `qzeros`, `scales`, `g_idx`), their version quirks (v1 stores zero − 1,
// v2 (`checkpoint_format: "gptq_v2"`) the zero itself), the settings a set of weights shares
// in a GPTQ checkpoint's `quantization_config`, and the checks that say whether weights fit.
// `qweight` and `scales` are the affine format's own tensors (its layout is GPTQ's); `qzeros`
// is packed by the rows of pack.ts's column packer, transposed.
import { keep, tensorFrom, type Tensor } from "@modulora/tensor";
import { affineFromTensors } from "../affine.js";
import { packColumns, packedWords, unpackColumnCode } from "../pack.js";
import type { AffineWeight, QuantizedWeight } from "../types.js";

/** How `qzeros` encodes a zero point z: GPTQ "v1" stores z − 1 (so z = 0 cannot be stored), "v2" stores z. */
export type GptqZeroFormat = "v1" | "v2";

/** The four tensors GPTQ stores per quantized linear layer. */
export interface GptqTensors {
  /** i32 [⌈in/32⌉·bits, out]: codes bit-packed along `in`, low bits first. */
  qweight: Tensor;
  /** i32 [groups, ⌈out/32⌉·bits]: zero points bit-packed along `out` the same way. */
  qzeros: Tensor;
  /** f16 [groups, out]. */
  scales: Tensor;
  /** i32 [in]: the group of each input column. */
  g_idx: Tensor;
}

/** Transposes a row-major [rows, cols] word array into [cols, rows]. */
function transposeWords(a: Int32Array, rows: number, cols: number): Int32Array {
  const out = new Int32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

/**
 * Packs `rows` rows of `n` codes each (row-major) into a bit stream per row, low bits first, in
 * 32-bit words: [rows, ⌈n/32⌉·bits]. This is GPTQ's `qzeros` packing (its reference `pack` loop:
 * 32/bits codes per word for 2, 4 and 8 bits; for 3 bits 32 codes in 3 words, codes 10 and 21
 * crossing word boundaries). `n` is padded to a multiple of 32 with zero codes, so for `out`
 * divisible by 32 (every real model) the width is GPTQ's `out·bits/32`.
 */
export function packRowsWords(codes: ArrayLike<number>, rows: number, n: number, bits: number): Int32Array {
  // packColumns lays the streams out as columns ([words, rows]); GPTQ's rows are its transpose.
  return transposeWords(packColumns(Uint8Array.from(codes), rows, n, bits), packedWords(n, bits), rows);
}

/** Inverse of {@link packRowsWords}: [rows, n] codes. */
export function unpackRowsWords(words: Int32Array, rows: number, n: number, bits: number): Uint8Array {
  const columns = transposeWords(words, rows, packedWords(n, bits));
  const out = new Uint8Array(rows * n);
  for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) out[r * n + i] = unpackColumnCode(columns, rows, r, i, bits);
  return out;
}

/**
 * Whether an affine weight can be written in GPTQ's layout: integer zero points inside the code
 * range (the zero points are read to the host: one transfer).
 */
export function isGptqCompatible(w: QuantizedWeight): w is AffineWeight {
  if (w.format !== "affine" || w.zeroKind !== "int") return false;
  const z = w.zeros.dataSync() as Uint8Array;
  const maxq = (1 << w.bits) - 1;
  for (let i = 0; i < z.length; i++) if (z[i]! > maxq) return false;
  return true;
}

/** Whether some zero point of `w` is 0 (then GPTQ v1 cannot store it). */
export function hasZeroZeroPoint(w: AffineWeight): boolean {
  return (w.zeros.dataSync() as Uint8Array).includes(0);
}

/** ⌊i / groupSize⌋ for i < in: the `g_idx` of a weight without act-order. */
export function trivialGIdx(inFeatures: number, groupSize: number): Int32Array {
  const g = new Int32Array(inFeatures);
  for (let i = 0; i < inFeatures; i++) g[i] = Math.floor(i / groupSize);
  return g;
}

/** Whether `gIdx` differs from ⌊i / groupSize⌋ somewhere (act-order). */
function isActOrderGIdx(gIdx: Int32Array, groupSize: number): boolean {
  for (let i = 0; i < gIdx.length; i++) if (gIdx[i] !== Math.floor(i / groupSize)) return true;
  return false;
}

/** Whether `w` has a non-trivial `g_idx` (act-order). */
export function hasActOrder(w: AffineWeight): boolean {
  return w.gIdx !== null && isActOrderGIdx(w.gIdx.dataSync() as Int32Array, w.groupSize);
}

/**
 * GPTQ's tensors of an affine weight. `qweight` and `scales` are `w`'s own tensors (our affine
 * layout is GPTQ's): do not dispose them. `qzeros` and `g_idx` are new, packed on the host and
 * copied onto the device of `w.qweight`: dispose them.
 */
export function gptqFromAffine(w: AffineWeight, zeroFormat: GptqZeroFormat): GptqTensors {
  if (!isGptqCompatible(w)) throw new RangeError("gptqFromAffine: GPTQ's layout needs integer zero points in [0, 2^bits)");
  const device = w.qweight.device;
  const z = w.zeros.dataSync() as Uint8Array; // [groups, out]
  let stored: ArrayLike<number> = z;
  if (zeroFormat === "v1") {
    if (hasZeroZeroPoint(w)) throw new RangeError("gptqFromAffine: a zero point is 0, which GPTQ v1 (zero − 1) cannot store; use v2");
    stored = Uint8Array.from(z, (v) => v - 1);
  }
  const qzeros = keep(tensorFrom(packRowsWords(stored, w.groups, w.outFeatures, w.bits), { shape: [w.groups, packedWords(w.outFeatures, w.bits)], dtype: "i32", device }));
  const gIdx = w.gIdx ? (w.gIdx.dataSync() as Int32Array) : trivialGIdx(w.inFeatures, w.groupSize);
  const g_idx = keep(tensorFrom(gIdx, { shape: [w.inFeatures], dtype: "i32", device }));
  return { qweight: w.qweight, qzeros, scales: w.scales, g_idx };
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

/** The settings GPTQ records once per checkpoint (its `quantization_config`), in our terms. */
export interface GptqSettings {
  bits: number;
  /** Group size; −1 for one group per row. */
  groupSize: number;
  symmetric: boolean;
  zeroFormat: GptqZeroFormat;
}

/** What {@link affineFromGptq} needs besides the tensors. */
export interface GptqLayerInfo extends GptqSettings {
  /** Tensor prefix, for error messages. */
  name: string;
  outFeatures: number;
  inFeatures: number;
}

/**
 * Rebuilds an affine weight from GPTQ's tensors (it takes ownership of `qweight` and `scales`
 * and disposes `qzeros` and `g_idx`). Zero points: v2 as stored; v1 `(stored + 1) & (2^b − 1)`,
 * the way AutoGPTQ's kernels read them. A `g_idx` equal to ⌊i / groupSize⌋ is dropped (no
 * act-order); any other is kept. Shapes are checked against the layer's [out, in] and errors
 * name the tensor. `qzeros` and `g_idx` are read to the host (keep them on `cpu` to spare the
 * transfer) and the unpacked zero points and `g_idx` are copied onto the device of `qweight`.
 */
export function affineFromGptq(t: { qweight: Tensor; qzeros: Tensor; scales: Tensor; g_idx?: Tensor | null }, info: GptqLayerInfo): AffineWeight {
  const { name, outFeatures: out, inFeatures: inF, bits } = info;
  const groupSize = info.groupSize <= 0 || info.groupSize > inF ? inF : info.groupSize;
  const bad = (tensorName: string, t: Tensor, want: string) =>
    new RangeError(`quantized checkpoint: tensor '${name}.${tensorName}' is ${t.dtype} [${t.shape}], expected ${want} for a ${bits}-bit layer [out ${out}, in ${inF}]`);
  const words = packedWords(inF, bits);
  if (t.qweight.dtype !== "i32" || !sameShape(t.qweight.shape, [words, out])) throw bad("qweight", t.qweight, `i32 [${words}, ${out}]`);
  let gIdx: Int32Array | null = null;
  if (t.g_idx) {
    if (t.g_idx.dtype !== "i32" || !sameShape(t.g_idx.shape, [inF])) throw bad("g_idx", t.g_idx, `i32 [${inF}]`);
    gIdx = t.g_idx.dataSync() as Int32Array;
  }
  let groups = Math.ceil(inF / groupSize);
  if (gIdx) {
    let max = -1;
    for (let i = 0; i < inF; i++) {
      const g = gIdx[i]!;
      if (!Number.isInteger(g) || g < 0) throw new RangeError(`quantized checkpoint: tensor '${name}.g_idx' holds an invalid group ${g} at ${i}`);
      max = Math.max(max, g);
    }
    groups = Math.max(groups, max + 1);
  }
  if (t.scales.dtype !== "f16" || !sameShape(t.scales.shape, [groups, out])) throw bad("scales", t.scales, `f16 [${groups}, ${out}]`);
  const zw = packedWords(out, bits);
  if (t.qzeros.dtype !== "i32" || !sameShape(t.qzeros.shape, [groups, zw])) throw bad("qzeros", t.qzeros, `i32 [${groups}, ${zw}]`);
  if (gIdx && !isActOrderGIdx(gIdx, groupSize)) gIdx = null;
  if (!gIdx && groups * groupSize !== inF) {
    throw new RangeError(`quantized checkpoint: layer '${name}': group size ${groupSize} does not divide in = ${inF}; such a layer needs a g_idx`);
  }

  const maxq = (1 << bits) - 1;
  const zeros = unpackRowsWords(t.qzeros.dataSync() as Int32Array, groups, out, bits);
  if (info.zeroFormat === "v1") for (let i = 0; i < zeros.length; i++) zeros[i] = (zeros[i]! + 1) & maxq;
  const device = t.qweight.device;
  const zerosT = keep(tensorFrom(zeros, { shape: [groups, out], dtype: "u8", device }));
  const gIdxT = gIdx ? keep(tensorFrom(gIdx, { shape: [inF], dtype: "i32", device })) : null;
  t.qzeros.dispose();
  t.g_idx?.dispose();
  return affineFromTensors({
    outFeatures: out, inFeatures: inF, bits, groupSize, symmetric: info.symmetric,
    qweight: t.qweight, scales: t.scales, zeros: zerosT, gIdx: gIdxT,
  });
}

/** {@link GptqSettings} of a set of weights, plus whether any uses act-order (GPTQ's `desc_act`). */
export interface GptqCheckpointSettings extends GptqSettings {
  actOrder: boolean;
}

/**
 * The GPTQ settings a set of weights shares, or null if they cannot be stored as one GPTQ
 * checkpoint: every weight GPTQ-compatible ({@link isGptqCompatible}) with the same bits and
 * symmetry, and one group size (−1 when every weight has one group per row). The zero format is
 * v1 unless some zero point is 0 (v2). Reads the zero points (and g_idx) to the host.
 */
export function gptqCheckpointSettings(weights: Iterable<QuantizedWeight>): GptqCheckpointSettings | null {
  const ws = [...weights];
  if (ws.length === 0 || !ws.every(isGptqCompatible)) return null;
  const aw = ws as AffineWeight[];
  const bits = aw[0]!.bits;
  const symmetric = aw[0]!.symmetric;
  if (!aw.every((w) => w.bits === bits && w.symmetric === symmetric)) return null;
  // group_size is one number per model: −1 when every layer has one group per row, else the
  // group size all layers share.
  const g = aw[0]!.groupSize;
  let groupSize: number;
  if (aw.every((w) => w.groups === 1)) groupSize = -1;
  else if (aw.every((w) => w.groupSize === g)) groupSize = g;
  else return null;
  return { bits, groupSize, symmetric, actOrder: aw.some(hasActOrder), zeroFormat: aw.some(hasZeroZeroPoint) ? "v2" : "v1" };
}

/** `checkpoint_format` of a GPTQ `quantization_config` for a zero format: "gptq" (v1) or "gptq_v2". */
export function gptqCheckpointFormat(zeroFormat: GptqZeroFormat): "gptq" | "gptq_v2" {
  return zeroFormat === "v2" ? "gptq_v2" : "gptq";
}

/**
 * The settings of a GPTQ `quantization_config` (`bits` 2, 3, 4 or 8; `group_size` a positive
 * integer or −1, default −1; `checkpoint_format` "gptq" (v1 zeros, the default) or "gptq_v2";
 * `sym`, default true). A bad value is a RangeError naming the key and what it must be.
 */
export function gptqSettingsFromConfig(qc: Record<string, unknown>): GptqSettings {
  const bits = qc["bits"];
  if (typeof bits !== "number" || ![2, 3, 4, 8].includes(bits)) throw new RangeError(`quantization_config.bits must be 2, 3, 4 or 8 for GPTQ, got ${JSON.stringify(bits)}`);
  const g = qc["group_size"] ?? -1;
  if (typeof g !== "number" || !Number.isInteger(g) || (g < 1 && g !== -1)) throw new RangeError(`quantization_config.group_size must be a positive integer or -1, got ${JSON.stringify(g)}`);
  const fmt = qc["checkpoint_format"] ?? "gptq";
  if (fmt !== "gptq" && fmt !== "gptq_v2") throw new RangeError(`quantization_config.checkpoint_format ${JSON.stringify(fmt)} is not one of "gptq", "gptq_v2"`);
  return { bits, groupSize: g, symmetric: qc["sym"] !== false, zeroFormat: fmt === "gptq_v2" ? "v2" : "v1" };
}
