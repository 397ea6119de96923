// Fused attention kernels against a plain TS f64 reference (scores -> softmax -> weighted sum, and
// the textbook backward): block-boundary and odd sizes, causal and not, KV-cache shapes (S > T),
// grouped-query heads, broadcast and padding masks incl. fully masked rows, every ISA path, thread
// counts and backward modes, and the argument checks at the native boundary.
import { afterAll, describe, expect, it } from "vitest";
import {
  attentionBackward, attentionBackwardMode, attentionBlockSizes, attentionForward, cpuInfo, getNumThreads,
  native, setIsa, setNumThreads, type AttentionDims, type FloatArray, type Isa,
} from "../ts/index.js";
import { rng } from "./helpers.js";

// --- reference -----------------------------------------------------------------------------------

type FloatCtor = Float32ArrayConstructor | Float64ArrayConstructor;


function randArray(C: FloatCtor, n: number, seed: number, amp = 1): FloatArray {
  const r = rng(seed);
  const a = new C(n);
  for (let i = 0; i < n; i++) a[i] = amp * (2 * r() - 1);
  return a;
}

interface Mask {
  data: FloatArray;
  strides: [number, number, number, number];
}

interface Problem {
  dims: AttentionDims;
  causal: boolean;
  scale: number;
  mask: Mask | null;
  q: FloatArray;
  k: FloatArray;
  v: FloatArray;
  dout: FloatArray;
}

function maskAt(m: Mask | null, b: number, h: number, t: number, j: number): number {
  if (!m) return 0;
  return m.data[b * m.strides[0] + h * m.strides[1] + t * m.strides[2] + j * m.strides[3]]!;
}

/** Probabilities P[b][h][t][j] in f64 (rows with every key masked are all 0). */
function refProbs(p: Problem): Float64Array {
  const { batch: B, queryLen: T, keyLen: S, queryHeads: Hq, kvHeads: Hkv, headDim: D } = p.dims;
  const G = Hq / Hkv;
  const P = new Float64Array(B * Hq * T * S);
  const row = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / G);
      for (let t = 0; t < T; t++) {
        let mx = -Infinity;
        for (let j = 0; j < S; j++) {
          let s = -Infinity;
          if (!p.causal || j <= S - T + t) {
            let dot = 0;
            for (let c = 0; c < D; c++) dot += p.q[((b * T + t) * Hq + h) * D + c]! * p.k[((b * S + j) * Hkv + g) * D + c]!;
            s = p.scale * dot + maskAt(p.mask, b, h, t, j);
          }
          row[j] = s;
          if (s > mx) mx = s;
        }
        const base = ((b * Hq + h) * T + t) * S;
        if (mx === -Infinity) continue;
        let sum = 0;
        for (let j = 0; j < S; j++) sum += Math.exp(row[j]! - mx);
        for (let j = 0; j < S; j++) P[base + j] = Math.exp(row[j]! - mx) / sum;
      }
    }
  }
  return P;
}

function refForward(p: Problem): { out: Float64Array; P: Float64Array } {
  const { batch: B, queryLen: T, keyLen: S, queryHeads: Hq, kvHeads: Hkv, headDim: D } = p.dims;
  const G = Hq / Hkv;
  const P = refProbs(p);
  const out = new Float64Array(B * T * Hq * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      for (let t = 0; t < T; t++) {
        const base = ((b * Hq + h) * T + t) * S;
        for (let j = 0; j < S; j++) {
          const w = P[base + j]!;
          if (w === 0) continue;
          for (let c = 0; c < D; c++) out[((b * T + t) * Hq + h) * D + c]! += w * p.v[((b * S + j) * Hkv + Math.floor(h / G)) * D + c]!;
        }
      }
    }
  }
  return { out, P };
}

