// GEMM against a plain TS f64 reference: every ISA path, transpose combination, odd sizes, padded
// leading dimensions, alpha/beta, batches with broadcast, f64, thread-count independence and the
// argument checks at the native boundary.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  cpuInfo, gemm, gemmInfo, getNumThreads, native, setIsa, setNumThreads, type FloatArray, type Isa,
} from "../ts/index.js";
import { rng } from "./helpers.js";

// --- reference and helpers ----------------------------------------------------------------------

type FloatCtor = Float32ArrayConstructor | Float64ArrayConstructor;


function randArray(C: FloatCtor, n: number, seed: number): FloatArray {
  const r = rng(seed);
  const a = new C(n);
  for (let i = 0; i < n; i++) a[i] = 2 * r() - 1;
  return a;
}

/** One GEMM problem: shapes, layout and scalars (strides default to packed matrices). */
interface Case {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  alpha: number;
  beta: number;
  lda: number;
  ldb: number;
  ldc: number;
  strideA: number;
  strideB: number;
  strideC: number;
  batch: number;
}

function makeCase(p: Partial<Case> & { m: number; n: number; k: number }, pad = 0): Case {
  const transA = p.transA ?? false;
  const transB = p.transB ?? false;
  const lda = p.lda ?? (transA ? p.m : p.k) + pad;
  const ldb = p.ldb ?? (transB ? p.k : p.n) + pad;
  const ldc = p.ldc ?? p.n + pad;
  return {
    transA, transB, m: p.m, n: p.n, k: p.k, alpha: p.alpha ?? 1, beta: p.beta ?? 0, lda, ldb, ldc,
    strideA: p.strideA ?? (transA ? p.k : p.m) * lda,
    strideB: p.strideB ?? (transB ? p.n : p.k) * ldb,
    strideC: p.strideC ?? p.m * ldc,
    batch: p.batch ?? 1,
  };
}

// Elements an operand needs: the last matrix's last element plus one (0 when empty).
function extent(rows: number, cols: number, ld: number, stride: number, batch: number): number {
  return rows === 0 || cols === 0 ? 0 : (batch - 1) * stride + (rows - 1) * ld + cols;
}
const lenA = (c: Case) => extent(c.transA ? c.k : c.m, c.transA ? c.m : c.k, c.lda, c.strideA, c.batch);
const lenB = (c: Case) => extent(c.transB ? c.n : c.k, c.transB ? c.k : c.n, c.ldb, c.strideB, c.batch);
const lenC = (c: Case) => extent(c.m, c.n, c.ldc, c.strideC, c.batch);

/** f64 reference: C = alpha op(A) op(B) + beta C (beta == 0 ignores C). */
function refGemm(c: Case, a: FloatArray, b: FloatArray, cIn: FloatArray): Float64Array {
  const out = Float64Array.from(cIn);
  for (let t = 0; t < c.batch; t++) {
    const oa = t * c.strideA, ob = t * c.strideB, oc = t * c.strideC;
    for (let i = 0; i < c.m; i++) {
      for (let j = 0; j < c.n; j++) {
        let s = 0;
        for (let p = 0; p < c.k; p++) {
          const av = c.transA ? a[oa + p * c.lda + i] : a[oa + i * c.lda + p];
          const bv = c.transB ? b[ob + j * c.ldb + p] : b[ob + p * c.ldb + j];
          s += av * bv;
        }
        const idx = oc + i * c.ldc + j;
        out[idx] = c.alpha * s + (c.beta === 0 ? 0 : c.beta * out[idx]);
      }
    }
  }
  return out;
}

function runGemm(c: Case, a: FloatArray, b: FloatArray, out: FloatArray): void {
  gemm(c.transA, c.transB, c.m, c.n, c.k, c.alpha, a, c.lda, c.strideA, b, c.ldb, c.strideB, c.beta, out, c.ldc,
    c.strideC, c.batch);
}

