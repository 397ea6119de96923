// The fused LLaMA-block ops (rmsnorm, rope, swiglu, dropout, adamwStep) against plain TS f64
// references, finite differences, and the properties that define them.
import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";
import { gradcheck, assertClose } from "../src/testing.js";
import { rnd, size } from "./ref.js";

type Dt = "f32" | "f64";
const TOL: Record<Dt, number> = { f32: 3e-6, f64: 1e-13 };

function param(shape: number[], seed: number, lo = -1, hi = 1, dtype: Dt = "f64") {
  return T.tensor(rnd(size(shape), seed, lo, hi), shape, { dtype, requiresGrad: true });
}

function check(fn: (...xs: T.Tensor[]) => T.Tensor, inputs: T.Tensor[], opts?: Parameters<typeof gradcheck>[2]) {
  const before = T.memory().tensors;
  const r = gradcheck(fn, inputs, opts);
  expect(r.checked).toBeGreaterThan(0);
  expect(r.worstRatio).toBeLessThanOrEqual(1);
  expect(T.memory().tensors).toBe(before);
  T.dispose(inputs);
}

function expectOpError(fn: () => unknown, op: string, re: RegExp) {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(T.OpError);
    expect((e as T.OpError).op).toBe(op);
    expect((e as Error).message.startsWith(`${op}: `)).toBe(true);
    expect((e as Error).message).toMatch(re);
    return;
  }
  expect.fail(`${op}: expected an OpError`);
}

const positionsOf = (values: number[], shape: number[]) => T.tensor(Int32Array.from(values), shape, { dtype: "i32" });

// --- references -----------------------------------------------------------------------------------

function rmsnormRef(x: ArrayLike<number>, w: ArrayLike<number>, d: number, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[r * d + j]! ** 2;
    const s = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) y[r * d + j] = (x[r * d + j]! * s) * w[j]!;
  }
  return y;
}

// Llama 3.1 scaling written in terms of the frequency f = 1/wavelength·2π (an independent form).
function invFreqRef(d: number, theta: number, s?: T.RopeLlama3Scaling): number[] {
  const out: number[] = [];
  for (let i = 0; i < d / 2; i++) {
    const f = Math.pow(theta, -(2 * i) / d);
    if (!s) {
      out.push(f);
      continue;
    }
    const cycles = (s.originalMaxPositionEmbeddings * f) / (2 * Math.PI); // turns over the original context
    if (cycles > s.highFreqFactor) out.push(f);
    else if (cycles < s.lowFreqFactor) out.push(f / s.factor);
    else {
      const a = (cycles - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out.push(f * (a + (1 - a) / s.factor));
    }
  }
  return out;
}

function ropeRef(x: ArrayLike<number>, shape: number[], pos: number[], inv: number[]): Float64Array {
  const [B, Tn, H, D] = shape as [number, number, number, number];
  const half = D / 2;
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < Tn; t++)
      for (let h = 0; h < H; h++) {
        const o = ((b * Tn + t) * H + h) * D;
        const p = pos.length === Tn ? pos[t]! : pos[b * Tn + t]!;
        for (let i = 0; i < half; i++) {
          const c = Math.cos(p * inv[i]!), s = Math.sin(p * inv[i]!);
          out[o + i] = x[o + i]! * c - x[o + half + i]! * s;
          out[o + half + i] = x[o + half + i]! * c + x[o + i]! * s;
        }
      }
  return out;
}

