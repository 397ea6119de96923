/**
 * Philox4x32-10, a counter-based random number generator (Salmon et al., "Parallel random
 * numbers: as easy as 1, 2, 3", SC 2011): the output for (key, counter) is a pure function of
 * both, so any element of a random tensor can be reproduced anywhere, on any backend, in any order.
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two u32. */
function mulhi(a: number, b: number): number {
  const aLo = a & 0xffff, aHi = a >>> 16;
  const bLo = b & 0xffff, bHi = b >>> 16;
  const lo = aLo * bLo;
  const mid1 = aHi * bLo;
  const mid2 = aLo * bHi;
  const carry = ((lo >>> 16) + (mid1 & 0xffff) + (mid2 & 0xffff)) >>> 16;
  return (aHi * bHi + (mid1 >>> 16) + (mid2 >>> 16) + carry) >>> 0;
}

/** One Philox4x32-10 block: four u32 outputs for a 128-bit counter and a 64-bit key. */
export function philox4x32(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array): void {
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0;
    const n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/** Splits a JS number seed (any safe integer) into a 64-bit Philox key. */
export function seedToKey(seed: number): [number, number] {
  if (!Number.isSafeInteger(seed)) throw new TypeError(`seed must be a safe integer, got ${seed}`);
  const s = seed < 0 ? -seed : seed;
  return [s >>> 0, (Math.floor(s / 4294967296) ^ (seed < 0 ? 0x80000000 : 0)) >>> 0];
}

/**
 * Fills `out` with uniform floats in [0, 1): element i uses counter (offset + ⌊i/4⌋, 0, 0, 0)
 * and word i mod 4, with 24-bit resolution.
 */
export function uniformFill(out: Float32Array | Float64Array, seed: number, offset = 0): void {
  const [k0, k1] = seedToKey(seed);
  const block = new Uint32Array(4);
  for (let i = 0; i < out.length; i += 4) {
    const c = offset + i / 4;
    philox4x32(c >>> 0, Math.floor(c / 4294967296) >>> 0, 0, 0, k0, k1, block);
    for (let j = 0; j < 4 && i + j < out.length; j++) out[i + j] = (block[j]! >>> 8) / 16777216;
  }
}

/** Fills `out` with standard normal samples (Box–Muller over Philox uniforms). */
export function normalFill(out: Float32Array | Float64Array, seed: number, offset = 0): void {
  const [k0, k1] = seedToKey(seed);
  const block = new Uint32Array(4);
  for (let i = 0; i < out.length; i += 4) {
    const c = offset + i / 4;
    philox4x32(c >>> 0, Math.floor(c / 4294967296) >>> 0, 1, 0, k0, k1, block);
    for (let j = 0; j < 4; j += 2) {
      const u1 = ((block[j]! >>> 8) + 1) / 16777217; // (0, 1]
      const u2 = (block[j + 1]! >>> 8) / 16777216;
      const r = Math.sqrt(-2 * Math.log(u1));
      if (i + j < out.length) out[i + j] = r * Math.cos(2 * Math.PI * u2);
      if (i + j + 1 < out.length) out[i + j + 1] = r * Math.sin(2 * Math.PI * u2);
    }
  }
}
