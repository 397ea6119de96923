// The quantized linear product on CUDA: the `affine` and `codebook` format kernels of the quantized
// format table for the `cuda` family, and a device fill of packed code tensors with random bits.
//
// Ŵ is never whole on the device: forward and input gradient walk Ŵ in blocks of R rows (R × in
// values of scratch, at most about 64 MiB, R a multiple of 128 unless the layer has fewer rows),
// each block decoded from the packed codes by the addon's dequantize kernel (src/cuda/quant.cu)
// into one reused scratch buffer in the input's dtype, then multiplied by one cuBLASLt product
// (the raw `matmul` export, f32 accumulation):
//   forward:        y[:, r0:r1] = x · Ŵ[r0:r1, :]ᵀ          (each block writes its own columns)
//   input gradient: dx = Σ_blocks dy[:, r0:r1] · Ŵ[r0:r1, :]  (the first block with beta = 0, the
//                   rest accumulate; for bf16 into an f32 dx, rounded to bf16 once at the end)
// bf16 inputs are taken directly (`bf16: true`): Ŵ is decoded to the f32 value the CPU computes
// and rounded to bf16 once, the product accumulates in f32, the output is bf16.
import type { Device } from "../backend.js";
import { parseDevice } from "../backend.js";
import { dtypeInfo, type DType } from "../dtype.js";
import { noGrad } from "../engine.js";
import { OpError } from "../errors.js";
import { cast } from "../ops/cast.js";
import { philox4x32, seedToKey } from "../random.js";
import { registerQuantFormatKernels, type QuantFormatKernels } from "../quant/table.js";
import { packedNumber, packedTensor, type PackedWeight } from "../quant/weight.js";
import type { Tensor } from "../tensor.js";
import { hostView } from "../cpu/host.js";
import { code, cudaFn, dense, deviceIndex, empty, launch, ptr } from "./util.js";

/** Bytes of dequantized scratch one product block may take (R × in values in the compute dtype). */
export const QUANT_SCRATCH_BYTES = 64 * 2 ** 20;

/**
 * Rows of Ŵ per product block for a layer `[out, in]` decoded to `elemSize`-byte values: as many
 * as {@link QUANT_SCRATCH_BYTES} holds, rounded down to a multiple of 128 (at least 128), or all
 * `out` rows when that is fewer.
 */
export function quantRowBlock(out: number, inFeatures: number, elemSize: number): number {
  const fit = Math.floor(QUANT_SCRATCH_BYTES / (inFeatures * elemSize) / 128) * 128;
  const rows = Math.max(128, fit);
  return rows >= out ? out : rows;
}

/** A weight's arrays ready for the dequantize kernel (contiguous copies freed by `dispose`). */
interface Decoder {
  /** Rows [r0, r1) of Ŵ into `dst` (row-major, leading dimension in) as dtype code `dstCode`. */
  rows(r0: number, r1: number, dst: number, dstCode: number): void;
  dispose(): void;
}

function fail(op: string, w: PackedWeight, msg: string): never {
  throw new OpError(op, `the ${w.format} weight [${w.outFeatures}, ${w.inFeatures}] (${w.bits} bits): ${msg}`);
}

/** Tensor `name` of `w`, checked for its dtype and element count. */
function checked(op: string, w: PackedWeight, name: string, dtypes: readonly DType[], size: number, what: string): Tensor {
  const t = packedTensor(w, name);
  if (!dtypes.includes(t.dtype)) fail(op, w, `tensor '${name}' must be ${dtypes.join(" or ")}, got ${t.dtype}`);
  if (t.size !== size) fail(op, w, `tensor '${name}' must hold ${what} = ${size} values, got ${t.size} ([${t.shape}])`);
  return t;
}

/** Contiguous versions of `ts` (copies where needed) and a function that frees the copies. */
function denseAll(ts: readonly (Tensor | null)[]): { ds: (Tensor | null)[]; free: () => void } {
  const ds: (Tensor | null)[] = [];
  const free = () => ds.forEach((d, i) => {
    if (d && d !== ts[i]) d.dispose();
  });
  try {
    for (const t of ts) ds.push(t ? dense(t) : null);
  } catch (err) {
    free();
    throw err;
  }
  return { ds, free };
}

