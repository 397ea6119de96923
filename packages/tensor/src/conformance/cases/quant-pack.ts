// Packers and plain f64 decoders of the quantized formats, for the conformance cases. Written
// from the layouts documented in @modulora/core (formats/types.ts), independently of the kernels
// and of core (the tensor package cannot depend on it): the packers turn unpacked codes into the
// stored arrays the kernels read; the decoders rebuild Ŵ from the UNPACKED codes, so a packing
// the kernels read differently from the layout shows up as a mismatch.
import type { F64 } from "../reference.js";

/**
 * `affine` codes `q [out, in]` (row j = the codes of W[j, :]) packed in GPTQ's layout: i32
 * `[⌈in/32⌉·bits, out]`, column j a bit stream along `in`, low bits first (code i at bit
 * i·bits; stream word w at `[w, j]`), `in` padded to a multiple of 32 with zero codes. Words are
 * returned as signed i32 values.
 */
export function packAffineCodes(q: ArrayLike<number>, out: number, inF: number, bits: number): Float64Array {
  const words = Math.ceil(inF / 32) * bits;
  const packed = new Uint32Array(words * out);
  for (let j = 0; j < out; j++) {
    for (let i = 0; i < inF; i++) {
      const code = q[j * inF + i]!;
      const bit = i * bits;
      const w = bit >>> 5;
      const s = bit & 31;
      packed[w * out + j]! |= (code << s) >>> 0;
      if (s + bits > 32) packed[(w + 1) * out + j]! |= code >>> (32 - s); // a 3-bit code crossing words
    }
  }
  return Float64Array.from(new Int32Array(packed.buffer));
}

/** `codebook` codes `q [out, in]` packed as u8 `[out, ⌈in·bits/8⌉]`: each row a bit stream along `in`, low bits first. */
export function packCodebookCodes(q: ArrayLike<number>, out: number, inF: number, bits: number): Float64Array {
  const stride = Math.ceil((inF * bits) / 8);
  const packed = new Uint8Array(out * stride);
  for (let j = 0; j < out; j++) {
    for (let i = 0; i < inF; i++) {
      const code = q[j * inF + i]!;
      for (let b = 0; b < bits; b++) {
        const bit = i * bits + b;
        if ((code >> b) & 1) packed[j * stride + (bit >> 3)]! |= 1 << (bit & 7);
      }
    }
  }
  return Float64Array.from(packed);
}

/** Ŵ [out, in] of an affine weight: ŵ[j, i] = scale[g, j] · (q[j, i] − zero[g, j]), g = gIdx[i] or ⌊i / groupSize⌋. */
export function decodeAffineRef(q: F64, scales: F64, zeros: F64, gIdx: F64 | null, out: number, inF: number, groupSize: number): F64 {
  const w = new Float64Array(out * inF);
  for (let j = 0; j < out; j++) {
    for (let i = 0; i < inF; i++) {
      const g = gIdx ? gIdx[i]! : Math.floor(i / groupSize);
      w[j * inF + i] = scales[g * out + j]! * (q[j * inF + i]! - zeros[g * out + j]!);
    }
  }
  return w;
}

/** The block scales of a codebook weight: `absmax`, or offset[s] + scale[s] · code with s = ⌊block / 256⌋. */
export function codebookAbsmaxRef(absmax: F64 | null, dq: { codes: F64; scale: F64; offset: F64 } | null): F64 {
  if (absmax) return absmax;
  return dq!.codes.map((c, b) => dq!.offset[Math.floor(b / 256)]! + dq!.scale[Math.floor(b / 256)]! * c);
}

/** Ŵ [out, in] of a codebook weight: ŵ[j, i] = absmax[j·in/blockSize + ⌊i/blockSize⌋] · levels[q[j, i]]. */
export function decodeCodebookRef(q: F64, levels: F64, absmax: F64, out: number, inF: number, blockSize: number): F64 {
  const w = new Float64Array(out * inF);
  const perRow = inF / blockSize;
  for (let j = 0; j < out; j++) {
    for (let i = 0; i < inF; i++) w[j * inF + i] = absmax[j * perRow + Math.floor(i / blockSize)]! * levels[q[j * inF + i]!]!;
  }
  return w;
}

/** `x [m, k] · wᵀ` with `w [n, k]` → `[m, n]`, in f64. */
export function matmulNTRef(x: F64, w: F64, m: number, n: number, k: number): F64 {
  const y = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += x[r * k + i]! * w[j * k + i]!;
      y[r * n + j] = s;
    }
  }
  return y;
}

/** `dy [m, n] · w` with `w [n, k]` → `[m, k]`, in f64. */
export function matmulNNRef(dy: F64, w: F64, m: number, n: number, k: number): F64 {
  const dx = new Float64Array(m * k);
  for (let r = 0; r < m; r++) {
    for (let j = 0; j < n; j++) {
      const d = dy[r * n + j]!;
      if (d === 0) continue;
      for (let i = 0; i < k; i++) dx[r * k + i]! += d * w[j * k + i]!;
    }
  }
  return dx;
}