/**
 * Runs a case and compares every element of C (including the padding between rows, which must
 * be left alone) with the reference. f32 tolerance scales with sqrt(k) and the magnitude of the
 * terms (inputs are in [-1, 1]).
 */
function check(C: FloatCtor, c: Case, seed: number, nanC = false): void {
  const a = randArray(C, lenA(c), seed);
  const b = randArray(C, lenB(c), seed + 1);
  const out = randArray(C, lenC(c), seed + 2);
  if (nanC) out.fill(NaN);
  const want = refGemm(c, a, b, out);
  runGemm(c, a, b, out);
  // Worst-case rounding grows with k (inputs in [-1, 1]); a wrong element is off by O(1).
  const scale = Math.abs(c.alpha) * c.k + Math.abs(c.beta) + 1;
  const tol = (C === Float32Array ? 5e-7 : 1e-15) * scale;
  let worst = 0;
  for (let i = 0; i < out.length; i++) {
    const padding = (i % c.strideC) >= c.m * c.ldc || (i % c.strideC) % c.ldc >= c.n;
    if (padding && !nanC) expect(out[i]).toBe(want[i]);
    else if (!padding) worst = Math.max(worst, Math.abs(out[i] - want[i]));
  }
  expect(worst, `${C.name} ${JSON.stringify(c)}`).toBeLessThanOrEqual(tol);
}

// --- correctness on every ISA path -----------------------------------------------------------

function supportedIsas(): Isa[] {
  const info = cpuInfo();
  const isas: Isa[] = ["generic"];
  if (info.avx2) isas.push("avx2");
  if (info.avx512) isas.push("avx512");
  return isas;
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1], [7, 5, 3], [1, 33, 17], [33, 1, 17], [1, 1, 65], [6, 16, 8], [14, 32, 9], [15, 33, 100],
  [33, 65, 7], [65, 100, 257], [100, 7, 33], [257, 65, 40],
];
const TRANS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

const initialIsa = cpuInfo().active;
const initialThreads = getNumThreads();
afterAll(() => {
  setIsa(initialIsa);
  setNumThreads(initialThreads);
});