/** dq, dk, dv from the textbook formulas: dS = P ∘ (dP − rowsum(P ∘ dP)). */
function refBackward(p: Problem): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { batch: B, queryLen: T, keyLen: S, queryHeads: Hq, kvHeads: Hkv, headDim: D } = p.dims;
  const G = Hq / Hkv;
  const P = refProbs(p);
  const dq = new Float64Array(B * T * Hq * D);
  const dk = new Float64Array(B * S * Hkv * D);
  const dv = new Float64Array(B * S * Hkv * D);
  const dP = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / G);
      for (let t = 0; t < T; t++) {
        const base = ((b * Hq + h) * T + t) * S;
        const qo = ((b * T + t) * Hq + h) * D;
        let rs = 0;
        for (let j = 0; j < S; j++) {
          let dot = 0;
          for (let c = 0; c < D; c++) dot += p.dout[qo + c]! * p.v[((b * S + j) * Hkv + g) * D + c]!;
          dP[j] = dot;
          rs += P[base + j]! * dot;
        }
        for (let j = 0; j < S; j++) {
          const pj = P[base + j]!;
          const ds = pj * (dP[j]! - rs);
          const ko = ((b * S + j) * Hkv + g) * D;
          for (let c = 0; c < D; c++) {
            dv[ko + c]! += pj * p.dout[qo + c]!;
            dq[qo + c]! += p.scale * ds * p.k[ko + c]!;
            dk[ko + c]! += p.scale * ds * p.q[qo + c]!;
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}

// --- running the kernels -------------------------------------------------------------------------

interface CaseSpec {
  B?: number;
  T: number;
  S?: number;
  Hq?: number;
  Hkv?: number;
  D?: number;
  causal?: boolean;
  scale?: number;
  mask?: "none" | "ts" | "bhts" | "b1ts" | "padding" | "fullrows" | "strided";
  seed?: number;
}

function makeProblem(C: FloatCtor, spec: CaseSpec): Problem {
  const B = spec.B ?? 1, T = spec.T, S = spec.S ?? T, Hq = spec.Hq ?? 2, Hkv = spec.Hkv ?? Hq, D = spec.D ?? 8;
  const seed = spec.seed ?? 1;
  const dims: AttentionDims = { batch: B, queryLen: T, keyLen: S, queryHeads: Hq, kvHeads: Hkv, headDim: D };
  const r = rng(seed + 99);
  let mask: Mask | null = null;
  switch (spec.mask ?? "none") {
    case "ts": // [T, S] broadcast over batch and heads
      mask = { data: randArray(C, T * S, seed + 7, 2), strides: [0, 0, S, 1] };
      break;
    case "bhts":
      mask = { data: randArray(C, B * Hq * T * S, seed + 7, 2), strides: [Hq * T * S, T * S, S, 1] };
      break;
    case "b1ts": // per batch, shared by heads
      mask = { data: randArray(C, B * T * S, seed + 7, 2), strides: [T * S, 0, S, 1] };
      break;
    case "padding": { // [B, 1, 1, S]: the last keys of each batch entry are padding (-inf)
      const data = new C(B * S);
      for (let b = 0; b < B; b++) for (let j = 0; j < S; j++) data[b * S + j] = j >= S - 1 - b ? -Infinity : 0;
      mask = { data, strides: [S, 0, 0, 1] };
      break;
    }
    case "fullrows": { // [B, Hq, T, S] with some rows entirely -inf and other entries sparse -inf
      const data = new C(B * Hq * T * S);
      for (let i = 0; i < data.length; i++) data[i] = r() < 0.2 ? -Infinity : r() - 0.5;
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < Hq; h++) {
          for (let t = 0; t < T; t += 3) {
            for (let j = 0; j < S; j++) data[((b * Hq + h) * T + t) * S + j] = -Infinity;
          }
        }
      }
      mask = { data, strides: [Hq * T * S, T * S, S, 1] };
      break;
    }
    case "strided": { // a transposed [S, T] buffer read as [T, S] (key stride != 1)
      mask = { data: randArray(C, T * S, seed + 7, 2), strides: [0, 0, 1, T] };
      break;
    }
  }
  return {
    dims, causal: spec.causal ?? true, scale: spec.scale ?? 1 / Math.sqrt(D), mask,
    q: randArray(C, B * T * Hq * D, seed),
    k: randArray(C, B * S * Hkv * D, seed + 1),
    v: randArray(C, B * S * Hkv * D, seed + 2),
    dout: randArray(C, B * T * Hq * D, seed + 3),
  };
}

function runForward(p: Problem): { out: FloatArray; lse: FloatArray } {
  const { batch: B, queryLen: T, queryHeads: Hq, headDim: D } = p.dims;
  const C = p.q.constructor as FloatCtor;
  const out = new C(B * T * Hq * D);
  const lse = new C(B * Hq * T);
  attentionForward(p.dims, p.q, p.k, p.v, out, lse, { scale: p.scale, causal: p.causal, mask: p.mask });
  return { out, lse };
}

