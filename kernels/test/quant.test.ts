// Fused dequantize-matmul kernels (affine and codebook formats) against plain TS references:
// the packers and decoders below are written from the layout spec (packages/core/src/formats/
// types.ts), independently of the C++. For every ISA path: dequantize vs the reference decoder,
// forward and input gradient vs f64 products on the reference Ŵ (and vs native sgemm on the native
// Ŵ), odd shapes, every grouping (row, 32, 128, act-order gIdx), int and real zeros, plain and
// double-quantized absmax, accumulate mode; then thread-count independence, bounded scratch
// memory and the argument checks at the native boundary.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  affineDequantize, affineMatmul, affineMatmulInputGrad, codebookDequantize, codebookMatmul, codebookMatmulInputGrad,
  cpuInfo, gemm, getNumThreads, native, nativeMemoryStats, quantMatmulInfo, resetPeakMemory, setIsa, setNumThreads,
  type AffineArrays, type CodebookArrays, type Isa,
} from "../ts/index.js";
import { rng } from "./helpers.js";

// --- helpers -----------------------------------------------------------------------------------


function randF32(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

function randCodes(n: number, bits: number, seed: number): Uint8Array {
  const r = rng(seed);
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.floor(r() * (1 << bits));
  return a;
}

/** f16 bit pattern → value (exact). */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Finite value → nearest f16 bit pattern (normal range, ties away: only used to make test data). */
function floatToHalf(v: number): number {
  if (v === 0) return 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  let e = Math.floor(Math.log2(a));
  let m = Math.round((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    e++;
    m = 0;
  }
  return sign | ((e + 15) << 10) | m;
}

function supportedIsas(): Isa[] {
  const info = cpuInfo();
  const isas: Isa[] = ["generic"];
  if (info.avx2) isas.push("avx2");
  if (info.avx512) isas.push("avx512");
  return isas;
}

const initialIsa = cpuInfo().active;
const initialThreads = getNumThreads();
afterAll(() => {
  setIsa(initialIsa);
  setNumThreads(initialThreads);
});

// --- affine: packer and reference decoder (from the layout spec) ---------------------------------

/** GPTQ layout: words [⌈in/32⌉·bits, out], column j = row j's codes as a bit stream along in. */
function packAffine(codes: Uint8Array, out: number, inF: number, bits: number): Int32Array {
  const words = Math.ceil(inF / 32) * bits;
  const q = new Uint32Array(words * out);
  for (let j = 0; j < out; j++) {
    for (let i = 0; i < inF; i++) {
      const c = codes[j * inF + i]!;
      for (let b = 0; b < bits; b++) {
        if (!((c >> b) & 1)) continue;
        const bit = i * bits + b;
        q[(bit >>> 5) * out + j] = (q[(bit >>> 5) * out + j]! | (1 << (bit & 31))) >>> 0;
      }
    }
  }
  return new Int32Array(q.buffer);
}

type Group = "row" | 32 | 128 | "act";
interface AffineCase {
  out: number;
  inF: number;
  group: Group;
  zeroKind: "int" | "real";
}

interface AffineFixture {
  w: AffineArrays;
  /** Reference Ŵ [out, in] (f32 values in f64). */
  ref: Float64Array;
}

function makeAffine(c: AffineCase, bits: number, seed: number): AffineFixture {
  const { out, inF } = c;
  const r = rng(seed);
  const groupSize = c.group === "row" ? inF : c.group === "act" ? 32 : c.group;
  const groups = Math.ceil(inF / groupSize);
  let gIdx: Int32Array | null = null;
  if (c.group === "act") {
    // act-order: group ⌊π(i) / groupSize⌋ of a random permutation π, so groups are scattered.
    const perm = Array.from({ length: inF }, (_, i) => i);
    for (let i = inF - 1; i > 0; i--) {
      const k = Math.floor(r() * (i + 1));
      [perm[i], perm[k]] = [perm[k]!, perm[i]!];
    }
    gIdx = Int32Array.from(perm, (p) => Math.floor(p / groupSize));
  }
  const codes = randCodes(out * inF, bits, seed + 1);
  const scales = new Uint16Array(groups * out);
  for (let k = 0; k < scales.length; k++) {
    const v = (r() < 0.5 ? -1 : 1) * 2 ** (-10 + 9 * r());
    scales[k] = k % 37 === 5 ? 0x0003 | (k & 0x8000) : floatToHalf(v); // a few subnormal scales
  }
  const maxQ = (1 << bits) - 1;
  let zeros: Uint8Array | Uint16Array;
  if (c.zeroKind === "int") {
    zeros = new Uint8Array(groups * out);
    for (let k = 0; k < zeros.length; k++) zeros[k] = Math.floor(r() * (maxQ + 1));
  } else {
    zeros = new Uint16Array(groups * out);
    for (let k = 0; k < zeros.length; k++) zeros[k] = floatToHalf((r() * 1.2 - 0.1) * maxQ + 1e-3);
  }
  const ref = new Float64Array(out * inF);
  for (let j = 0; j < out; j++) {
    for (let i = 0; i < inF; i++) {
      const g = gIdx ? gIdx[i]! : Math.floor(i / groupSize);
      const z = c.zeroKind === "int" ? zeros[g * out + j]! : halfToFloat(zeros[g * out + j]!);
      ref[j * inF + i] = Math.fround(halfToFloat(scales[g * out + j]!) * (codes[j * inF + i]! - z));
    }
  }
  const w: AffineArrays = {
    outFeatures: out, inFeatures: inF, bits, groupSize, groups, qweight: packAffine(codes, out, inF, bits), scales,
    zeroKind: c.zeroKind, zeros, gIdx,
  };
  return { w, ref };
}

// --- codebook: packer and reference decoder ----------------------------------------------------

function packRows(codes: Uint8Array, out: number, inF: number, bits: number): Uint8Array {
  const stride = Math.ceil((inF * bits) / 8);
  const p = new Uint8Array(out * stride);
  for (let j = 0; j < out; j++) {
    for (let i = 0; i < inF; i++) {
      for (let b = 0; b < bits; b++) {
        if ((codes[j * inF + i]! >> b) & 1) {
          const bit = i * bits + b;
          p[j * stride + (bit >> 3)] |= 1 << (bit & 7);
        }
      }
    }
  }
  return p;
}

interface CodebookCase {
  out: number;
  inF: number;
  blockSize: number;
  doubleQuant: boolean;
}

function makeCodebook(c: CodebookCase, bits: number, seed: number): { w: CodebookArrays; ref: Float64Array } {
  const { out, inF, blockSize } = c;
  const r = rng(seed);
  const codes = randCodes(out * inF, bits, seed + 1);
  const levels = Float32Array.from(randF32(1 << bits, seed + 2).sort());
  const blocks = (out * inF) / blockSize;
  const absmax = randF32(blocks, seed + 3, 0.01, 2);
  const w: CodebookArrays = { outFeatures: out, inFeatures: inF, bits, blockSize, codes: packRows(codes, out, inF, bits), levels };
  let scaleOf: (b: number) => number;
  if (c.doubleQuant) {
    const supers = Math.ceil(blocks / 256);
    const aq = new Uint8Array(blocks);
    for (let b = 0; b < blocks; b++) aq[b] = Math.floor(r() * 256);
    const sc = randF32(supers, seed + 4, 1e-4, 1e-2);
    const off = randF32(supers, seed + 5, 0, 0.5);
    Object.assign(w, { absmaxCodes: aq, absmaxScale: sc, absmaxOffset: off });
    scaleOf = (b) => Math.fround(off[b >> 8]! + Math.fround(sc[b >> 8]! * aq[b]!));
  } else {
    w.absmax = absmax;
    scaleOf = (b) => absmax[b]!;
  }
  const ref = new Float64Array(out * inF);
  const perRow = inF / blockSize;
  for (let j = 0; j < out; j++) {
    for (let i = 0; i < inF; i++) {
      ref[j * inF + i] = Math.fround(scaleOf(j * perRow + Math.floor(i / blockSize)) * levels[codes[j * inF + i]!]!);
    }
  }
  return { w, ref };
}

// --- checks ------------------------------------------------------------------------------------

function expectClose(got: Float32Array, want: Float64Array, rtol: number, what: string): void {
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!) / (Math.abs(want[i]!) + 1e-30);
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  expect(worst, `${what}: worst relative error at ${at}: got ${got[at]}, want ${want[at]}`).toBeLessThanOrEqual(rtol);
}

/**
 * C[m, n] = A[m, k] · B with B(p, c) = W[c·k + p] (transposed: W is [n, k]) or W[p·n + c] (W is
 * [k, n]), in f64; also Σ|a·b| per element, the scale of its rounding error.
 */
function refProduct(a: Float32Array, m: number, k: number, n: number, W: Float64Array, transposed: boolean) {
  const c = new Float64Array(m * n), mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, t = 0;
      for (let p = 0; p < k; p++) {
        const v = a[i * k + p]! * (transposed ? W[j * k + p]! : W[p * n + j]!);
        s += v;
        t += Math.abs(v);
      }
      c[i * n + j] = s;
      mag[i * n + j] = t;
    }
  }
  return { c, mag };
}