describe.each(supportedIsas())("gemm on the %s path", (isa) => {
  beforeAll(() => setIsa(isa));
  afterAll(() => setIsa(initialIsa));

  it("reports the kernel in use", () => {
    const info = gemmInfo();
    expect(info.isa).toBe(isa);
    expect(info.mr).toBeGreaterThan(0);
    expect(info.nr).toBeGreaterThan(0);
    expect(info.mc % info.mr).toBe(0);
    expect(info.nc % info.nr).toBe(0);
    expect(info.kc).toBeGreaterThan(0);
  });

  it.each(TRANS)("f32 odd sizes, transA=%s transB=%s, alpha and beta", (transA, transB) => {
    let seed = 1;
    for (const [m, n, k] of SHAPES) {
      check(Float32Array, makeCase({ m, n, k, transA, transB, alpha: 0.75, beta: -0.5 }), seed++);
      check(Float32Array, makeCase({ m, n, k, transA, transB, alpha: -1.25, beta: 1 }, 3), seed++);
    }
  });

  it.each(TRANS)("f64, transA=%s transB=%s, padded leading dimensions", (transA, transB) => {
    let seed = 100;
    for (const [m, n, k] of SHAPES) check(Float64Array, makeCase({ m, n, k, transA, transB, alpha: 1.5, beta: 0.25 }, 5), seed++);
  });

  it("beta = 0 overwrites a NaN-filled C (f32 and f64, matrix and vector shapes)", () => {
    for (const C of [Float32Array, Float64Array]) {
      for (const [m, n, k] of [[33, 65, 17], [1, 40, 30], [40, 1, 30], [1, 1, 5]] as const) {
        for (const [transA, transB] of TRANS) check(C, makeCase({ m, n, k, transA, transB, alpha: 2, beta: 0 }, 2), 7, true);
      }
    }
  });

  it("k = 0 and alpha = 0 scale C by beta", () => {
    for (const C of [Float32Array, Float64Array]) {
      check(C, makeCase({ m: 5, n: 7, k: 0, beta: 0.5 }, 1), 3);
      check(C, makeCase({ m: 5, n: 7, k: 0, beta: 0 }, 1), 4, true);
      check(C, makeCase({ m: 9, n: 33, k: 12, alpha: 0, beta: -2 }, 1), 5);
    }
    // Empty A and B may be zero-length arrays when k == 0.
    const out = new Float32Array([1, 2, 3, 4]);
    gemm(false, false, 2, 2, 0, 1, new Float32Array(0), 0, 0, new Float32Array(0), 2, 0, 3, out, 2, 0);
    expect(Array.from(out)).toEqual([3, 6, 9, 12]);
    // m == 0 or n == 0 touches nothing.
    gemm(false, false, 0, 3, 4, 1, new Float32Array(0), 4, 0, new Float32Array(12), 3, 0, 0, new Float32Array(0), 3, 0);
  });

  it("batched, with padded strides and stride-0 broadcast of A or B", () => {
    let seed = 300;
    for (const C of [Float32Array, Float64Array]) {
      for (const [transA, transB] of TRANS) {
        check(C, makeCase({ m: 17, n: 9, k: 13, transA, transB, batch: 3, alpha: 0.5, beta: 0.5 }, 2), seed++);
        const base = makeCase({ m: 20, n: 35, k: 11, transA, transB, batch: 4, beta: 1 }, 1);
        check(C, { ...base, strideA: 0 }, seed++);
        check(C, { ...base, strideB: 0 }, seed++);
        check(C, { ...base, strideC: base.strideC + 7 }, seed++);
        check(C, makeCase({ m: 1, n: 50, k: 20, transA, transB, batch: 5 }), seed++);
      }
    }
  });

  it("large-ish 300 x 500 x 400 (f32, relative tolerance)", () => {
    const { c, a, b, want } = large();
    const out = new Float32Array(lenC(c));
    runGemm(c, a, b, out);
    let num = 0, den = 0;
    for (let i = 0; i < out.length; i++) {
      num += (out[i] - want[i]) ** 2;
      den += want[i] ** 2;
    }
    expect(Math.sqrt(num / den)).toBeLessThan(1e-6);
  });
});

// The large case's reference takes ~1 s in JS: compute it once for all ISA paths.
let largeCache: { c: Case; a: FloatArray; b: FloatArray; want: Float64Array } | undefined;
function large() {
  if (!largeCache) {
    const c = makeCase({ m: 300, n: 500, k: 400, transB: true }, 4);
    const a = randArray(Float32Array, lenA(c), 11);
    const b = randArray(Float32Array, lenB(c), 12);
    largeCache = { c, a, b, want: refGemm(c, a, b, new Float32Array(lenC(c))) };
  }
  return largeCache;
}

// --- threads -----------------------------------------------------------------------------------

describe("gemm threading", () => {
  afterAll(() => setNumThreads(initialThreads));

  it("gives bit-identical results with 1, 2 and 3 threads", () => {
    const cases: [FloatCtor, Case][] = [
      [Float32Array, makeCase({ m: 203, n: 301, k: 150, beta: 0.5 }, 1)],
      [Float32Array, makeCase({ m: 301, n: 203, k: 150, transA: true, transB: true })],
      [Float32Array, makeCase({ m: 1, n: 3000, k: 200, beta: 1 })],
      [Float32Array, makeCase({ m: 3000, n: 1, k: 200, transA: true })],
      [Float32Array, makeCase({ m: 60, n: 70, k: 80, batch: 5, beta: 1 })],
      [Float64Array, makeCase({ m: 150, n: 170, k: 90, transB: true })],
    ];
    let seed = 500;
    for (const [C, c] of cases) {
      const a = randArray(C, lenA(c), seed++);
      const b = randArray(C, lenB(c), seed++);
      const c0 = randArray(C, lenC(c), seed++);
      const results = [1, 2, 3].map((threads) => {
        setNumThreads(threads);
        const out = c0.slice();
        runGemm(c, a, b, out);
        return out;
      });
      const bytes = (x: FloatArray) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
      expect(bytes(results[1]).equals(bytes(results[0])), `2 threads ${JSON.stringify(c)}`).toBe(true);
      expect(bytes(results[2]).equals(bytes(results[0])), `3 threads ${JSON.stringify(c)}`).toBe(true);
    }
  });

  it("runs a batch of small products in parallel over the batch (nested calls run inline)", () => {
    setNumThreads(2);
    const c = makeCase({ m: 8, n: 8, k: 8, batch: 64 });
    check(Float32Array, c, 900);
  });
});