const addr = (t: Tensor | null): number => (t ? ptr(t) : 0);

/**
 * The `affine` weight's arrays (tensors qweight i32/u32 [⌈in/32⌉·bits, out], scales f16 [groups,
 * out], zeros u8 or f16 [groups, out], gIdx i32 [in] or null; params groupSize, groups, zeroKind).
 * gIdx values are not read back to be checked: one outside [0, groups) decodes to NaN.
 */
function affineDecoder(op: string, w: PackedWeight): Decoder {
  const { outFeatures: out, inFeatures: inF, bits } = w;
  if (bits !== 2 && bits !== 3 && bits !== 4 && bits !== 8) fail(op, w, `bits must be 2, 3, 4 or 8 for the affine format`);
  const zeroKind = w.params["zeroKind"];
  if (zeroKind !== "int" && zeroKind !== "real") fail(op, w, `zeroKind must be "int" or "real", got ${JSON.stringify(zeroKind)}`);
  const groupSize = packedNumber(w, "groupSize");
  const groups = packedNumber(w, "groups");
  if (!Number.isInteger(groupSize) || groupSize < 1 || !Number.isInteger(groups) || groups < 1) fail(op, w, `groupSize and groups must be positive integers, got ${groupSize} and ${groups}`);
  const words = Math.ceil(inF / 32) * bits;
  const qweight = checked(op, w, "qweight", ["i32", "u32"], words * out, `⌈in/32⌉·bits × out = ${words} × ${out}`);
  const scales = checked(op, w, "scales", ["f16"], groups * out, `groups × out = ${groups} × ${out}`);
  const zeros = checked(op, w, "zeros", [zeroKind === "int" ? "u8" : "f16"], groups * out, `groups × out = ${groups} × ${out}`);
  const gIdx = w.tensors["gIdx"] ? checked(op, w, "gIdx", ["i32"], inF, "in") : null;
  if (!gIdx && groupSize * groups !== inF) fail(op, w, `without gIdx, groupSize × groups must equal in, got ${groupSize} × ${groups}`);
  const { ds, free } = denseAll([qweight, scales, zeros, gIdx]);
  const dev = deviceIndex(w.device);
  const fn = cudaFn("affineDequantize");
  return {
    rows: (r0, r1, dst, dstCode) =>
      fn(dev, addr(ds[0]!), addr(ds[1]!), addr(ds[2]!), zeroKind === "real", addr(ds[3]!), bits, groupSize, groups, out, inF, r0, r1, dst, dstCode),
    dispose: free,
  };
}

/**
 * The `codebook` weight's arrays (tensors codes u8 [out, ⌈in·bits/8⌉], levels f32 [2^bits], and
 * absmax f32 [blocks] or absmaxCodes u8 [blocks] with absmaxScale, absmaxOffset f32 [⌈blocks/256⌉];
 * param blockSize).
 */
function codebookDecoder(op: string, w: PackedWeight): Decoder {
  const { outFeatures: out, inFeatures: inF, bits } = w;
  if (!(Number.isInteger(bits) && bits >= 1 && bits <= 4)) fail(op, w, `bits must be 1, 2, 3 or 4 for the codebook format`);
  const blockSize = packedNumber(w, "blockSize");
  if (!Number.isInteger(blockSize) || blockSize < 1 || inF % blockSize !== 0) fail(op, w, `blockSize ${blockSize} must be a positive integer dividing in`);
  const stride = Math.ceil((inF * bits) / 8);
  const blocks = out * (inF / blockSize);
  const supers = Math.ceil(blocks / 256);
  const codes = checked(op, w, "codes", ["u8"], out * stride, `out × ⌈in·bits/8⌉ = ${out} × ${stride}`);
  const levels = checked(op, w, "levels", ["f32"], 2 ** bits, "2^bits");
  const plain = w.tensors["absmax"] ?? null;
  const dq = ["absmaxCodes", "absmaxScale", "absmaxOffset"].map((n) => w.tensors[n] ?? null);
  if (plain && dq.some((t) => t)) fail(op, w, "give either absmax or the double-quantized absmaxCodes, absmaxScale and absmaxOffset, not both");
  if (!plain && !dq.every((t) => t)) fail(op, w, "the block scales are missing: give absmax, or all of absmaxCodes, absmaxScale and absmaxOffset");
  const scalesOf: (Tensor | null)[] = plain
    ? [checked(op, w, "absmax", ["f32"], blocks, "out·in/blockSize"), null, null, null]
    : [
        null, checked(op, w, "absmaxCodes", ["u8"], blocks, "out·in/blockSize"),
        checked(op, w, "absmaxScale", ["f32"], supers, "⌈blocks/256⌉"), checked(op, w, "absmaxOffset", ["f32"], supers, "⌈blocks/256⌉"),
      ];
  const { ds, free } = denseAll([codes, levels, ...scalesOf]);
  const dev = deviceIndex(w.device);
  const fn = cudaFn("codebookDequantize");
  return {
    rows: (r0, r1, dst, dstCode) =>
      fn(dev, addr(ds[0]!), addr(ds[1]!), addr(ds[2]!), addr(ds[3]!), addr(ds[4]!), addr(ds[5]!), bits, blockSize, out, inF, r0, r1, dst, dstCode),
    dispose: free,
  };
}