function expectProduct(got: Float32Array, want: { c: Float64Array; mag: Float64Array }, base: Float32Array | null,
  what: string): void {
  let worst = 0, at = -1;
  for (let i = 0; i < got.length; i++) {
    const w = want.c[i]! + (base ? base[i]! : 0);
    const scale = want.mag[i]! + (base ? Math.abs(base[i]!) : 0) + 1e-30;
    const err = Math.abs(got[i]! - w) / scale;
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  expect(worst, `${what}: worst error at ${at} is ${worst} of Σ|x·ŵ|`).toBeLessThanOrEqual(1e-5);
}

/** Product and dequantize entry points of one format, for table-driven checks. */
interface FormatOps<W> {
  name: string;
  matmul(w: W, x: Float32Array, m: number, y: Float32Array, acc?: boolean): void;
  inputGrad(w: W, dy: Float32Array, m: number, dx: Float32Array, acc?: boolean): void;
  dequantize(w: W, r0: number, r1: number, out: Float32Array): void;
  shape(w: W): { out: number; inF: number };
}

const AFFINE: FormatOps<AffineArrays> = {
  name: "affine", matmul: affineMatmul, inputGrad: affineMatmulInputGrad, dequantize: affineDequantize,
  shape: (w) => ({ out: w.outFeatures, inF: w.inFeatures }),
};
const CODEBOOK: FormatOps<CodebookArrays> = {
  name: "codebook", matmul: codebookMatmul, inputGrad: codebookMatmulInputGrad, dequantize: codebookDequantize,
  shape: (w) => ({ out: w.outFeatures, inF: w.inFeatures }),
};

const MS = [1, 3, 17, 64];

/** Dequantize (whole and a sub-range), then forward and input gradient for every M, overwrite and accumulate. */
function checkWeight<W>(ops: FormatOps<W>, w: W, ref: Float64Array, label: string, seed: number): void {
  const { out, inF } = ops.shape(w);
  const deq = new Float32Array(out * inF);
  ops.dequantize(w, 0, out, deq);
  expectClose(deq, ref, 1e-6, `${label} dequantize`);
  const r0 = Math.floor(out / 3), r1 = Math.min(out, r0 + 5);
  const part = new Float32Array((r1 - r0) * inF);
  ops.dequantize(w, r0, r1, part);
  expectClose(part, ref.subarray(r0 * inF, r1 * inF), 1e-6, `${label} dequantize rows [${r0}, ${r1})`);

  for (const m of MS) {
    const x = randF32(m * inF, seed + m);
    const fwd = refProduct(x, m, inF, out, ref, true);
    const y = new Float32Array(m * out).fill(NaN); // overwrite must ignore what is there
    ops.matmul(w, x, m, y);
    expectProduct(y, fwd, null, `${label} forward m=${m}`);
    const y0 = randF32(m * out, seed + 100 + m);
    const yAcc = y0.slice();
    ops.matmul(w, x, m, yAcc, true);
    expectProduct(yAcc, fwd, y0, `${label} forward accumulate m=${m}`);

    const dy = randF32(m * out, seed + 200 + m);
    const bwd = refProduct(dy, m, out, inF, ref, false);
    const dx = new Float32Array(m * inF).fill(NaN);
    ops.inputGrad(w, dy, m, dx);
    expectProduct(dx, bwd, null, `${label} input grad m=${m}`);
    const dx0 = randF32(m * inF, seed + 300 + m);
    const dxAcc = dx0.slice();
    ops.inputGrad(w, dy, m, dxAcc, true);
    expectProduct(dxAcc, bwd, dx0, `${label} input grad accumulate m=${m}`);
  }
}

/** A larger product (several depth, row and column blocks) also against native sgemm on the native Ŵ. */
function checkLarge<W>(ops: FormatOps<W>, w: W, ref: Float64Array, m: number, label: string): void {
  const { out, inF } = ops.shape(w);
  const deq = new Float32Array(out * inF);
  ops.dequantize(w, 0, out, deq);
  expectClose(deq, ref, 1e-6, `${label} dequantize`);
  const x = randF32(m * inF, 7);
  const y = new Float32Array(m * out);
  ops.matmul(w, x, m, y);
  expectProduct(y, refProduct(x, m, inF, out, ref, true), null, `${label} forward`);
  const dense = new Float32Array(m * out);
  gemm(false, true, m, out, inF, 1, x, inF, 0, deq, inF, 0, 0, dense, out, 0);
  expect(relErr(y, dense), `${label} forward vs sgemm`).toBeLessThan(1e-5);

  const dy = randF32(m * out, 8);
  const dx = new Float32Array(m * inF);
  ops.inputGrad(w, dy, m, dx);
  expectProduct(dx, refProduct(dy, m, out, inF, ref, false), null, `${label} input grad`);
  const denseDx = new Float32Array(m * inF);
  gemm(false, false, m, inF, out, 1, dy, out, 0, deq, inF, 0, 0, denseDx, inF, 0);
  expect(relErr(dx, denseDx), `${label} input grad vs sgemm`).toBeLessThan(1e-5);
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

// --- cases -------------------------------------------------------------------------------------

const AFFINE_CASES: AffineCase[] = [
  { out: 77, inF: 160, group: 32, zeroKind: "int" },     // in a multiple of 32, not of 64
  { out: 77, inF: 160, group: "row", zeroKind: "real" },
  { out: 45, inF: 100, group: "row", zeroKind: "int" },  // in padded to 128 in qweight
  { out: 70, inF: 384, group: 128, zeroKind: "int" },
  { out: 70, inF: 384, group: 128, zeroKind: "real" },
  { out: 33, inF: 288, group: "act", zeroKind: "int" },
  { out: 50, inF: 96, group: "act", zeroKind: "real" },
  { out: 1, inF: 64, group: 32, zeroKind: "real" },
];

const CODEBOOK_CASES: Omit<CodebookCase, "doubleQuant">[] = [
  { out: 77, inF: 160, blockSize: 32 },
  { out: 45, inF: 100, blockSize: 20 },  // rows not a whole number of bytes at 3 bits
  { out: 70, inF: 384, blockSize: 64 },
  { out: 300, inF: 96, blockSize: 32 },  // 900 blocks: several absmax super-blocks
];

const fixtures = new Map<string, { w: unknown; ref: Float64Array }>();
function cached<T>(key: string, make: () => T): T {
  if (!fixtures.has(key)) fixtures.set(key, make() as { w: unknown; ref: Float64Array });
  return fixtures.get(key) as T;
}
const affineFixture = (c: AffineCase, bits: number, seed: number) =>
  cached(`a${JSON.stringify(c)}/${bits}`, () => makeAffine(c, bits, seed));
const codebookFixture = (c: CodebookCase, bits: number, seed: number) =>
  cached(`c${JSON.stringify(c)}/${bits}`, () => makeCodebook(c, bits, seed));

const LARGE_AFFINE: AffineCase = { out: 600, inF: 800, group: "act", zeroKind: "int" };
const LARGE_CODEBOOK: CodebookCase = { out: 600, inF: 800, blockSize: 32, doubleQuant: true };
const LARGE_M = 200;

describe.each(supportedIsas())("quantized matmul on the %s path", (isa) => {
  beforeAll(() => setIsa(isa));
  afterAll(() => setIsa(initialIsa));

  it("reports the path in use", () => {
    const info = quantMatmulInfo();
    expect(info.isa).toBe(isa);
    expect(info.nc % info.nr).toBe(0);
    expect(info.kc).toBeGreaterThan(0);
  });

  it.each([2, 3, 4, 8])("affine %i-bit: dequantize, forward, input gradient (row/32/128/act-order groups, int/real zeros)", (bits) => {
    AFFINE_CASES.forEach((c, k) => {
      const { w, ref } = affineFixture(c, bits, 1000 * bits + 10 * k);
      checkWeight(AFFINE, w, ref, `${isa} affine ${bits}-bit ${JSON.stringify(c)}`, 17 * k);
    });
  });

  it.each([1, 2, 3, 4])("codebook %i-bit: dequantize, forward, input gradient (plain and double-quantized absmax)", (bits) => {
    CODEBOOK_CASES.forEach((c, k) => {
      for (const doubleQuant of [false, true]) {
        const { w, ref } = codebookFixture({ ...c, doubleQuant }, bits, 2000 * bits + 10 * k);
        checkWeight(CODEBOOK, w, ref, `${isa} codebook ${bits}-bit dq=${doubleQuant} ${JSON.stringify(c)}`, 23 * k);
      }
    });
  });

  it("large: 3-bit affine act-order and 3-bit double-quantized codebook, 200 x [800 -> 600]", () => {
    const a = affineFixture(LARGE_AFFINE, 3, 77);
    checkLarge(AFFINE, a.w, a.ref, LARGE_M, `${isa} affine large`);
    const c = codebookFixture(LARGE_CODEBOOK, 3, 78);
    checkLarge(CODEBOOK, c.w, c.ref, LARGE_M, `${isa} codebook large`);
  });
});

// --- threads and memory ------------------------------------------------------------------------

describe("quantized matmul threading and memory", () => {
  afterAll(() => setNumThreads(initialThreads));

  it("gives bit-identical results with 1, 2 and 3 threads", () => {
    const bytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
    const a = affineFixture(LARGE_AFFINE, 3, 77).w;
    const c = codebookFixture(LARGE_CODEBOOK, 3, 78).w;
    const runs: [string, (t: number) => Float32Array][] = [];
    for (const m of [1, 5, LARGE_M]) {
      const x = randF32(m * 800, m), dy = randF32(m * 600, m + 1);
      runs.push([`affine forward m=${m}`, () => { const y = new Float32Array(m * 600); affineMatmul(a, x, m, y); return y; }]);
      runs.push([`affine input grad m=${m}`, () => { const d = new Float32Array(m * 800); affineMatmulInputGrad(a, dy, m, d); return d; }]);
      runs.push([`codebook forward m=${m}`, () => { const y = new Float32Array(m * 600); codebookMatmul(c, x, m, y); return y; }]);
      runs.push([`codebook input grad m=${m}`, () => { const d = new Float32Array(m * 800); codebookMatmulInputGrad(c, dy, m, d); return d; }]);
    }
    for (const [name, run] of runs) {
      const results = [1, 2, 3].map((t) => {
        setNumThreads(t);
        return run(t);
      });
      expect(bytes(results[1]!).equals(bytes(results[0]!)), `${name}: 2 threads`).toBe(true);
      expect(bytes(results[2]!).equals(bytes(results[0]!)), `${name}: 3 threads`).toBe(true);
    }
  });

  it("keeps scratch bounded: a 2048 x 2048 forward grows peak memory far below out x in x 4 bytes", () => {
    setNumThreads(1);
    setNumThreads(2); // a fresh worker, whose packing buffers are allocated during the call
    const n = 2048, m = 64;
    const words = (n / 32) * 4;
    const w: AffineArrays = {
      outFeatures: n, inFeatures: n, bits: 4, groupSize: 128, groups: n / 128,
      qweight: new Int32Array(words * n).map((_, i) => Math.imul(i, 2654435761)),
      scales: new Uint16Array((n / 128) * n).fill(0x2000), zeroKind: "int", zeros: new Uint8Array((n / 128) * n).fill(8),
    };
    const x = randF32(m * n, 3), y = new Float32Array(m * n), dx = new Float32Array(m * n);
    for (const run of [() => affineMatmul(w, x, m, y), () => affineMatmulInputGrad(w, x, m, dx)]) {
      resetPeakMemory();
      const before = nativeMemoryStats().bytes;
      run();
      const growth = nativeMemoryStats().peakBytes - before;
      // Per-thread packed blocks (about 1 MiB each), not the 16 MiB an f32 copy of Ŵ would take.
      expect(growth).toBeLessThan((n * n * 4) / 4);
    }
  });
});

// --- argument checks ---------------------------------------------------------------------------

describe("quantized matmul argument checks", () => {
  const out = 6, inF = 64, m = 2;
  const aff = (): AffineArrays => ({
    outFeatures: out, inFeatures: inF, bits: 3, groupSize: 32, groups: 2,
    qweight: new Int32Array(2 * 3 * out), scales: new Uint16Array(2 * out), zeroKind: "int", zeros: new Uint8Array(2 * out),
  });
  const cb = (): CodebookArrays => ({
    outFeatures: out, inFeatures: inF, bits: 4, blockSize: 32, codes: new Uint8Array(out * 32),
    levels: new Float32Array(16), absmax: new Float32Array(out * 2),
  });
  const x = () => new Float32Array(m * inF);
  const y = () => new Float32Array(m * out);
  const bad = (fn: () => void, op: string, pattern: string) => expect(fn).toThrow(new RegExp(`^${op}: .*${pattern}`));

  it("accepts the valid calls", () => {
    expect(() => affineMatmul(aff(), x(), m, y(), true)).not.toThrow();
    expect(() => affineMatmulInputGrad(aff(), y(), m, x())).not.toThrow();
    expect(() => affineDequantize(aff(), 1, 3, new Float32Array(2 * inF))).not.toThrow();
    expect(() => codebookMatmul(cb(), x(), m, y())).not.toThrow();
    expect(() => affineMatmul(aff(), new Float32Array(0), 0, new Float32Array(0))).not.toThrow();
  });

  it("rejects wrong array types and lengths, naming the op and argument", () => {
    bad(() => affineMatmul({ ...aff(), qweight: new Float32Array(36) as unknown as Int32Array }, x(), m, y()), "affineMatmul", "'qweight'.*Int32Array");
    bad(() => affineMatmul({ ...aff(), qweight: new Int32Array(35) }, x(), m, y()), "affineMatmul", "'qweight' holds 35 elements, expected");
    bad(() => affineMatmul({ ...aff(), scales: new Uint16Array(13) }, x(), m, y()), "affineMatmul", "'scales' holds 13");
    bad(() => affineMatmul({ ...aff(), zeroKind: "real" }, x(), m, y()), "affineMatmul", "'zeros'.*Uint16Array");
    bad(() => affineMatmul({ ...aff(), zeroKind: "half" as "int" }, x(), m, y()), "affineMatmul", "'zeroKind'");
    bad(() => affineMatmul(aff(), new Float32Array(m * inF + 1), m, y()), "affineMatmul", "'x' holds 129");
    bad(() => affineMatmul(aff(), x(), m, new Float32Array(m * out - 1)), "affineMatmul", "'y' holds 11");
    bad(() => affineMatmulInputGrad(aff(), x(), m, y()), "affineMatmulInputGrad", "'dy' holds 128");
    bad(() => affineDequantize(aff(), 0, out, new Float32Array(3)), "affineDequantize", "'out' holds 3");
    bad(() => codebookMatmul({ ...cb(), codes: new Uint8Array(out * 32 - 1) }, x(), m, y()), "codebookMatmul", "'codes' holds");
    bad(() => codebookMatmul({ ...cb(), levels: new Float32Array(8) }, x(), m, y()), "codebookMatmul", "'levels' holds 8 elements, expected 2\\^bits = 16");
  });

  it("rejects invalid bits, groupings, group indices and rows", () => {
    bad(() => affineMatmul({ ...aff(), bits: 5 }, x(), m, y()), "affineMatmul", "'bits' must be 2, 3, 4 or 8");
    bad(() => codebookMatmul({ ...cb(), bits: 8 }, x(), m, y()), "codebookMatmul", "'bits' must be 1, 2, 3 or 4");
    bad(() => affineMatmul({ ...aff(), groupSize: 48 }, x(), m, y()), "affineMatmul", "groupSize × groups must equal inFeatures");
    bad(() => affineMatmul({ ...aff(), gIdx: new Int32Array(inF).fill(2) }, x(), m, y()), "affineMatmul", "gIdx\\[0\\] = 2 is not a group");
    bad(() => affineMatmul({ ...aff(), gIdx: new Int32Array(inF - 1) }, x(), m, y()), "affineMatmul", "'gIdx' holds 63");
    bad(() => codebookMatmul({ ...cb(), blockSize: 24 }, x(), m, y()), "codebookMatmul", "'blockSize' = 24 does not divide");
    bad(() => affineMatmul(aff(), x(), -1, y()), "affineMatmul", "'m'");
    bad(() => affineMatmul(aff(), x(), 1.5, y()), "affineMatmul", "'m'");
    bad(() => affineDequantize(aff(), 4, 2, new Float32Array(0)), "affineDequantize", "rows \\[4, 2\\)");
    bad(() => codebookDequantize(cb(), 0, out + 1, new Float32Array((out + 1) * inF)), "codebookDequantize", "rows \\[0, 7\\)");
  });

  it("rejects ambiguous or missing codebook scales and aliased outputs", () => {
    const dq = { absmaxCodes: new Uint8Array(out * 2), absmaxScale: new Float32Array(1), absmaxOffset: new Float32Array(1) };
    bad(() => codebookMatmul({ ...cb(), ...dq }, x(), m, y()), "codebookMatmul", "not both");
    bad(() => codebookMatmul({ ...cb(), absmax: null, absmaxCodes: dq.absmaxCodes }, x(), m, y()), "codebookMatmul", "missing");
    expect(() => codebookMatmul({ ...cb(), absmax: null, ...dq }, x(), m, y())).not.toThrow();
    bad(() => codebookMatmul({ ...cb(), absmax: null, ...dq, absmaxScale: new Float32Array(2) }, x(), m, y()), "codebookMatmul", "'absmaxScale' holds 2");
    const buf = new Float32Array(m * inF + m * out);
    bad(() => affineMatmul(aff(), buf.subarray(0, m * inF), m, buf.subarray(m * inF - 1, m * inF - 1 + m * out)), "affineMatmul", "'y' overlaps 'x'");
  });

  it("checks the argument count of the raw bindings", () => {
    const raw = native() as unknown as Record<string, (...a: unknown[]) => unknown>;
    expect(() => raw.affineMatmul!(1, 2)).toThrow(/^affineMatmul: expected 14 arguments/);
    expect(() => raw.codebookDequantize!()).toThrow(/^codebookDequantize: expected 13 arguments/);
  });
});
