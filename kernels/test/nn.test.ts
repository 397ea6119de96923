// Fused LLaMA-block kernels (RMSNorm, RoPE, SwiGLU, dropout, AdamW) against plain TS f64 references.
import { afterAll, describe, expect, it } from "vitest";
import {
  adamwStep, dropoutBackward, dropoutForward, getNumThreads, native, rmsnormBackward, rmsnormForward, ropeBackward,
  ropeForward, setNumThreads, swigluBackward, swigluForward,
} from "../ts/index.js";
import { rng, randArray, type FloatCtor } from "./helpers.js";

// --- helpers ------------------------------------------------------------------------------------

// [name, constructor, relative tolerance against an f64 reference]
const FLOATS: [string, FloatCtor, number][] = [["f32", Float32Array, 3e-6], ["f64", Float64Array, 1e-13]];



function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol = 0, what = ""): void {
  expect(actual.length, `${what} length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) expect.fail(`${what}[${i}]: expected ${e}, got ${a} (diff ${Math.abs(a - e)})`);
  }
}

function bitsEqual(a: ArrayLike<number>, b: ArrayLike<number>, what = ""): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) expect.fail(`${what}[${i}]: ${a[i]} !== ${b[i]}`);
}

function withThreads<T>(n: number, fn: () => T): T {
  const before = getNumThreads();
  setNumThreads(n);
  try {
    return fn();
  } finally {
    setNumThreads(before);
  }
}
const initialThreads = getNumThreads();
afterAll(() => setNumThreads(initialThreads));

// --- references -----------------------------------------------------------------------------------

function rmsnormRef(x: ArrayLike<number>, w: ArrayLike<number>, d: number, eps: number) {
  const rows = x.length / d;
  const y = new Float64Array(x.length), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[r * d + j]! ** 2;
    rstd[r] = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) y[r * d + j] = w[j]! * x[r * d + j]! * rstd[r]!;
  }
  return { y, rstd };
}

// By the product rule on y_j = w_j x_j r(x), written independently of the kernel's factorisation.
function rmsnormBackwardRef(x: ArrayLike<number>, w: ArrayLike<number>, dy: ArrayLike<number>, d: number, eps: number) {
  const rows = x.length / d;
  const dx = new Float64Array(x.length), dw = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[r * d + j]! ** 2;
    const ms = ss / d + eps, rs = 1 / Math.sqrt(ms);
    let g = 0; // d(loss)/d(rs)
    for (let j = 0; j < d; j++) g += dy[r * d + j]! * w[j]! * x[r * d + j]!;
    const dms = g * -0.5 * ms ** -1.5;
    for (let k = 0; k < d; k++) {
      dx[r * d + k] = dy[r * d + k]! * w[k]! * rs + dms * (2 * x[r * d + k]!) / d;
      dw[k] += dy[r * d + k]! * x[r * d + k]! * rs;
    }
  }
  return { dx, dw };
}

// x read through strides (sb, st, sh, 1); out contiguous.
function ropeRef(x: ArrayLike<number>, shape: number[], strides: number[], pos: Int32Array, invFreq: Float64Array, sign = 1) {
  const [B, T, H, D] = shape as [number, number, number, number];
  const half = D / 2;
  const out = new Float64Array(B * T * H * D);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      const p = pos.length === T ? pos[t]! : pos[b * T + t]!;
      for (let h = 0; h < H; h++)
        for (let i = 0; i < half; i++) {
          const a = p * invFreq[i]!, c = Math.cos(a), s = sign * Math.sin(a);
          const xo = b * strides[0]! + t * strides[1]! + h * strides[2]!;
          const oo = ((b * T + t) * H + h) * D;
          const x1 = x[xo + i]!, x2 = x[xo + half + i]!;
          out[oo + i] = x1 * c - x2 * s;
          out[oo + half + i] = x2 * c + x1 * s;
        }
    }
  return out;
}

const invFreqOf = (D: number, theta = 10000) => Float64Array.from({ length: D / 2 }, (_, i) => theta ** (-(2 * i) / D));

const sigmoidRef = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

// Philox4x32-10 in BigInt, independent of the kernels' and of @modulora/tensor's version.
function philoxRef(ctr: [number, number, number, number], key: [number, number]): number[] {
  const M = 0xffffffffn;
  let [c0, c1, c2, c3] = ctr.map(BigInt) as [bigint, bigint, bigint, bigint];
  let [k0, k1] = key.map(BigInt) as [bigint, bigint];
  for (let r = 0; r < 10; r++) {
    const p0 = 0xd2511f53n * c0, p1 = 0xcd9e8d57n * c2;
    [c0, c1, c2, c3] = [((p1 >> 32n) ^ c1 ^ k0) & M, p1 & M, ((p0 >> 32n) ^ c3 ^ k1) & M, p0 & M];
    k0 = (k0 + 0x9e3779b9n) & M;
    k1 = (k1 + 0xbb67ae85n) & M;
  }
  return [c0, c1, c2, c3].map(Number);
}

function keyOf(seed: number): [number, number] {
  const s = Math.abs(seed);
  return [s % 2 ** 32, (Math.floor(s / 2 ** 32) ^ (seed < 0 ? 0x80000000 : 0)) >>> 0];
}

function dropoutMaskRef(n: number, p: number, seed: number, offset: number): Uint8Array {
  const mask = new Uint8Array(n);
  const key = keyOf(seed);
  for (let i = 0; i < n; i += 4) {
    const c = offset + i / 4;
    const w = philoxRef([c % 2 ** 32, Math.floor(c / 2 ** 32), 2, 0], key);
    for (let j = 0; j < 4 && i + j < n; j++) mask[i + j] = (w[j]! >>> 8) / 2 ** 24 >= p ? 1 : 0;
  }
  return mask;
}

// --- RMSNorm --------------------------------------------------------------------------------------

describe("rmsnorm", () => {
  const SIZES: [number, number][] = [[1, 1], [7, 13], [3, 64], [5, 257], [64, 8], [0, 5]];
  for (const [name, C, rtol] of FLOATS)
    for (const [rows, d] of SIZES)
      it(`${name} forward and backward, rows ${rows} x D ${d}`, () => {
        const x = randArray(C, rows * d, 1 + d), w = randArray(C, d, 2 + d, 0.5, 1.5), dy = randArray(C, rows * d, 3 + d);
        const eps = 1e-5;
        const y = new C(rows * d), rstd = new C(rows);
        rmsnormForward(x, w, eps, y, rstd);
        const ref = rmsnormRef(x, w, d, eps);
        expectClose(y, ref.y, rtol, rtol, "y");
        expectClose(rstd, ref.rstd, rtol, 0, "rstd");
        const dx = new C(rows * d), dw = new C(d);
        rmsnormBackward(x, w, rstd, dy, dx, dw);
        const g = rmsnormBackwardRef(x, w, dy, d, eps);
        expectClose(dx, g.dx, 10 * rtol, 10 * rtol, "dx");
        expectClose(dw, g.dw, 10 * rtol, 10 * rtol * Math.max(1, rows), "dw");
        // dweight = null skips it and leaves dx the same
        const dx2 = new C(rows * d);
        rmsnormBackward(x, w, rstd, dy, dx2, null);
        bitsEqual(dx2, dx, "dx without dw");
      });

  it("eps is configurable and a constant row with eps 0 normalises to ±weight", () => {
    const x = Float64Array.from([3, -3, 3, -3, 1e-3, 1e-3, 1e-3, 1e-3]), w = Float64Array.from([1, 2, 3, 4]);
    const y = new Float64Array(8), rstd = new Float64Array(2);
    rmsnormForward(x, w, 0, y, rstd);
    expectClose(y, [1, -2, 3, -4, 1, 2, 3, 4], 1e-14, 0, "eps 0");
    rmsnormForward(x, w, 1e-2, y, rstd);
    expectClose(y, rmsnormRef(x, w, 4, 1e-2).y, 1e-14, 0, "eps 1e-2");
    expect(y[4]).toBeLessThan(0.011); // tiny row dominated by eps
  });

  it("f32 statistics are accumulated beyond f32 (large D, large offset)", () => {
    const d = 4096;
    const x = new Float32Array(d).fill(1000), w = new Float32Array(d).fill(1);
    for (let i = 0; i < d; i++) x[i] += (i % 7) * 1e-3;
    const y = new Float32Array(d), rstd = new Float32Array(1);
    rmsnormForward(x, w, 1e-5, y, rstd);
    expectClose(rstd, rmsnormRef(x, w, d, 1e-5).rstd, 1e-7, 0, "rstd");
  });

  it("dweight and dx are bit-identical for 1, 2, 3 and 8 threads", () => {
    const rows = 301, d = 200;
    for (const [, C] of FLOATS) {
      const x = randArray(C, rows * d, 5), w = randArray(C, d, 6), dy = randArray(C, rows * d, 7);
      const y = new C(rows * d), rstd = new C(rows);
      rmsnormForward(x, w, 1e-6, y, rstd);
      const runs = [1, 2, 3, 8].map((n) =>
        withThreads(n, () => {
          const dx = new C(rows * d), dw = new C(d), y2 = new C(rows * d), r2 = new C(rows);
          rmsnormForward(x, w, 1e-6, y2, r2);
          rmsnormBackward(x, w, rstd, dy, dx, dw);
          return { dx, dw, y2 };
        }),
      );
      for (const r of runs.slice(1)) {
        bitsEqual(r.dw, runs[0]!.dw, "dw");
        bitsEqual(r.dx, runs[0]!.dx, "dx");
        bitsEqual(r.y2, y, "y");
      }
    }
  });

  it("y may be x itself (in place)", () => {
    const x = randArray(Float64Array, 24, 8), w = randArray(Float64Array, 6, 9);
    const ref = rmsnormRef(x, w, 6, 1e-5).y;
    rmsnormForward(x, w, 1e-5, x, new Float64Array(4));
    expectClose(x, ref, 1e-14, 0, "in place");
  });
});

// --- RoPE -----------------------------------------------------------------------------------------

describe("rope", () => {
  const CASES: { name: string; shape: [number, number, number, number]; batchedPos: boolean }[] = [
    { name: "B2 T5 H3 D8, positions [T]", shape: [2, 5, 3, 8], batchedPos: false },
    { name: "B3 T7 H2 D64, positions [B,T]", shape: [3, 7, 2, 64], batchedPos: true },
    { name: "B1 T1 H1 D2", shape: [1, 1, 1, 2], batchedPos: false },
    { name: "B2 T0 H2 D4 (empty)", shape: [2, 0, 2, 4], batchedPos: false },
  ];
  for (const [name, C, rtol] of FLOATS)
    for (const c of CASES)
      it(`${name} ${c.name}: forward, backward = R(-a), round trip`, () => {
        const [B, T, H, D] = c.shape;
        const n = B * T * H * D;
        const x = randArray(C, n, 11 + D);
        const r = rng(3);
        const pos = Int32Array.from({ length: c.batchedPos ? B * T : T }, () => Math.floor(r() * 300));
        const inv = invFreqOf(D);
        const strides = [T * H * D, H * D, D];
        const y = new C(n);
        ropeForward(x, { shape: c.shape }, pos, inv, y);
        expectClose(y, ropeRef(x, c.shape, strides, pos, inv), rtol, rtol, "forward");
        const dx = new C(n);
        ropeBackward(x, { shape: c.shape }, pos, inv, dx);
        expectClose(dx, ropeRef(x, c.shape, strides, pos, inv, -1), rtol, rtol, "backward");
        const back = new C(n);
        ropeBackward(y, { shape: c.shape }, pos, inv, back);
        expectClose(back, x, 4 * rtol, 4 * rtol, "round trip");
      });

  it("reads a strided view (q of a fused [B, T, 3, H, D] projection) and writes contiguous", () => {
    const [B, T, H, D] = [2, 3, 2, 6];
    const buf = randArray(Float64Array, B * T * 3 * H * D + 5, 21);
    const strides: [number, number, number] = [T * 3 * H * D, 3 * H * D, D];
    const start = H * D; // the "k" slice
    const pos = Int32Array.from([4, 0, 9]);
    const inv = invFreqOf(D, 500000);
    const y = new Float64Array(B * T * H * D);
    ropeForward(buf.subarray(start), { shape: [B, T, H, D], strides }, pos, inv, y);
    expectClose(y, ropeRef(buf.subarray(start), [B, T, H, D], strides, pos, inv), 1e-14, 1e-15, "strided");
  });

  it("hand-computed values: position 0 is the identity, position 1 rotates pair 0 by 1 rad", () => {
    const x = Float64Array.from([1, 2, 3, 4, 1, 2, 3, 4]); // [1, 2, 1, 4], positions 0 and 1
    const y = new Float64Array(8);
    ropeForward(x, { shape: [1, 2, 1, 4] }, Int32Array.from([0, 1]), invFreqOf(4), y);
    expectClose(y.subarray(0, 4), [1, 2, 3, 4], 0, 0, "pos 0");
    // pair (x0, x2) = (1, 3) rotated by 1 rad; pair (x1, x3) = (2, 4) by 1/100 rad (theta^-2/4 = 0.01)
    const c1 = Math.cos(1), s1 = Math.sin(1), c2 = Math.cos(0.01), s2 = Math.sin(0.01);
    expectClose(y.subarray(4), [c1 - 3 * s1, 2 * c2 - 4 * s2, 3 * c1 + s1, 4 * c2 + 2 * s2], 1e-15, 1e-15, "pos 1");
  });

  it("is thread-count independent", () => {
    const shape: [number, number, number, number] = [2, 33, 4, 16];
    const n = 2 * 33 * 4 * 16;
    const x = randArray(Float32Array, n, 4);
    const pos = Int32Array.from({ length: 33 }, (_, i) => i * 7);
    const inv = invFreqOf(16);
    const outs = [1, 3].map((k) => withThreads(k, () => {
      const y = new Float32Array(n);
      ropeForward(x, { shape }, pos, inv, y);
      return y;
    }));
    bitsEqual(outs[1]!, outs[0]!, "threads");
  });
});

// --- SwiGLU ---------------------------------------------------------------------------------------

describe("swiglu", () => {
  for (const [name, C, rtol] of FLOATS)
    for (const n of [1, 7, 4099])
      it(`${name} forward and backward, n = ${n}`, () => {
        const g = randArray(C, n, 31, -6, 6), u = randArray(C, n, 32), dy = randArray(C, n, 33);
        const out = new C(n), dg = new C(n), du = new C(n);
        swigluForward(g, u, out);
        swigluBackward(g, u, dy, dg, du);
        const rOut = new Float64Array(n), rDg = new Float64Array(n), rDu = new Float64Array(n);
        for (let i = 0; i < n; i++) {
          const s = sigmoidRef(g[i]!);
          rOut[i] = g[i]! * s * u[i]!;
          rDu[i] = dy[i]! * g[i]! * s;
          rDg[i] = dy[i]! * u[i]! * s * (1 + g[i]! * (1 - s));
        }
        expectClose(out, rOut, 4 * rtol, rtol, "out");
        expectClose(dg, rDg, 8 * rtol, rtol, "dgate");
        expectClose(du, rDu, 4 * rtol, rtol, "dup");
      });

  it("is finite and exact in the tails (|gate| up to 1e4)", () => {
    for (const [, C] of FLOATS) {
      const g = C.from([-1e4, -200, -90, 90, 200, 1e4]), u = C.from([1, 1, 1, 1, 1, 1]), dy = C.from([1, 1, 1, 1, 1, 1]);
      const out = new C(6), dg = new C(6), du = new C(6);
      swigluForward(g, u, out);
      swigluBackward(g, u, dy, dg, du);
      for (const a of [out, dg, du]) for (const v of a) expect(Number.isFinite(v)).toBe(true);
      expect(Array.from(out.subarray(3))).toEqual([90, 200, 1e4]);
      expect(Array.from(dg.subarray(3))).toEqual([1, 1, 1]);
      expect(Math.abs(out[0]!)).toBe(0);
      expect(Math.abs(dg[0]!)).toBe(0);
    }
  });
});

// --- Dropout --------------------------------------------------------------------------------------

describe("dropout", () => {
  it("the BigInt reference Philox passes the Random123 known-answer tests", () => {
    expect(philoxRef([0, 0, 0, 0], [0, 0])).toEqual([0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    expect(philoxRef([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])).toEqual([0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    expect(philoxRef([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])).toEqual([0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]);
  });

  for (const [name, C] of FLOATS)
    for (const [n, p, seed, offset] of [[1, 0.5, 1, 0], [1003, 0.3, 42, 0], [257, 0.9, -7, 12345], [64, 0.1, 2 ** 40 + 3, 2 ** 33 + 1]] as const)
      it(`${name} n ${n} p ${p} seed ${seed} offset ${offset}: mask bit for bit, scale 1/(1-p), backward = same mask`, () => {
        const x = randArray(C, n, 41, 0.5, 2);
        const y = new C(n), dx = new C(n);
        dropoutForward(x, p, seed, offset, y);
        dropoutBackward(x, p, seed, offset, dx);
        const mask = dropoutMaskRef(n, p, seed, offset);
        const scale = name === "f32" ? Math.fround(1 / (1 - p)) : 1 / (1 - p);
        for (let i = 0; i < n; i++) {
          const want = mask[i] ? (name === "f32" ? Math.fround(x[i]! * scale) : x[i]! * scale) : 0;
          if (y[i] !== want) expect.fail(`[${i}]: ${y[i]} !== ${want} (mask ${mask[i]})`);
        }
        bitsEqual(dx, y, "backward");
      });

  it("p = 0 keeps everything; the kept fraction is about 1 - p; offsets continue the stream", () => {
    const n = 200_000;
    const x = new Float32Array(n).fill(1), y = new Float32Array(n);
    dropoutForward(x, 0, 5, 0, y);
    bitsEqual(y, x, "p = 0");
    dropoutForward(x, 0.3, 5, 0, y);
    const kept = y.reduce((k, v) => k + (v !== 0 ? 1 : 0), 0) / n;
    expect(Math.abs(kept - 0.7)).toBeLessThan(0.005);
    // the call at offset k over m elements equals the tail of the call at offset 0 over m + 4k
    const tail = new Float32Array(n - 400);
    dropoutForward(x.subarray(400), 0.3, 5, 100, tail);
    bitsEqual(tail, y.subarray(400), "offset 100");
  });

  it("is thread-count independent and differs across seeds", () => {
    const n = 100_003;
    const x = randArray(Float64Array, n, 2);
    const a = withThreads(1, () => { const y = new Float64Array(n); dropoutForward(x, 0.5, 9, 3, y); return y; });
    const b = withThreads(3, () => { const y = new Float64Array(n); dropoutForward(x, 0.5, 9, 3, y); return y; });
    bitsEqual(b, a, "threads");
    const c = new Float64Array(n);
    dropoutForward(x, 0.5, 10, 3, c);
    let same = 0;
    for (let i = 0; i < n; i++) if ((a[i] === 0) === (c[i] === 0)) same++;
    expect(Math.abs(same / n - 0.5)).toBeLessThan(0.01);
  });
});

// --- AdamW ----------------------------------------------------------------------------------------

describe("adamwStep", () => {
  for (const [name, C, rtol] of FLOATS)
    for (const n of [1, 5, 16_411])
      it(`${name} n = ${n}: four steps against the textbook formula`, () => {
        const o = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
        const p = randArray(C, n, 51), m = new C(n), v = new C(n);
        const rp = Float64Array.from(p), rm = new Float64Array(n), rv = new Float64Array(n);
        for (let t = 1; t <= 4; t++) {
          const g = randArray(C, n, 60 + t);
          adamwStep(p, g, m, v, { ...o, step: t });
          for (let i = 0; i < n; i++) {
            rp[i] -= o.lr * o.weightDecay * rp[i]!;
            rm[i] = o.beta1 * rm[i]! + (1 - o.beta1) * g[i]!;
            rv[i] = o.beta2 * rv[i]! + (1 - o.beta2) * g[i]! ** 2;
            const mh = rm[i]! / (1 - o.beta1 ** t), vh = rv[i]! / (1 - o.beta2 ** t);
            rp[i] -= (o.lr * mh) / (Math.sqrt(vh) + o.eps);
          }
        }
        expectClose(p, rp, 20 * rtol, 20 * rtol, "param");
        expectClose(m, rm, 4 * rtol, rtol, "m");
        expectClose(v, rv, 4 * rtol, rtol, "v");
      });

  it("is thread-count independent", () => {
    const n = 70_001;
    const run = (threads: number) => withThreads(threads, () => {
      const p = randArray(Float32Array, n, 1), m = randArray(Float32Array, n, 2), v = randArray(Float32Array, n, 3, 0, 1);
      adamwStep(p, randArray(Float32Array, n, 4), m, v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 7 });
      return [p, m, v];
    });
    const a = run(1), b = run(4);
    for (let k = 0; k < 3; k++) bitsEqual(b[k]!, a[k]!, "threads");
  });
});

// --- bad arguments --------------------------------------------------------------------------------

describe("bad arguments name the op and the argument", () => {
  const f = (n: number) => new Float32Array(n);
  const d = (n: number) => new Float64Array(n);
  const cases: [string, () => void, RegExp][] = [
    ["rmsnorm mixed types", () => rmsnormForward(f(8), d(4), 1e-5, f(8), f(2)), /^rmsnormForward: argument 'weight' is a Float64Array but 'x' is a Float32Array/],
    ["rmsnorm rows", () => rmsnormForward(f(10), f(4), 1e-5, f(10), f(2)), /^rmsnormForward: argument 'x' holds 10 elements, not a multiple of the dim 4/],
    ["rmsnorm rstd", () => rmsnormForward(f(8), f(4), 1e-5, f(8), f(3)), /^rmsnormForward: argument 'rstd' holds 3 elements/],
    ["rmsnorm eps", () => rmsnormForward(f(8), f(4), -1, f(8), f(2)), /^rmsnormForward: argument 'eps' = -1 must be a finite number/],
    ["rmsnorm empty weight", () => rmsnormForward(f(0), f(0), 1e-5, f(0), f(0)), /^rmsnormForward: argument 'weight' is empty/],
    ["rmsnorm backward dweight", () => rmsnormBackward(f(8), f(4), f(2), f(8), f(8), f(3)), /^rmsnormBackward: argument 'dweight' holds 3 elements but 'weight' holds 4/],
    ["rmsnorm not an array", () => native().rmsnormForward([1, 2] as unknown as Float32Array, f(2), 0, f(2), f(1)), /^rmsnormForward: argument 'x' \(index 0\) must be a typed array/],
    ["rope odd D", () => ropeForward(f(6), { shape: [1, 2, 1, 3] }, Int32Array.from([0, 1]), d(1), f(6)), /^rope: head dim D = 3 must be even/],
    ["rope invFreq", () => ropeForward(f(16), { shape: [1, 2, 1, 8] }, Int32Array.from([0, 1]), d(3), f(16)), /^rope: argument 'invFreq' holds 3 elements but head dim 8 needs D\/2 = 4/],
    ["rope positions", () => ropeForward(f(32), { shape: [2, 2, 1, 8] }, Int32Array.from([0, 1, 2]), d(4), f(32)), /^rope: argument 'positions' holds 3 entries; expected T = 2 .* or B\*T = 4/],
    ["rope positions type", () => ropeForward(f(16), { shape: [1, 2, 1, 8] }, Float32Array.from([0, 1]) as unknown as Int32Array, d(4), f(16)), /^rope: argument 'positions' \(index 3\) must be a Int32Array/],
    ["rope view too long", () => ropeForward(f(16), { shape: [1, 2, 1, 8], strides: [16, 9, 8] }, Int32Array.from([0, 1]), d(4), f(16)), /^rope: argument 'x' holds 16 elements but the view/],
    ["rope out", () => ropeForward(f(16), { shape: [1, 2, 1, 8] }, Int32Array.from([0, 1]), d(4), f(15)), /^rope: argument 'out' holds 15 elements/],
    ["swiglu lengths", () => swigluForward(f(4), f(5), f(4)), /^swigluForward: argument 'up' holds 5 elements but 'gate' holds 4/],
    ["swiglu backward types", () => swigluBackward(f(4), f(4), d(4), f(4), f(4)), /^swigluBackward: argument 'dy' is a Float64Array/],
    ["dropout p = 1", () => dropoutForward(f(4), 1, 0, 0, f(4)), /^dropout: argument 'p' = 1 must be a finite number in \[0, 1\)/],
    ["dropout p NaN", () => dropoutForward(f(4), NaN, 0, 0, f(4)), /^dropout: argument 'p' = NaN/],
    ["dropout seed", () => dropoutForward(f(4), 0.5, 1.5, 0, f(4)), /^dropout: argument 'seed' must be an integer/],
    ["dropout offset", () => dropoutForward(f(4), 0.5, 1, -1, f(4)), /^dropout: argument 'offset' = -1 is outside/],
    ["dropout counters overflow", () => dropoutForward(f(8), 0.5, 1, 2 ** 53 - 2, f(8)), /^dropout: offset .* exceeds 2\^53 - 1/],
    ["adamw step 0", () => adamwStep(f(2), f(2), f(2), f(2), { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 0 }), /^adamwStep: argument 'step' = 0 is outside/],
    ["adamw beta1 = 1", () => adamwStep(f(2), f(2), f(2), f(2), { lr: 1e-3, beta1: 1, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 }), /^adamwStep: argument 'beta1' = 1 must be a finite number in \[0, 1\)/],
    ["adamw lengths", () => adamwStep(f(2), f(2), f(3), f(2), { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 }), /^adamwStep: argument 'm' holds 3 elements but 'param' holds 2/],
    ["adamw count", () => (native().adamwStep as unknown as (...a: unknown[]) => void)(f(2), f(2)), /^adamwStep: expected 10 arguments/],
  ];
  for (const [name, fn, re] of cases) it(name, () => expect(fn).toThrow(re));
});