type DecoderOf = (op: string, w: PackedWeight) => Decoder;

/** Runs `fn` with the decoder of `w` and a scratch [R, in] in `dtype` (both freed after). */
function withBlocks<T>(op: string, w: PackedWeight, decoderOf: DecoderOf, dtype: "f32" | "bf16", device: Device,
  fn: (d: Decoder, rows: number, scratch: Tensor) => T): T {
  const d = decoderOf(op, w);
  try {
    const rows = quantRowBlock(w.outFeatures, w.inFeatures, dtypeInfo(dtype).size);
    const scratch = empty([rows, w.inFeatures], dtype, device);
    try {
      return fn(d, rows, scratch);
    } finally {
      scratch.dispose();
    }
  } finally {
    d.dispose();
  }
}

/** Disposes `t` when `fn` throws. */
function orDispose<T>(t: Tensor, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    t.dispose();
    throw err;
  }
}

function computeDtype(op: string, t: Tensor): "f32" | "bf16" {
  if (t.dtype !== "f32" && t.dtype !== "bf16") throw new OpError(op, `the cuda quantized kernels take f32 or bf16, got ${t.dtype}`, [t]);
  return t.dtype;
}

/** The format-table entry of one format on the cuda family. */
function cudaFormatKernels(decoderOf: DecoderOf): QuantFormatKernels {
  return {
    bf16: true,
    forward(x, w) {
      const op = "quantMatmul";
      const dtype = computeDtype(op, x);
      const m = x.shape[0]!;
      const { outFeatures: out, inFeatures: inF } = w;
      const y = empty([m, out], dtype, x.device);
      if (m === 0) return y;
      return orDispose(y, () => launch(op, [x], () => withBlocks(op, w, decoderOf, dtype, x.device, (d, rows, scratch) => {
        const dev = deviceIndex(x.device);
        const c = code(dtype);
        const es = dtypeInfo(dtype).size;
        const matmul = cudaFn("matmul");
        for (let r0 = 0; r0 < out; r0 += rows) {
          const r1 = Math.min(out, r0 + rows);
          d.rows(r0, r1, ptr(scratch), c);
          // y[:, r0:r1] (ldc = out) = x [m, in] · block [r1 − r0, in]ᵀ
          matmul(dev, c, c, false, true, m, r1 - r0, inF, 1, ptr(x), inF, 0, ptr(scratch), inF, 0, 0, ptr(y) + r0 * es, out, 0, 1);
        }
        return y;
      })));
    },
    inputGrad(dy, w) {
      const op = "quantMatmulInputGrad";
      const dtype = computeDtype(op, dy);
      const m = dy.shape[0]!;
      const { outFeatures: out, inFeatures: inF } = w;
      if (m === 0) return empty([m, inF], dtype, dy.device);
      const single = quantRowBlock(out, inF, dtypeInfo(dtype).size) >= out;
      // One block: one product writes dx in its dtype (f32 accumulation, rounded once). Several:
      // they accumulate into an f32 dx, rounded to bf16 once at the end.
      const accDtype = single ? dtype : "f32";
      const acc = empty([m, inF], accDtype, dy.device);
      orDispose(acc, () => launch(op, [dy], () => withBlocks(op, w, decoderOf, dtype, dy.device, (d, rows, scratch) => {
        const dev = deviceIndex(dy.device);
        const c = code(dtype);
        const es = dtypeInfo(dtype).size;
        const matmul = cudaFn("matmul");
        for (let r0 = 0; r0 < out; r0 += rows) {
          const r1 = Math.min(out, r0 + rows);
          d.rows(r0, r1, ptr(scratch), c);
          // dx [m, in] (+)= dy[:, r0:r1] (lda = out) · block [r1 − r0, in]
          matmul(dev, c, code(accDtype), false, false, m, inF, r1 - r0, 1, ptr(dy) + r0 * es, out, 0, ptr(scratch), inF, 0, r0 === 0 ? 0 : 1, ptr(acc), inF, 0, 1);
        }
      })));
      if (accDtype === dtype) return acc;
      try {
        return noGrad(() => cast(acc, dtype));
      } finally {
        acc.dispose();
      }
    },
    dequantize(w, r0, r1) {
      const op = "quantDequantize";
      const out = empty([r1 - r0, w.inFeatures], "f32", w.device);
      if (r1 <= r0) return out;
      return orDispose(out, () => launch(op, [], () => {
        const d = decoderOf(op, w);
        try {
          d.rows(r0, r1, ptr(out), code("f32"));
        } finally {
          d.dispose();
        }
        return out;
      }));
    },
  };
}