// --- argument checks -----------------------------------------------------------------------------

describe("gemm argument checks", () => {
  const f32 = (n: number) => new Float32Array(n);
  // A valid call: m=2, n=3, k=4, batch=2, packed strides.
  type Args = Parameters<typeof gemm>;
  const good = (): Args => [false, false, 2, 3, 4, 1, f32(16), 4, 8, f32(24), 3, 12, 0, f32(12), 3, 6, 2];
  const bad = (index: number, value: unknown): Args => {
    const args = good();
    (args as unknown[])[index] = value;
    return args;
  };
  const expectError = (args: Args, name: string) => {
    expect(() => gemm(...args)).toThrow(new RegExp(`^gemm: .*'${name}'`));
  };

  it("accepts the valid call and exact array lengths", () => {
    expect(() => gemm(...good())).not.toThrow();
    // transA/transB with exact lengths: A stored k x m, B stored n x k.
    expect(() => gemm(true, true, 2, 3, 4, 1, f32(16), 2, 8, f32(24), 4, 12, 0, f32(12), 3, 6, 2)).not.toThrow();
  });

  it.each([
    [0, "x", "transA"], [1, 1, "transB"], [2, -1, "m"], [3, 2.5, "n"], [4, NaN, "k"], [5, "1", "alpha"],
    [6, [1, 2], "a"], [6, new Int32Array(16), "a"], [7, 3, "lda"], [7, -4, "lda"], [8, -1, "strideA"],
    [9, null, "b"], [10, 2, "ldb"], [11, 0.5, "strideB"], [12, undefined, "beta"], [13, {}, "c"],
    [14, 2, "ldc"], [15, -6, "strideC"], [15, 5, "strideC"], [16, 0, "batch"], [16, 1.5, "batch"],
  ])("argument %i = %s is rejected naming '%s'", (index, value, name) => {
    expectError(bad(index, value), name);
  });

  it("rejects arrays one element too short for the last matrix of the batch", () => {
    expectError(bad(6, f32(15)), "a");
    expectError(bad(9, f32(23)), "b");
    expectError(bad(13, f32(11)), "c");
    expectError([true, false, 2, 3, 4, 1, f32(15), 2, 8, f32(24), 3, 12, 0, f32(12), 3, 6, 2], "a");
    expectError([false, true, 2, 3, 4, 1, f32(16), 4, 8, f32(23), 4, 12, 0, f32(12), 3, 6, 2], "b");
  });

  it("rejects mixed element types and non-float arrays", () => {
    expectError(bad(9, new Float64Array(24)), "b");
    expectError(bad(13, new Float64Array(12)), "c");
    expectError(bad(13, new Uint16Array(12)), "c");
  });

  it("rejects transposed leading dimensions below m / k", () => {
    expectError([true, false, 5, 3, 4, 1, f32(40), 4, 0, f32(12), 3, 0, 0, f32(15), 3, 0, 1], "lda");
    expectError([false, true, 2, 3, 4, 1, f32(8), 4, 0, f32(12), 3, 0, 0, f32(6), 3, 0, 1], "ldb");
  });

  it("checks the argument count of the raw binding", () => {
    const raw = native() as unknown as { gemm: (...args: unknown[]) => void };
    expect(() => raw.gemm(false, false, 1, 1, 1)).toThrow(/^gemm: expected 17 arguments/);
  });
});