function runBackward(p: Problem, mode: "auto" | "fused" | "split" = "auto") {
  const { batch: B, queryLen: T, keyLen: S, queryHeads: Hq, kvHeads: Hkv, headDim: D } = p.dims;
  const C = p.q.constructor as FloatCtor;
  const { out, lse } = runForward(p);
  const dq = new C(B * T * Hq * D).fill(NaN); // overwritten, not accumulated
  const dk = new C(B * S * Hkv * D).fill(NaN);
  const dv = new C(B * S * Hkv * D).fill(NaN);
  attentionBackward(p.dims, p.q, p.k, p.v, out, lse, p.dout, dq, dk, dv, { scale: p.scale, causal: p.causal, mask: p.mask, mode });
  return { out, lse, dq, dk, dv };
}

/** max |a − b| / (1 + max |b|): a relative error that tolerates entries near 0. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d;
  }
  return m / (1 + scale);
}

function allFinite(a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return false;
  return true;
}

const TOL = { f32: 2e-6, f64: 1e-12 };

function checkCase(C: FloatCtor, spec: CaseSpec, f32Tol = TOL.f32, mode: "auto" | "fused" | "split" = "auto"): void {
  const p = makeProblem(C, spec);
  const tol = C === Float64Array ? TOL.f64 : f32Tol;
  const got = runBackward(p, mode);
  const ref = refForward(p);
  const grads = refBackward(p);
  expect(allFinite(got.out) && allFinite(got.dq) && allFinite(got.dk) && allFinite(got.dv)).toBe(true);
  expect(relErr(got.out, ref.out)).toBeLessThan(tol);
  expect(relErr(got.dq, grads.dq)).toBeLessThan(tol);
  expect(relErr(got.dk, grads.dk)).toBeLessThan(tol);
  expect(relErr(got.dv, grads.dv)).toBeLessThan(tol);
}

function isas(): Isa[] {
  const info = cpuInfo();
  const list: Isa[] = ["generic"];
  if (info.avx2) list.push("avx2");
  if (info.avx512) list.push("avx512");
  return list;
}

const initialIsa = cpuInfo().active;
const initialThreads = getNumThreads();
afterAll(() => {
  setIsa(initialIsa);
  setNumThreads(initialThreads);
});

// --- tests ---------------------------------------------------------------------------------------

describe("attention kernels vs the f64 reference", () => {
  it("uses 64-row query blocks and 128 / 64-key blocks (the sizes below straddle them)", () => {
    expect(attentionBlockSizes()).toEqual({ query: 64, keyForward: 128, keyBackward: 64 });
  });

  for (const [name, C] of [["f32", Float32Array], ["f64", Float64Array]] as const) {
    describe(name, () => {
      for (const T of [1, 63, 64, 65, 127, 129]) {
        for (const causal of [true, false]) {
          it(`T = S = ${T}, ${causal ? "causal" : "full"}`, () => checkCase(C, { T, causal, D: 8, Hq: 2 }));
        }
      }
      it("KV cache: T = 5 newest of S = 70, causal", () => checkCase(C, { T: 5, S: 70, D: 16 }));
      it("KV cache: T = 1 decode step over S = 129", () => checkCase(C, { T: 1, S: 129, D: 16, Hq: 4, Hkv: 2 }));
      it("KV cache: T = 65, S = 130", () => checkCase(C, { T: 65, S: 130, D: 8, Hq: 2, Hkv: 1 }));
      it("KV cache: T = 64, S = 257 (three forward key blocks)", () => checkCase(C, { T: 64, S: 257, D: 4, Hq: 2, Hkv: 1 }));
      it("non-causal with S < T (cross-attention shape)", () => checkCase(C, { T: 70, S: 33, causal: false, D: 8 }));
      it("odd head dims and GQA 6/2, 8/4, 4/1", () => {
        checkCase(C, { T: 33, D: 5, Hq: 6, Hkv: 2, B: 2 });
        checkCase(C, { T: 17, D: 64, Hq: 8, Hkv: 4 });
        checkCase(C, { T: 40, S: 45, D: 3, Hq: 4, Hkv: 1, causal: false });
      });
      it("masks: [T, S], [B, 1, T, S], [B, Hq, T, S], key-strided", () => {
        checkCase(C, { T: 65, D: 8, mask: "ts", causal: false });
        checkCase(C, { B: 2, T: 33, S: 40, D: 8, mask: "b1ts" });
        checkCase(C, { B: 2, T: 30, D: 4, Hq: 4, Hkv: 2, mask: "bhts", causal: false });
        checkCase(C, { T: 70, D: 8, mask: "strided" });
      });
      it("padding mask with -inf keys, causal and not", () => {
        checkCase(C, { B: 3, T: 66, D: 8, mask: "padding", causal: false });
        checkCase(C, { B: 3, T: 66, D: 8, mask: "padding" });
      });
      it("rows with every key masked give output 0 and gradient 0, never NaN", () => {
        const spec: CaseSpec = { B: 2, T: 67, S: 70, D: 8, Hq: 2, mask: "fullrows", causal: false };
        checkCase(C, spec);
        const p = makeProblem(C, spec);
        const got = runBackward(p);
        const { queryLen: T, queryHeads: Hq, headDim: D } = p.dims;
        for (let h = 0; h < Hq; h++) {
          for (let t = 0; t < T; t += 3) {
            expect(got.lse[h * T + t]).toBe(Infinity);
            for (let c = 0; c < D; c++) {
              expect(got.out[(t * Hq + h) * D + c]).toBe(0);
              expect(got.dq[(t * Hq + h) * D + c]).toBe(0);
            }
          }
        }
      });
      it("S = 0 without causal: every output row is 0", () => {
        const p = makeProblem(C, { T: 3, S: 0, causal: false });
        const got = runBackward(p);
        expect(Array.from(got.out).every((x) => x === 0)).toBe(true);
        expect(Array.from(got.lse).every((x) => x === Infinity)).toBe(true);
        expect(Array.from(got.dq).every((x) => x === 0)).toBe(true);
      });
      it("lse is the log of the softmax denominator", () => {
        const p = makeProblem(C, { T: 9, S: 12, D: 4, Hq: 1 });
        const { lse } = runForward(p);
        for (let t = 0; t < 9; t++) {
          let z = 0;
          for (let j = 0; j <= 12 - 9 + t; j++) {
            let dot = 0;
            for (let c = 0; c < 4; c++) dot += p.q[t * 4 + c]! * p.k[j * 4 + c]!;
            z += Math.exp(p.scale * dot);
          }
          expect(Math.abs(lse[t]! - Math.log(z))).toBeLessThan(C === Float64Array ? 1e-12 : 1e-5);
        }
      });
    });
  }

  it("large scores (scale 30) stay finite and accurate (online max subtraction)", () => {
    // f32 scores of size ~30 carry ~1e-6 absolute rounding, which the softmax passes on.
    checkCase(Float32Array, { T: 130, D: 8, scale: 30 }, 2e-5);
    checkCase(Float64Array, { T: 130, D: 8, scale: 30, causal: false });
  });
});

describe("attention kernel paths", () => {
  for (const isa of isas()) {
    it(`${isa}: f32 forward and backward match the reference`, () => {
      setIsa(isa);
      try {
        checkCase(Float32Array, { B: 2, T: 129, S: 131, D: 16, Hq: 4, Hkv: 2, mask: "fullrows" });
        checkCase(Float32Array, { T: 77, D: 64, Hq: 2, Hkv: 1 });
      } finally {
        setIsa(initialIsa);
      }
    });
  }

  for (const mode of ["fused", "split"] as const) {
    it(`${mode} backward matches the reference (GQA, KV cache, masks, f32 and f64)`, () => {
      for (const C of [Float32Array, Float64Array]) {
        checkCase(C, { B: 2, T: 70, S: 135, D: 8, Hq: 6, Hkv: 2, mask: "b1ts" }, TOL.f32, mode);
        checkCase(C, { B: 1, T: 129, D: 8, Hq: 2, Hkv: 1, mask: "fullrows", causal: false }, TOL.f32, mode);
      }
    });
  }

  // A NaN in the inputs reaches the output, as in PyTorch's SDPA: the scores' row max and the
  // exp must not skip or clamp it (they once did: a NaN query gave a finite 0 output).
  for (const isa of isas()) {
    for (const [name, C] of [["f32", Float32Array], ["f64", Float64Array]] as const) {
      it(`${isa} ${name}: a NaN query row gives NaN out, lse and dq for that row; other rows match the reference`, () => {
        setIsa(isa);
        try {
          // T = 130 spans three query blocks and two forward key blocks.
          const spec: CaseSpec = { T: 130, D: 8, Hq: 2, Hkv: 1 };
          const p = makeProblem(C, spec);
          const clean = refForward(makeProblem(C, spec));
          const row = 70; // query (t = 70, h = 1)
          p.q[(row * 2 + 1) * 8 + 3] = NaN;
          const got = runBackward(p);
          for (let t = 0; t < 130; t++) {
            for (let h = 0; h < 2; h++) {
              const o = (t * 2 + h) * 8;
              const poisoned = t === row && h === 1;
              expect(Number.isNaN(got.lse[h * 130 + t]!)).toBe(poisoned);
              for (let c = 0; c < 8; c++) {
                if (poisoned) {
                  expect(got.out[o + c]).toBeNaN();
                  expect(got.dq[o + c]).toBeNaN();
                } else {
                  expect(Math.abs(got.out[o + c]! - clean.out[o + c]!)).toBeLessThan(C === Float64Array ? 1e-12 : 2e-6);
                }
              }
            }
          }
        } finally {
          setIsa(initialIsa);
        }
      });
      it(`${isa} ${name}: a NaN key makes every query that sees it NaN, and only those`, () => {
        setIsa(isa);
        try {
          const p = makeProblem(C, { T: 140, D: 4, Hq: 2, Hkv: 2 });
          const key = 100; // in the second forward key block
          p.k[(key * 2 + 0) * 4 + 1] = NaN; // kv head 0 = query head 0
          const { out, lse } = runForward(p);
          for (let t = 0; t < 140; t++) {
            expect(Number.isNaN(lse[t]!)).toBe(t >= key); // head 0: causal, query t sees keys ≤ t
            expect(Number.isNaN(out[(t * 2 + 0) * 4]!)).toBe(t >= key);
            expect(Number.isFinite(lse[140 + t]!)).toBe(true); // head 1 reads kv head 1
          }
        } finally {
          setIsa(initialIsa);
        }
      });
    }
  }

  it("a NaN in the mask gives NaN for its row, and fully masked rows stay 0 beside it", () => {
    const p = makeProblem(Float32Array, { T: 67, S: 70, D: 8, Hq: 2, mask: "fullrows", causal: false });
    p.mask!.data[((0 * 2 + 0) * 67 + 1) * 70 + 5] = NaN; // row (h 0, t 1); rows t % 3 == 0 are fully masked
    const { out, lse } = runForward(p);
    expect(lse[1]).toBeNaN();
    expect(out[(1 * 2 + 0) * 8]).toBeNaN();
    expect(lse[0]).toBe(Infinity);
    expect(out[0]).toBe(0);
    expect(Number.isFinite(lse[2]!)).toBe(true);
  });

  it("fused and split backward modes give identical results", () => {
    for (const C of [Float32Array, Float64Array]) {
      const p = makeProblem(C, { B: 2, T: 130, S: 140, D: 8, Hq: 6, Hkv: 2, mask: "b1ts" });
      const a = runBackward(p, "fused");
      const b = runBackward(p, "split");
      expect(Array.from(b.dq)).toEqual(Array.from(a.dq));
      expect(Array.from(b.dk)).toEqual(Array.from(a.dk));
      expect(Array.from(b.dv)).toEqual(Array.from(a.dv));
    }
  });

  it("gives bit-identical results with 1, 2 and 3 threads", () => {
    const p = makeProblem(Float32Array, { B: 2, T: 150, D: 16, Hq: 4, Hkv: 2 });
    const results = [1, 2, 3].map((n) => {
      setNumThreads(n);
      return runBackward(p, "auto");
    });
    setNumThreads(initialThreads);
    for (const r of results.slice(1)) {
      for (const key of ["out", "lse", "dq", "dk", "dv"] as const) expect(Array.from(r[key])).toEqual(Array.from(results[0]![key]));
    }
  });

  it("auto picks fused when B * Hkv fills the threads, split otherwise", () => {
    setNumThreads(2);
    try {
      const dims = (B: number, Hkv: number): AttentionDims => ({ batch: B, queryLen: 8, keyLen: 8, queryHeads: Hkv, kvHeads: Hkv, headDim: 4 });
      expect(attentionBackwardMode(dims(1, 4))).toBe("fused");
      expect(attentionBackwardMode(dims(1, 1))).toBe("split");
      expect(attentionBackwardMode(dims(3, 1))).toBe("split");
      setNumThreads(1);
      expect(attentionBackwardMode(dims(1, 1))).toBe("fused");
    } finally {
      setNumThreads(initialThreads);
    }
  });
});

describe("attention argument checks", () => {
  const dims = [1, 4, 5, 2, 2, 3];
  const f = (n: number) => new Float32Array(n);
  const good = () => ({ q: f(24), k: f(30), v: f(30), out: f(24), lse: f(8) });
  const fwd = (over: Record<string, unknown> = {}, d: unknown = dims) => {
    const a = { ...good(), mask: null, maskStrides: null, scale: 0.5, causal: true, ...over };
    return () => (native().attentionForward as (...args: unknown[]) => void)(d, a.q, a.k, a.v, a.mask, a.maskStrides, a.scale, a.causal, a.out, a.lse);
  };

  it("accepts a well-formed call", () => {
    expect(fwd()).not.toThrow();
  });
  it("rejects bad dims", () => {
    expect(fwd({}, [1, 4, 5, 2, 2])).toThrow(/^attentionForward: argument 'dims' must be \[B, T, S, Hq, Hkv, D\]/);
    expect(fwd({}, [1, 4, 5, 3, 2, 3])).toThrow(/attentionForward: dims \[1,4,5,3,2,3\]: Hq = 3 query heads is not a multiple of Hkv = 2/);
    expect(fwd({}, [1, 4, 5, 2, 2, 0])).toThrow(/attentionForward: .*Hq, Hkv and D must be at least 1/);
    expect(fwd({}, [1, -4, 5, 2, 2, 3])).toThrow(/attentionForward: argument 'dims' entry 1 is negative/);
  });
  it("rejects causal attention with S < T", () => {
    expect(fwd({ k: f(18), v: f(18) }, [1, 4, 3, 2, 2, 3])).toThrow(/attentionForward: .*causal attention needs S >= T .*S = 3 < T = 4/);
    expect(fwd({ k: f(18), v: f(18), causal: false }, [1, 4, 3, 2, 2, 3])).not.toThrow();
  });
  it("rejects short arrays, naming the layout", () => {
    expect(fwd({ k: f(29) })).toThrow(/attentionForward: argument 'k' holds 29 elements but dims \[1,4,5,2,2,3\] as \[B, S, Hkv, D\] needs 30/);
    expect(fwd({ lse: f(7) })).toThrow(/attentionForward: argument 'lse' holds 7 elements/);
  });
  it("rejects mixed and non-float arrays", () => {
    expect(fwd({ v: new Float64Array(30) })).toThrow(/attentionForward: argument 'v' is a Float64Array but 'q' is a Float32Array/);
    expect(fwd({ q: new Int32Array(24) })).toThrow(/attentionForward: argument 'q' \(index 1\) must be a Float32Array or Float64Array, got Int32Array/);
  });
  it("checks the mask and its strides", () => {
    expect(fwd({ mask: f(20) })).toThrow(/attentionForward: argument 'mask' needs 'maskStrides'/);
    expect(fwd({ maskStrides: [0, 0, 5, 1] })).toThrow(/attentionForward: argument 'maskStrides' is given but 'mask' is null/);
    expect(fwd({ mask: f(20), maskStrides: [0, 5, 1] })).toThrow(/attentionForward: argument 'maskStrides' must have 4 entries/);
    expect(fwd({ mask: f(19), maskStrides: [0, 0, 5, 1] })).toThrow(/attentionForward: argument 'mask' holds 19 elements but maskStrides \[0,0,5,1\]/);
    expect(fwd({ mask: f(20), maskStrides: [0, 0, 5, 1] })).not.toThrow();
    expect(fwd({ mask: new Float64Array(20), maskStrides: [0, 0, 5, 1] })).toThrow(/attentionForward: argument 'mask' is a Float64Array/);
  });
  it("rejects a non-finite scale and outputs that overlap inputs", () => {
    expect(fwd({ scale: NaN })).toThrow(/attentionForward: argument 'scale' must be finite/);
    const q = f(24);
    expect(fwd({ q, out: q })).toThrow(/attentionForward: argument 'out' overlaps 'q'/);
  });
  it("checks the backward's extra arguments", () => {
    const a = good();
    const bwd = (dout: unknown, dq: unknown, mode: unknown) => () =>
      (native().attentionBackward as (...args: unknown[]) => void)(dims, a.q, a.k, a.v, null, null, 0.5, true, a.out, a.lse, dout, dq, f(30), f(30), mode);
    expect(bwd(f(24), f(24), 0)).not.toThrow();
    expect(bwd(f(23), f(24), 0)).toThrow(/attentionBackward: argument 'dout' holds 23 elements/);
    expect(bwd(f(24), a.q, 0)).toThrow(/attentionBackward: argument 'dq' overlaps 'q'/);
    expect(bwd(f(24), f(24), 3)).toThrow(/attentionBackward: argument 'mode' = 3 is outside \[0, 2\]/);
    expect(() => (native().attentionBackward as (...args: unknown[]) => void)(dims)).toThrow(/attentionBackward: expected 15 arguments/);
  });
});