/** Registers the `affine` and `codebook` format kernels of the quantized ops for the cuda `family`. */
export function registerCudaQuant(family: string): void {
  registerQuantFormatKernels("affine", family, cudaFormatKernels(affineDecoder));
  registerQuantFormatKernels("codebook", family, cudaFormatKernels(codebookDecoder));
}

/** The Philox stream id (third counter word) of random bits (src/cuda/quant.h: kPhiloxStreamBits). */
const PHILOX_STREAM_BITS = 3;

/**
 * Fills the bytes of the integer tensor `t` (contiguous; any integer dtype: packed codes, code
 * words, zero points, absmax codes) with uniform random bits, in place, on its own device: on a
 * cuda device by a device kernel (no host upload: random 7B/13B/65B weights for throughput
 * benchmarks); on a host-memory device (`cpu`, `sim`) by the same generator in TypeScript. Byte
 * 16c + k of the tensor is byte k mod 4 (little-endian) of word ⌊k/4⌋ of Philox4x32-10 at counter
 * (c mod 2^32, ⌊c/2^32⌋, 3, 0) with the key of `seed` (a safe integer, as {@link seedToKey}), so
 * every device fills the same bytes. Returns `t`.
 */
export function randomPackedCodes<T extends Tensor>(t: T, seed: number): T {
  t.assertAlive("randomPackedCodes");
  const info = dtypeInfo(t.dtype);
  if (info.isFloat) throw new OpError("randomPackedCodes", `fills integer tensors (packed codes), got ${t.dtype}`, [t]);
  if (!t.isContiguous) throw new OpError("randomPackedCodes", "the tensor must be contiguous", [t]);
  const [k0, k1] = seedToKey(seed);
  const bytes = t.size * info.size;
  if (parseDevice(t.device).family === "cuda") {
    launch("randomPackedCodes", [t], () => cudaFn("randomBits")(deviceIndex(t.device), ptr(t), bytes, seed));
    return t;
  }
  const view = hostView(t);
  const dst = new Uint8Array(view.buffer, view.byteOffset, bytes);
  const block = new Uint32Array(4);
  for (let b0 = 0, c = 0; b0 < bytes; b0 += 16, c++) {
    philox4x32(c >>> 0, Math.floor(c / 4294967296) >>> 0, PHILOX_STREAM_BITS, 0, k0, k1, block);
    const n = Math.min(16, bytes - b0);
    for (let k = 0; k < n; k++) dst[b0 + k] = (block[k >> 2]! >>> (8 * (k & 3))) & 0xff;
  }
  return t;
}
