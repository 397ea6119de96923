/**
 * Bit-stream packing of k-bit codes (k ≤ 8), low bits first: code i occupies bits
 * [i·k, (i+1)·k) of the stream, and the stream is stored in 32-bit words (affine/GPTQ) or bytes
 * (codebook). For k = 3, 32 codes fill exactly 3 words; codes 10 and 21 cross word boundaries.
 */

/** Words of one packed column of `n` codes (n padded to a multiple of 32). */
export function packedWords(n: number, bits: number): number {
  return Math.ceil(n / 32) * bits;
}

/**
 * Packs codes[j·n + i] (row j of `rows`, code i of `n`) into GPTQ's column layout: words
 * [packedWords(n, bits), rows], word w of row j at `w·rows + j`.
 */
export function packColumns(codes: Uint8Array, rows: number, n: number, bits: number): Int32Array {
  const words = packedWords(n, bits);
  const out = new Uint32Array(words * rows);
  const mask = (1 << bits) - 1;
  for (let j = 0; j < rows; j++) {
    for (let i = 0; i < n; i++) {
      const q = codes[j * n + i]! & mask;
      const bit = i * bits;
      const w = bit >>> 5;
      const s = bit & 31;
      out[w * rows + j] = (out[w * rows + j]! | (q << s)) >>> 0;
      if (s + bits > 32) out[(w + 1) * rows + j] = (out[(w + 1) * rows + j]! | (q >>> (32 - s))) >>> 0;
    }
  }
  return new Int32Array(out.buffer);
}

/** Code i of row j from a GPTQ-layout packed array (inverse of {@link packColumns}). */
export function unpackColumnCode(packed: Int32Array | Uint32Array, rows: number, j: number, i: number, bits: number): number {
  const bit = i * bits;
  const w = bit >>> 5;
  const s = bit & 31;
  let v = (packed[w * rows + j]! >>> s) >>> 0;
  if (s + bits > 32) v |= packed[(w + 1) * rows + j]! << (32 - s);
  return v & ((1 << bits) - 1);
}

/** Packs `n` codes per row into a byte stream per row: [rows, ⌈n·bits/8⌉]. */
export function packRowsBytes(codes: Uint8Array, rows: number, n: number, bits: number): Uint8Array {
  const stride = Math.ceil((n * bits) / 8);
  const out = new Uint8Array(rows * stride);
  const mask = (1 << bits) - 1;
  for (let j = 0; j < rows; j++) {
    for (let i = 0; i < n; i++) {
      const q = codes[j * n + i]! & mask;
      const bit = i * bits;
      const b = j * stride + (bit >>> 3);
      const s = bit & 7;
      out[b] = out[b]! | ((q << s) & 0xff);
      if (s + bits > 8) out[b + 1] = out[b + 1]! | (q >>> (8 - s));
    }
  }
  return out;
}

/** Code i of row j from a byte-stream packed array (inverse of {@link packRowsBytes}). */
export function unpackRowByteCode(packed: Uint8Array, stride: number, j: number, i: number, bits: number): number {
  const bit = i * bits;
  const b = j * stride + (bit >>> 3);
  const s = bit & 7;
  let v = packed[b]! >>> s;
  if (s + bits > 8) v |= packed[b + 1]! << (8 - s);
  return v & ((1 << bits) - 1);
}