const LLAMA31: T.RopeLlama3Scaling = { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
// A small-context version so that a D = 8 head has frequencies in all three regimes.
const SMALL_SCALING: T.RopeLlama3Scaling = { type: "llama3", factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 };

// --- rmsnorm --------------------------------------------------------------------------------------

describe("rmsnorm", () => {
  for (const dtype of ["f32", "f64"] as const)
    for (const shape of [[2, 3, 8], [5, 13], [1, 1], [6], [4, 0, 6]])
      it(`${dtype} ${JSON.stringify(shape)} forward matches the f64 reference`, () =>
        T.tidy(() => {
          const d = shape[shape.length - 1]!;
          const xd = rnd(size(shape), 3, -2, 2), wd = rnd(d, 4, 0.5, 1.5);
          const x = T.tensor(xd, shape, { dtype }), w = T.tensor(wd, [d], { dtype });
          const y = T.rmsnorm(x, w);
          expect(y.shape).toEqual(shape);
          expect(y.dtype).toBe(dtype);
          assertClose(y.toFloat64Array(), rmsnormRef(x.toFloat64Array(), w.toFloat64Array(), d, 1e-5), TOL[dtype], TOL[dtype]);
        }));

  it("eps is configurable", () =>
    T.tidy(() => {
      const x = T.tensor([1e-2, -2e-2, 3e-2, 0], [1, 4], { dtype: "f64" }), w = T.ones([4], { dtype: "f64" });
      for (const eps of [0, 1e-6, 1e-3, 0.5]) {
        assertClose(T.rmsnorm(x, w, eps).toArray(), rmsnormRef(x.toArray(), [1, 1, 1, 1], 4, eps), 1e-15, 1e-14, `eps ${eps}`);
      }
      expect(T.rmsnorm(x, w, 0.5).toArray()[2]).toBeLessThan(0.05);
    }));

  it("reads non-contiguous x", () =>
    T.tidy(() => {
      const x = T.tensor(rnd(24, 5), [4, 6], { dtype: "f64" }), w = T.tensor(rnd(4, 6), [4], { dtype: "f64" });
      const xt = T.transpose(x); // [6, 4] view
      expect(T.rmsnorm(xt, w).toArray()).toEqual(T.rmsnorm(T.contiguous(xt), w).toArray());
    }));

  it("gradcheck in x and weight", () => check((x, w) => T.rmsnorm(x!, w!), [param([3, 5], 1, -2, 2), param([5], 2, 0.5, 1.5)]));
  it("gradcheck [2, 3, 8] with eps 0.1", () => check((x, w) => T.rmsnorm(x!, w!, 0.1), [param([2, 3, 8], 3), param([8], 4)]));
  it("gradcheck in x with a frozen weight", () =>
    check((x, w) => T.rmsnorm(x!, w!), [param([4, 7], 5), T.tensor(rnd(7, 6), [7], { dtype: "f64" })]));
  it("gradcheck in weight only", () => check((x, w) => T.rmsnorm(x!, w!), [T.tensor(rnd(12, 7), [3, 4], { dtype: "f64" }), param([4], 8)]));
  it("gradcheck of a 1-D x", () => check((x, w) => T.rmsnorm(x!, w!), [param([6], 9), param([6], 10)]));
});

// --- rope -----------------------------------------------------------------------------------------

describe("ropeInvFreq", () => {
  it("default: theta^(-2i/D)", () => {
    assertClose(T.ropeInvFreq(8), invFreqRef(8, 10000), 1e-15, 0);
    assertClose(T.ropeInvFreq(64, { theta: 500000 }), invFreqRef(64, 500000), 1e-15, 0);
    expect(T.ropeInvFreq(4)[0]).toBe(1);
  });

  it("llama3 scaling (Llama 3.1 config): kept, divided by factor, and interpolated in between", () => {
    const base = T.ropeInvFreq(128, { theta: 500000 });
    const scaled = T.ropeInvFreq(128, { theta: 500000, scaling: LLAMA31 });
    assertClose(scaled, invFreqRef(128, 500000, LLAMA31), 1e-15, 0);
    const ratios = Array.from(scaled, (v, i) => v / base[i]!);
    const kept = ratios.filter((r) => r === 1).length, divided = ratios.filter((r) => Math.abs(r - 1 / 8) < 1e-15).length;
    expect(kept).toBeGreaterThan(10);
    expect(divided).toBeGreaterThan(10);
    expect(kept + divided).toBeLessThan(64); // some frequencies are interpolated
    for (let i = 1; i < 64; i++) expect(ratios[i]!).toBeLessThanOrEqual(ratios[i - 1]!); // monotone in wavelength
    // the first frequency (wavelength 2π) is untouched, the last is stretched 8x
    expect(scaled[0]).toBe(1);
    expect(scaled[63]).toBeCloseTo(base[63]! / 8, 20);
  });

  it("rejects bad head dims and scaling", () => {
    expectOpError(() => T.ropeInvFreq(7), "ropeInvFreq", /head dim 7 must be an even integer/);
    expectOpError(() => T.ropeInvFreq(8, { theta: 0 }), "ropeInvFreq", /theta must be a finite number > 0/);
    expectOpError(() => T.ropeInvFreq(8, { scaling: { ...LLAMA31, highFreqFactor: 1 } }), "ropeInvFreq", /highFreqFactor \(1\) must be greater/);
    expectOpError(() => T.ropeInvFreq(8, { scaling: { ...LLAMA31, type: "yarn" as "llama3" } }), "ropeInvFreq", /unknown rope scaling type 'yarn'/);
  });
});

describe("rope", () => {
  const CASES: { shape: [number, number, number, number]; batched: boolean; scaling?: T.RopeLlama3Scaling }[] = [
    { shape: [2, 5, 3, 8], batched: false },
    { shape: [2, 5, 3, 8], batched: true, scaling: SMALL_SCALING },
    { shape: [1, 7, 2, 64], batched: false, scaling: LLAMA31 },
    { shape: [3, 3, 1, 64], batched: true },
  ];
  const posValues = (n: number, seed: number) => Array.from(rnd(n, seed, 0, 400), Math.floor);

  for (const dtype of ["f32", "f64"] as const)
    for (const c of CASES)
      it(`${dtype} ${JSON.stringify(c.shape)} positions ${c.batched ? "[B,T]" : "[T]"}${c.scaling ? " llama3" : ""} forward`, () =>
        T.tidy(() => {
          const [B, Tn, , D] = c.shape;
          const pv = posValues(c.batched ? B * Tn : Tn, 9);
          const x = T.tensor(rnd(size(c.shape), 10, -2, 2), c.shape, { dtype });
          const y = T.rope(x, positionsOf(pv, c.batched ? [B, Tn] : [Tn]), { scaling: c.scaling });
          expect(y.shape).toEqual(c.shape);
          expect(y.dtype).toBe(dtype);
          const ref = ropeRef(x.toFloat64Array(), c.shape, pv, invFreqRef(D, 10000, c.scaling));
          assertClose(y.toFloat64Array(), ref, TOL[dtype] * 2, TOL[dtype] * 2);
        }));

  for (const c of CASES)
    it(`gradcheck ${JSON.stringify(c.shape)} positions ${c.batched ? "[B,T]" : "[T]"}${c.scaling ? " llama3" : ""}`, () => {
      const [B, Tn] = c.shape;
      const pos = positionsOf(posValues(c.batched ? B * Tn : Tn, 11), c.batched ? [B, Tn] : [Tn]);
      check((x) => T.rope(x!, pos, { scaling: c.scaling, theta: 10000 }), [param(c.shape, 12)], { maxElements: 200 });
      pos.dispose();
    });

  it("gradcheck through a strided view (k of a fused qkv projection)", () => {
    const pos = positionsOf([3, 1, 4], [3]);
    check((qkv) => T.rope(T.slice(T.reshape(qkv!, [2, 3, 3, 2, 8]), [0, 0, 1], [2, 3, 2]).reshape([2, 3, 2, 8]), pos), [param([2, 3, 48], 13)]);
    pos.dispose();
  });

  it("hand-computed values", () =>
    T.tidy(() => {
      // D = 4: invFreq = [1, 1/100]; x = [1, 2, 3, 4] at position 2
      const y = T.rope(T.tensor([1, 2, 3, 4], [1, 1, 1, 4], { dtype: "f64" }), positionsOf([2], [1])).toArray();
      const c0 = Math.cos(2), s0 = Math.sin(2), c1 = Math.cos(0.02), s1 = Math.sin(0.02);
      assertClose(y, [1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1], 1e-15, 1e-15);
      // position 0 is the identity; theta changes the second pair only
      expect(T.rope(T.tensor([1, 2, 3, 4], [1, 1, 1, 4]), positionsOf([0], [1])).toArray()).toEqual([1, 2, 3, 4]);
      const y2 = T.rope(T.tensor([0, 1, 0, 0], [1, 1, 1, 4], { dtype: "f64" }), positionsOf([1], [1]), { theta: 4 }).toArray();
      assertClose(y2, [0, Math.cos(0.5), 0, Math.sin(0.5)], 0, 1e-16);
    }));

  it("preserves the norm of every (i, i + D/2) pair", () =>
    T.tidy(() => {
      const shape = [2, 9, 2, 64];
      const x = T.tensor(rnd(size(shape), 14), shape, { dtype: "f64" });
      const xd = x.toArray(), yd = T.rope(x, positionsOf(posValues(18, 15), [2, 9]), { theta: 500000, scaling: LLAMA31 }).toArray();
      for (let o = 0; o < xd.length; o += 64)
        for (let i = 0; i < 32; i++) {
          const nx = Math.hypot(xd[o + i]!, xd[o + 32 + i]!), ny = Math.hypot(yd[o + i]!, yd[o + 32 + i]!);
          expect(Math.abs(nx - ny)).toBeLessThan(1e-14);
        }
    }));

  it("<rope(q, m), rope(k, n)> depends only on m - n", () =>
    T.tidy(() => {
      const q = T.tensor(rnd(64, 16), [1, 1, 1, 64], { dtype: "f64" }), k = T.tensor(rnd(64, 17), [1, 1, 1, 64], { dtype: "f64" });
      const dot = (m: number, n: number) => T.sum(T.mul(T.rope(q, positionsOf([m], [1])), T.rope(k, positionsOf([n], [1])))).item();
      for (const delta of [0, 3, -5]) {
        const ref = dot(10 + delta, 10);
        for (const n of [0, 1, 37, 500]) expect(Math.abs(dot(n + delta, n) - ref)).toBeLessThan(1e-12);
      }
      expect(Math.abs(dot(3, 0) - dot(0, 3))).toBeGreaterThan(1e-6); // not symmetric: the sign matters
    }));

  it("f32 matches the f64 result to ~1e-6 for LLaMA-sized heads", () =>
    T.tidy(() => {
      const shape = [1, 16, 2, 128];
      const x = T.tensor(rnd(size(shape), 18), shape, { dtype: "f64" });
      const pos = positionsOf(Array.from({ length: 16 }, (_, i) => i * 61), [16]);
      const o = { theta: 500000, scaling: LLAMA31 };
      const y64 = T.rope(x, pos, o).toArray(), y32 = T.rope(T.cast(x, "f32"), pos, o).toArray();
      assertClose(y32, y64, 2e-6, 2e-6);
    }));

  it("f32 agrees with a float32 emulation of Hugging Face's rotary embedding", () =>
    T.tidy(() => {
      // HF: inv_freq = 1 / base ** (arange(0, D, 2).float() / D), angle = inv_freq * pos, cos/sin,
      // then q * cos + rotate_half(q) * sin, every step rounded to f32. We compute the angle and
      // cos/sin in f64, so the gap is HF's own angle rounding, which grows with the position.
      const fr = Math.fround, D = 64, Tn = 32;
      const inv32 = Array.from({ length: D / 2 }, (_, i) => fr(1 / fr(Math.pow(10000, fr(fr(2 * i) / D)))));
      const shape = [1, Tn, 1, D];
      const x = T.tensor(rnd(Tn * D, 19), shape, { dtype: "f32" });
      const xd = x.toArray(), yd = T.rope(x, positionsOf(Array.from({ length: Tn }, (_, i) => i), [Tn])).toArray();
      const gap = [0, 0]; // positions < 8, positions < 32
      for (let t = 0; t < Tn; t++)
        for (let i = 0; i < D / 2; i++) {
          const a = fr(inv32[i]! * t), c = fr(Math.cos(a)), s = fr(Math.sin(a));
          const x1 = xd[t * D + i]!, x2 = xd[t * D + D / 2 + i]!;
          const hf = [fr(fr(x1 * c) - fr(x2 * s)), fr(fr(x2 * c) + fr(x1 * s))];
          const d = Math.max(Math.abs(yd[t * D + i]! - hf[0]!), Math.abs(yd[t * D + D / 2 + i]! - hf[1]!));
          if (t < 8) gap[0] = Math.max(gap[0]!, d);
          gap[1] = Math.max(gap[1]!, d);
        }
      expect(gap[0]).toBeLessThan(5e-7); // measured 1.8e-7
      expect(gap[1]).toBeLessThan(3e-6); // measured 1.0e-6
    }));

  it("bad inputs are OpErrors naming rope", () =>
    T.tidy(() => {
      const x = T.zeros([2, 3, 2, 8]);
      expectOpError(() => T.rope(T.zeros([2, 3, 2, 7]), positionsOf([0, 1, 2], [3])), "rope", /head dim D = 7 must be even/);
      expectOpError(() => T.rope(T.zeros([3, 2, 8]), positionsOf([0, 1, 2], [3])), "rope", /x must be \[B, T, H, D\], got rank 3/);
      expectOpError(() => T.rope(x, positionsOf([0, 1], [2])), "rope", /positions must be \[T\] = \[3\] or \[B, T\] = \[2,3\], got \[2\]/);
      expectOpError(() => T.rope(x, positionsOf([0, 1, 2, 3, 4, 5], [3, 2])), "rope", /got \[3,2\]/);
      expectOpError(() => T.rope(x, T.tensor([0, 1, 2], [3])), "rope", /positions must be i32, got f32/);
      expectOpError(() => T.rope(T.zeros([1, 1, 1, 4], { dtype: "i32" }), positionsOf([0], [1])), "rope", /expects f32, f64 or bf16/);
      expectOpError(() => T.rope(x, positionsOf([0, 1, 2], [3]), { scaling: { ...LLAMA31, factor: -1 } }), "rope", /scaling.factor must be a finite number > 0/);
    }));
});

// --- swiglu ---------------------------------------------------------------------------------------

describe("swiglu", () => {
  const sig = (g: number) => (g >= 0 ? 1 / (1 + Math.exp(-g)) : Math.exp(g) / (1 + Math.exp(g)));
  for (const dtype of ["f32", "f64"] as const)
    it(`${dtype} forward matches silu(gate) * up, including large |gate|`, () =>
      T.tidy(() => {
        const gd = rnd(37, 20, -8, 8);
        gd[0] = 200;
        gd[1] = -200;
        gd[2] = 1e4;
        gd[3] = -1e4;
        const ud = rnd(37, 21, -2, 2);
        const y = T.swiglu(T.tensor(gd, [37], { dtype }), T.tensor(ud, [37], { dtype }));
        const g = T.tensor(gd, [37], { dtype }).toFloat64Array(), u = T.tensor(ud, [37], { dtype }).toFloat64Array();
        assertClose(y.toFloat64Array(), Array.from(g, (v, i) => v * sig(v) * u[i]!), 4 * TOL[dtype], TOL[dtype]);
        // equals the composed silu(gate) * up
        assertClose(y.toFloat64Array(), T.mul(T.silu(T.tensor(gd, [37], { dtype })), T.tensor(ud, [37], { dtype })).toFloat64Array(), 4 * TOL[dtype], TOL[dtype]);
      }));

  it("gradcheck in gate and up", () => check((g, u) => T.swiglu(g!, u!), [param([3, 11], 22, -5, 5), param([3, 11], 23)]));
  it("gradcheck with a strided gate (gate/up halves of one projection)", () =>
    check((gu) => T.swiglu(T.slice(gu!, [0, 0], [4, 6]), T.slice(gu!, [0, 6], [4, 12])), [param([4, 12], 24, -4, 4)]));
  it("gradients stay finite in the tails", () =>
    T.tidy(() => {
      const g = T.tensor([-1e4, -300, 300, 1e4], [4], { dtype: "f32", requiresGrad: true });
      const u = T.tensor([1, 2, 3, 4], [4], { dtype: "f32", requiresGrad: true });
      T.backward(T.sum(T.swiglu(g, u)));
      expect(g.grad!.toArray().map((v) => Math.abs(v))).toEqual([0, 0, 3, 4]);
      expect(u.grad!.toArray().map((v) => Math.abs(v))).toEqual([0, 0, 300, 1e4]);
    }));
  it("shape mismatch is an OpError naming swiglu", () =>
    T.tidy(() => {
      expectOpError(() => T.swiglu(T.zeros([2, 3]), T.zeros([3])), "swiglu", /gate and up must have the same shape \(inputs: \[2,3\] f32, \[3\] f32\)/);
      expectOpError(() => T.swiglu(T.zeros([2]), T.zeros([2], { dtype: "f64" })), "swiglu", /different dtypes/);
    }));
});

// --- dropout --------------------------------------------------------------------------------------

describe("dropout", () => {
  const keptOf = (t: T.Tensor) => Uint8Array.from(t.toArray(), (v) => (v !== 0 ? 1 : 0));

  for (const dtype of ["f32", "f64"] as const)
    it(`${dtype}: the mask equals dropoutMask bit for bit and kept values are scaled by 1/(1-p)`, () =>
      T.tidy(() => {
        const shape = [3, 7, 11];
        const x = T.tensor(rnd(231, 30, 0.5, 2), shape, { dtype });
        for (const [p, seed, offset] of [[0.3, 1, 0], [0.5, -12, 77], [0.9, 2 ** 45 + 1, 2 ** 36]] as const) {
          const y = T.dropout(x, p, { seed, offset });
          const mask = T.dropoutMask(231, p, seed, offset);
          expect(keptOf(y)).toEqual(mask);
          const scale = dtype === "f32" ? Math.fround(1 / (1 - p)) : 1 / (1 - p);
          const xd = x.toArray(), yd = y.toArray();
          for (let i = 0; i < 231; i++) {
            const want = mask[i] ? (dtype === "f32" ? Math.fround(xd[i]! * scale) : xd[i]! * scale) : 0;
            if (yd[i] !== want) expect.fail(`p ${p} [${i}]: ${yd[i]} !== ${want}`);
          }
        }
      }));

  it("is reproducible for the same seed and offset and differs for others", () =>
    T.tidy(() => {
      const x = T.ones([4096]);
      const a = keptOf(T.dropout(x, 0.5, { seed: 7, offset: 3 }));
      expect(keptOf(T.dropout(x, 0.5, { seed: 7, offset: 3 }))).toEqual(a);
      for (const other of [{ seed: 8, offset: 3 }, { seed: 7, offset: 4 }, { seed: -7, offset: 3 }]) {
        const b = keptOf(T.dropout(x, 0.5, other));
        const agree = a.reduce((n, v, i) => n + (v === b[i] ? 1 : 0), 0) / a.length;
        expect(agree).toBeGreaterThan(0.45);
        expect(agree).toBeLessThan(0.55);
      }
    }));

  it("keeps about 1 - p of the elements", () =>
    T.tidy(() => {
      const x = T.ones([100_000], { dtype: "f32" });
      for (const p of [0.1, 0.3, 0.7]) {
        const kept = keptOf(T.dropout(x, p, { seed: 123 })).reduce((n, v) => n + v, 0) / 100_000;
        expect(Math.abs(kept - (1 - p))).toBeLessThan(0.006);
      }
    }));

  it("the gradient is mask / (1 - p), regenerated without a stored mask", () =>
    T.tidy(() => {
      const x = param([5, 9], 31);
      T.backward(T.sum(T.dropout(x, 0.3, { seed: 99, offset: 5 })));
      const mask = T.dropoutMask(45, 0.3, 99, 5);
      expect(x.grad!.toArray()).toEqual(Array.from(mask, (m) => (m ? 1 / 0.7 : 0)));
      x.dispose();
    }));

  it("gradcheck (p = 0.3)", () => check((x) => T.dropout(x!, 0.3, { seed: 4, offset: 2 }), [param([6, 7], 32)]));

  it("the mask follows the logical row-major index of a non-contiguous input", () =>
    T.tidy(() => {
      const x = T.tensor(rnd(30, 33, 1, 2), [5, 6]);
      const xt = T.transpose(x);
      expect(T.dropout(xt, 0.4, { seed: 1 }).toArray()).toEqual(T.dropout(T.contiguous(xt), 0.4, { seed: 1 }).toArray());
    }));

  it("p = 0 and training = false are the identity, with gradient 1", () =>
    T.tidy(() => {
      const x = param([3, 4], 34);
      for (const y of [T.dropout(x, 0, { seed: 1 }), T.dropout(x, 0.5, { seed: 1, training: false })]) {
        expect(y).not.toBe(x);
        expect(y.toArray()).toEqual(x.toArray());
        T.backward(T.sum(y));
        expect(x.grad!.toArray()).toEqual(new Array(12).fill(1));
        x.zeroGrad();
      }
      x.dispose();
    }));

  it("bad p, seed or offset are OpErrors naming dropout", () =>
    T.tidy(() => {
      const x = T.zeros([4]);
      expectOpError(() => T.dropout(x, 1, { seed: 1 }), "dropout", /p must be a number in \[0, 1\), got 1/);
      expectOpError(() => T.dropout(x, -0.1, { seed: 1 }), "dropout", /got -0.1/);
      expectOpError(() => T.dropout(x, NaN, { seed: 1 }), "dropout", /got NaN/);
      expectOpError(() => T.dropout(x, 0.5, { seed: 0.5 }), "dropout", /seed must be a safe integer/);
      expectOpError(() => T.dropout(x, 0.5, {} as T.DropoutOptions), "dropout", /seed must be a safe integer, got undefined/);
      expectOpError(() => T.dropout(x, 0.5, { seed: 1, offset: -1 }), "dropout", /offset must be a non-negative safe integer/);
      expectOpError(() => T.dropoutMask(4, 1.5, 1), "dropoutMask", /p must be a number in \[0, 1\)/);
    }));
});

// --- adamwStep / AdamW ----------------------------------------------------------------------------

describe("adamwStep and AdamW", () => {
  // The optimizer as it was composed of small ops before the fused kernel.
  function composedStep(p: T.Tensor, g: T.Tensor, m: T.Tensor, v: T.Tensor, o: T.AdamwStepOptions) {
    const bc1 = 1 - o.beta1 ** o.step, bc2 = 1 - o.beta2 ** o.step;
    T.noGrad(() =>
      T.tidy(() => {
        if (o.weightDecay) T.scaleInPlace(p, 1 - o.lr * o.weightDecay);
        T.scaleInPlace(m, o.beta1);
        T.addInPlace(m, g, 1 - o.beta1);
        T.scaleInPlace(v, o.beta2);
        T.addInPlace(v, T.square(g), 1 - o.beta2);
        const denom = T.add(T.mul(T.sqrt(v), 1 / Math.sqrt(bc2)), o.eps);
        T.addInPlace(p, T.div(m, denom), -o.lr / bc1);
      }),
    );
  }

  it("the fused step equals the composed formula (f64, 1e-12) over 5 steps", () =>
    T.tidy(() => {
      const n = [7, 13];
      const p1 = T.tensor(rnd(91, 40), n, { dtype: "f64" }), p2 = T.clone(p1);
      const m1 = T.zeros(n, { dtype: "f64" }), v1 = T.zeros(n, { dtype: "f64" }), m2 = T.zeros(n, { dtype: "f64" }), v2 = T.zeros(n, { dtype: "f64" });
      for (let t = 1; t <= 5; t++) {
        const g = T.tensor(rnd(91, 41 + t, -3, 3), n, { dtype: "f64" });
        const o = { lr: 0.05, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, step: t };
        T.adamwStep(p1, g, m1, v1, o);
        composedStep(p2, g, m2, v2, o);
        assertClose(p1.toArray(), p2.toArray(), 1e-12, 1e-12, "param");
        assertClose(m1.toArray(), m2.toArray(), 1e-12, 1e-12, "m");
        assertClose(v1.toArray(), v2.toArray(), 1e-12, 1e-12, "v");
      }
    }));

  it("AdamW matches a hand-computed sequence in f64 and f32", () => {
    for (const dtype of ["f64", "f32"] as const) {
      const p = T.tensor([0.5, -1.5, 2], [3], { dtype, requiresGrad: true });
      const opt = new T.AdamW([p], { lr: 0.01, beta1: 0.8, beta2: 0.9, eps: 1e-6, weightDecay: 0.2 });
      let ref = p.toArray();
      const m = [0, 0, 0], v = [0, 0, 0];
      for (let t = 1; t <= 4; t++) {
        T.tidy(() => T.backward(T.sum(T.mul(T.mul(p, p), p)))); // grad = 3 p^2
        const g = p.grad!.toArray();
        opt.step();
        opt.zeroGrad();
        ref = ref.map((x, i) => {
          x -= 0.01 * 0.2 * x;
          m[i] = 0.8 * m[i]! + 0.2 * g[i]!;
          v[i] = 0.9 * v[i]! + 0.1 * g[i]! ** 2;
          return x - (0.01 * (m[i]! / (1 - 0.8 ** t))) / (Math.sqrt(v[i]! / (1 - 0.9 ** t)) + 1e-6);
        });
        assertClose(p.toArray(), ref, dtype === "f64" ? 1e-12 : 1e-6, dtype === "f64" ? 1e-12 : 1e-6, `${dtype} step ${t}`);
      }
      expect(opt.stepCount).toBe(4);
      opt.dispose();
      p.dispose();
    }
  });

  it("a step allocates nothing and bumps the storage versions of param, m and v", () => {
    const p = param([64, 33], 50, -1, 1, "f32");
    const q = param([5], 51, -1, 1, "f32"); // no gradient: skipped
    const opt = new T.AdamW([p, q], { lr: 1e-3, weightDecay: 0.01 });
    T.tidy(() => T.backward(T.sum(T.square(p))));
    const before = T.memory();
    const version = p.storage.version;
    const qv = q.toArray();
    opt.step();
    const after = T.memory();
    expect(after.tensors).toBe(before.tensors);
    expect(after.storages).toBe(before.storages);
    expect(after.bytes).toBe(before.bytes);
    expect(p.storage.version).toBe(version + 1);
    expect(q.toArray()).toEqual(qv);
    opt.dispose();
    T.dispose([p, q]);
  });

  it("a saved tensor updated by the step makes backward fail instead of returning a wrong gradient", () => {
    const p = param([3], 52);
    const opt = new T.AdamW([p], { lr: 0.1 });
    T.tidy(() => {
      const loss = T.sum(T.mul(p, p)); // saves p
      T.tidy(() => T.backward(T.sum(T.mul(p, 2))));
      opt.step();
      expect(() => T.backward(loss)).toThrow(/modified in place after it was saved/);
    });
    opt.dispose();
    p.dispose();
  });

  it("refuses non-contiguous tensors, mismatched shapes and bad hyper-parameters", () =>
    T.tidy(() => {
      const o = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
      const p = T.zeros([4, 3]), g = T.ones([4, 3]), m = T.zeros([4, 3]), v = T.zeros([4, 3]);
      expectOpError(() => T.adamwStep(T.transpose(T.zeros([3, 4])), g, m, v, o), "adamwStep", /must be contiguous/);
      expectOpError(() => T.adamwStep(p, T.ones([3, 4]), m, v, o), "adamwStep", /same shape/);
      expectOpError(() => T.adamwStep(p, g, m, v, { ...o, step: 0 }), "adamwStep", /step must be an integer ≥ 1, got 0/);
      expectOpError(() => T.adamwStep(p, g, m, v, { ...o, beta2: 1 }), "adamwStep", /beta2 must be in \[0, 1\), got 1/);
      expectOpError(() => T.adamwStep(p, g, m, v, { ...o, lr: NaN }), "adamwStep", /lr must be a finite number/);
      expectOpError(() => T.adamwStep(p, T.ones([4, 3], { dtype: "f64" }), m, v, o), "adamwStep", /different dtypes/);
      const w = T.zeros([2], { requiresGrad: true });
      expectOpError(() => T.adamwStep(w, T.ones([2]), T.zeros([2]), T.zeros([2]), o), "adamwStep", /inside noGrad/);
      expectOpError(() => new T.AdamW([T.transpose(T.zeros([2, 3], { requiresGrad: true }))], { lr: 1 }), "AdamW", /must be contiguous/);
    }));
});

// --- memory ---------------------------------------------------------------------------------------

describe("memory", () => {
  it("forward + backward through every op leaves nothing behind", () => {
    const x = param([2, 3, 2, 8], 60), w = param([8], 61), u = param([2, 3, 2, 8], 62);
    const pos = positionsOf([0, 5, 9], [3]);
    const before = T.memory();
    T.tidy(() => {
      const h = T.rmsnorm(x, w);
      const r = T.rope(h, pos, { scaling: SMALL_SCALING });
      const s = T.swiglu(r, u);
      T.backward(T.sum(T.dropout(s, 0.2, { seed: 3 })));
    });
    T.dispose([x.grad, w.grad, u.grad].filter((g): g is T.Tensor => g !== null));
    x.grad = w.grad = u.grad = null;
    const after = T.memory();
    expect(after.tensors).toBe(before.tensors);
    expect(after.bytes).toBe(before.bytes);
    T.dispose([x, w, u, pos]);
  });
});
