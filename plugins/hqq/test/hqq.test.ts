import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { dispose, loadSafetensors, randn, tensor, type Tensor } from "@modulora/tensor";
import { fromF16Bits, roundToF16, unpackColumnCode, type AffineWeight } from "@modulora/core";
import { dequantizeAll } from "@modulora/core/testing";
import { HQQ_DEFAULTS, hqqCode, hqqOptimize, hqqQuantizer, hqqStep, lpError, quantizeHqq, roundHalfEven, shrinkLp, type HqqParams } from "../src/index.js";

const tinyLlama = fileURLToPath(new URL("../../../fixtures/tiny-llama/model.safetensors", import.meta.url));
const REAL = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight", "model.layers.2.mlp.down_proj.weight", "model.layers.3.mlp.gate_proj.weight"];

// ---- an independent reference, in f64 with obvious loops -----------------------------------------

/** torch.round: half to even. */
function refRound(x: number): number {
  const f = Math.floor(x);
  if (x - f > 0.5) return f + 1;
  if (x - f < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** One HQQ iteration as the write-up states it, for a group w with grid (s, z). */
function refIteration(w: number[], s: number, z: number, bits: number, beta: number, p: number, optimizeScale: boolean) {
  const maxq = 2 ** bits - 1;
  const q = w.map((x) => Math.min(maxq, Math.max(0, refRound(x / s + z)))); // W_q = clamp(round(W/s + z))
  const wr = q.map((qi) => s * (qi - z)); // W_r = s·(W_q − z)
  const e = w.map((x, i) => x - wr[i]!);
  // W_e = sign(e)·relu(|e| − |e|^(p−1)/β)
  const we = e.map((x) => (x === 0 ? 0 : Math.sign(x) * Math.max(0, Math.abs(x) - Math.pow(Math.abs(x), p - 1) / beta)));
  const error = e.reduce((a, x) => a + Math.pow(Math.abs(x), p), 0);
  const t = w.map((x, i) => x - we[i]!);
  const n = w.length;
  if (optimizeScale) {
    // least squares t ≈ a·q + b by the 2×2 normal equations, then s = a, z = −b/a
    let sq = 0, st = 0, sqq = 0, sqt = 0;
    for (let i = 0; i < n; i++) { sq += q[i]!; st += t[i]!; sqq += q[i]! * q[i]!; sqt += q[i]! * t[i]!; }
    const det = n * sqq - sq * sq;
    const a = (n * sqt - sq * st) / det;
    const b = (sqq * st - sq * sqt) / det;
    if (det > 0 && a > 0) return { error, scale: a, zero: -b / a, we };
  }
  let zsum = 0;
  for (let i = 0; i < n; i++) zsum += q[i]! - t[i]! / s; // z = ⟨W_q − (W − W_e)/s⟩
  return { error, scale: s, zero: zsum / n, we };
}

function refL1(w: number[], s: number, z: number, bits: number): number {
  const maxq = 2 ** bits - 1;
  return w.reduce((a, x) => a + Math.abs(x - s * (Math.min(maxq, Math.max(0, refRound(x / s + z))) - z)), 0);
}

/**
 * The whole search over the groups of a weight (rows of `groups` groups of `size`): min-max
 * start per group, then every group iterates together while the mean |W − Ŵ| over the weight falls.
 */
function refFit(w: Float32Array, size: number, bits: number, o: HqqParams) {
  const groups: number[][] = [];
  for (let a = 0; a < w.length; a += size) groups.push(Array.from(w.subarray(a, a + size)));
  let grid = groups.map((g) => {
    const s = (Math.max(...g) - Math.min(...g)) / (2 ** bits - 1);
    return { scale: s, zero: -Math.min(...g) / s };
  });
  const total = (gr: typeof grid) => gr.reduce((a, x, k) => a + refL1(groups[k]!, x.scale, x.zero, bits), 0) / w.length;
  let best = total(grid);
  let beta = o.beta;
  for (let k = 0; k < o.iterations; k++) {
    const next = grid.map((x, i) => refIteration(groups[i]!, x.scale, x.zero, bits, beta, o.lpNorm, o.optimizeScale));
    beta *= o.kappa;
    const err = total(next);
    if (!(err < best)) break;
    best = err;
    grid = next;
  }
  return grid;
}

// ---- helpers ----------------------------------------------------------------------------------

/** The stored grid and codes of an affine weight: f16 scales and zeros as values, codes [out, in]. */
function stored(q: AffineWeight) {
  const out = q.outFeatures;
  const inF = q.inFeatures;
  const scales = fromF16Bits(q.scales.dataSync() as Uint16Array); // [groups, out]
  const zeros = fromF16Bits(q.zeros.dataSync() as Uint16Array);
  const packed = q.qweight.dataSync() as Int32Array;
  const codes = new Uint8Array(out * inF);
  for (let j = 0; j < out; j++) for (let i = 0; i < inF; i++) codes[j * inF + i] = unpackColumnCode(packed, out, j, i, q.bits);
  return { scales, zeros, codes, at: (j: number, i: number) => Math.floor(i / q.groupSize) * out + j };
}

/** Σ |w − ŵ|^p over the whole weight. */
function lp(wHat: Float32Array, w: Float32Array, p = 0.7): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) s += Math.abs(w[i]! - wHat[i]!) ** p;
  return s;
}

function lpOfQuantized(w: Tensor, options: Record<string, unknown> & { bits: number; groupSize: number }): number {
  const q = quantizeHqq(w, options);
  try {
    return lp(dequantizeAll(q), w.dataSync() as Float32Array);
  } finally {
    q.dispose();
  }
}

const params = (o: Partial<HqqParams> = {}): HqqParams => ({ ...HQQ_DEFAULTS, ...o });

// ---- tests ------------------------------------------------------------------------------------

describe("HQQ's numerics against a plain reference", () => {
  it("rounding, code and shrinkage", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, -2, 2, 3]);
    expect(hqqCode(0.26, 0.1, 1.2, 3)).toBe(3); // round(2.6 + 1.2) = 4 → clamped to 3
    expect(hqqCode(-0.5, 0.1, 1.2, 3)).toBe(0);
    // shrink_p(x, β) = sign(x)·max(|x| − |x|^(p−1)/β, 0): 2·(1 − 2^−1.3/... ) by hand
    expect(shrinkLp(2, 10, 0.7)).toBeCloseTo(2 - 2 ** -0.3 / 10, 14);
    expect(shrinkLp(-2, 10, 0.7)).toBeCloseTo(-(2 - 2 ** -0.3 / 10), 14);
    expect(shrinkLp(0.1, 10, 0.7)).toBe(0); // below the threshold β^(−1/(2−p)) ≈ 0.17
    expect(shrinkLp(0.5, 4, 1)).toBeCloseTo(0.25, 14); // p = 1: plain soft thresholding by 1/β
  });

  for (const optimizeScale of [false, true]) {
    it(`one iteration on a group equals the reference's (optimizeScale ${optimizeScale}), with the shrinkage active`, () => {
      const w = Array.from(randn([32], { seed: 17 }).dataSync() as Float32Array);
      w[5] = 4.5; // an outlier
      for (const bits of [2, 3, 4]) {
        const lo = Math.min(...w);
        const s = (Math.max(...w) - lo) / (2 ** bits - 1);
        const z = -lo / s;
        for (const [beta, p] of [[10, 0.7], [3, 0.5], [10, 1]] as const) {
          const ref = refIteration(w, s, z, bits, beta, p, optimizeScale);
          if (bits === 2) expect(ref.we.some((x) => x !== 0), "W_e is not all zero").toBe(true);
          const got = hqqStep(Float32Array.from(w), 0, w.length, bits, s, z, beta, p, optimizeScale);
          expect(got.error).toBeCloseTo(ref.error, 10);
          expect(Math.abs(got.zero - ref.zero)).toBeLessThan(1e-9);
          expect(Math.abs(got.scale - ref.scale) / ref.scale).toBeLessThan(1e-9);
          if (optimizeScale) expect(got.scale).not.toBe(s);
        }
      }
    });
  }

  for (const optimizeScale of [false, true]) {
    it(`quantizeHqq stores the reference's grid rounded to f16 and its codes (optimizeScale ${optimizeScale})`, () => {
      const w = randn([3, 64], { seed: 23, std: 0.05 });
      const wv = w.dataSync() as Float32Array;
      for (const bits of [2, 3, 4, 8]) {
        const q = quantizeHqq(w, { bits, groupSize: 32, optimizeScale });
        const st = stored(q);
        const fit = refFit(wv, 32, bits, params({ optimizeScale }));
        for (let j = 0; j < 3; j++) {
          for (let g = 0; g < 2; g++) {
            const ref = fit[j * 2 + g]!;
            const [s16, z16] = roundToF16(Float32Array.from([ref.scale, ref.zero]));
            const k = st.at(j, g * 32);
            expect(st.scales[k]).toBe(s16);
            expect(st.zeros[k]).toBe(z16);
            for (let i = g * 32; i < g * 32 + 32; i++) expect(st.codes[j * 64 + i]).toBe(Math.min(2 ** bits - 1, Math.max(0, refRound(wv[j * 64 + i]! / s16! + z16!))));
          }
        }
        q.dispose();
      }
      w.dispose();
    });
  }

  it("iterations 0 is the min-max grid with a real zero point", () => {
    const w = randn([4, 64], { seed: 2 });
    const wv = w.dataSync() as Float32Array;
    const q = quantizeHqq(w, { bits: 3, groupSize: 64, iterations: 0 });
    const st = stored(q);
    for (let j = 0; j < 4; j++) {
      const row = Array.from(wv.subarray(j * 64, j * 64 + 64));
      const s = (Math.max(...row) - Math.min(...row)) / 7;
      const [s16, z16] = roundToF16(Float32Array.from([s, -Math.min(...row) / s]));
      expect(st.scales[j]).toBe(s16);
      expect(st.zeros[j]).toBe(z16);
      expect(Number.isInteger(st.zeros[j])).toBe(false);
    }
    q.dispose();
    w.dispose();
  });
});

describe("the stored weight is f16(scale)·(q − f16(zero)) with q the nearest code on that grid", () => {
  for (const bits of [2, 3, 4, 8]) {
    it(`${bits} bits`, () => {
      const w = randn([16, 128], { seed: 40 + bits, std: 0.04 });
      const wv = w.dataSync() as Float32Array;
      const q = quantizeHqq(w, { bits, groupSize: 64 });
      const st = stored(q);
      const wHat = dequantizeAll(q);
      const maxq = 2 ** bits - 1;
      let differFromUnrounded = 0;
      const fit = hqqOptimize(wv, 64, bits, params());
      const unrounded = (j: number, g: number) => ({ scale: fit.scales[j * 2 + g]!, zero: fit.zeros[j * 2 + g]! });
      for (let j = 0; j < 16; j++) {
        for (let i = 0; i < 128; i++) {
          const k = st.at(j, i);
          const s = st.scales[k]!;
          const z = st.zeros[k]!;
          const c = st.codes[j * 128 + i]!;
          // materialize (the format's kernel) is exactly f32(f16(s)·(q − f16(z)))
          expect(wHat[j * 128 + i]).toBe(Math.fround(s * (c - z)));
          // and q is the nearest of all 2^b levels of the stored grid to w (brute force)
          let bestK = 0;
          for (let c2 = 1; c2 <= maxq; c2++) if (Math.abs(wv[j * 128 + i]! - s * (c2 - z)) < Math.abs(wv[j * 128 + i]! - s * (bestK - z))) bestK = c2;
          expect(Math.abs(wv[j * 128 + i]! - s * (c - z))).toBeLessThanOrEqual(Math.abs(wv[j * 128 + i]! - s * (bestK - z)) + 1e-12);
          // the codes of the unrounded (f32) grid differ somewhere: the last step has to use the stored one
          const r = unrounded(j, Math.floor(i / 64));
          if (hqqCode(wv[j * 128 + i]!, r.scale, r.zero, maxq) !== c) differFromUnrounded++;
        }
      }
      if (bits >= 3) expect(differFromUnrounded, "codes of the unrounded grid that differ").toBeGreaterThan(0);
      q.dispose();
      w.dispose();
    });
  }
});

describe("the lp error (p = 0.7) after HQQ is below the min-max start's", () => {
  for (const bits of [2, 3, 4, 8]) {
    it(`${bits} bits, groups of 64: N(0, 1) weights and tiny-llama's layers; optimizeScale does not raise it`, () => {
      const rnd = randn([64, 256], { seed: 70 + bits });
      const real = loadSafetensors(tinyLlama, { names: REAL });
      try {
        for (const [name, w] of [["N(0, 1)", rnd] as const, ...real]) {
          const start = lpOfQuantized(w, { bits, groupSize: 64, iterations: 0 });
          const opt = lpOfQuantized(w, { bits, groupSize: 64 });
          const optScale = lpOfQuantized(w, { bits, groupSize: 64, optimizeScale: true });
          expect(opt, `${name}: ${opt} vs start ${start}`).toBeLessThan(start);
          expect(optScale, `${name} with optimizeScale: ${optScale} vs start ${start}`).toBeLessThan(start);
          expect(optScale, `${name} with optimizeScale: ${optScale} vs zero only ${opt}`).toBeLessThanOrEqual(opt);
        }
      } finally {
        rnd.dispose();
        dispose([...real.values()]);
      }
    });
  }

  it("before f16 rounding, the mean |W − Ŵ| the search watches ends at most at the start's, after 0 to 20 steps", () => {
    const w = randn([32, 256], { seed: 5 }).dataSync() as Float32Array;
    for (const bits of [2, 3, 4, 8]) {
      for (const optimizeScale of [false, true]) {
        const r = hqqOptimize(w, 64, bits, params({ optimizeScale }));
        expect(r.l1).toBeLessThan(r.startL1);
        expect(r.steps).toBeGreaterThan(0);
        expect(r.steps).toBeLessThanOrEqual(20);
        let l1 = 0;
        for (let k = 0; k < r.scales.length; k++) l1 += lpError(w, k * 64, k * 64 + 64, r.scales[k]!, r.zeros[k]!, bits, 1);
        expect(l1).toBeCloseTo(r.l1, 8);
        const none = hqqOptimize(w, 64, bits, params({ optimizeScale, iterations: 0 }));
        expect(none.steps).toBe(0);
        expect(none.l1).toBe(r.startL1);
      }
    }
  });
});

describe("options", () => {
  const w = randn([4, 64], { seed: 1 });
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ["lpNorm 1.5", { lpNorm: 1.5 }, /lpNorm must be at most 1, got 1\.5/],
    ["lpNorm 0", { lpNorm: 0 }, /lpNorm = 0: p must be above 0/],
    ["kappa 0.9", { kappa: 0.9 }, /kappa = 0\.9: κ must be above 1/],
    ["iterations -1", { iterations: -1 }, /iterations must be at least 0, got -1/],
    ["iterations 2.5", { iterations: 2.5 }, /iterations must be an integer/],
    ["beta \"x\"", { beta: "x" }, /beta must be a finite number, got "x"/],
    ["beta 0", { beta: 0 }, /beta = 0: β must be above 0/],
    ["optimizeScale \"yes\"", { optimizeScale: "yes" }, /optimizeScale must be true or false/],
    ["symmetric", { symmetric: true }, /symmetric quantization is not supported/],
  ];
  for (const [what, opts, pattern] of bad) {
    it(`rejects ${what}, naming the option`, async () => {
      expect(() => quantizeHqq(w, { bits: 4, groupSize: 32, ...opts })).toThrow(pattern);
      await expect(Promise.resolve().then(() => hqqQuantizer.quantize(w, { bits: 4, groupSize: 32, ...opts }))).rejects.toThrow(/quantizer 'hqq'/);
    });
  }
  it("declares its options, defaults and calibration", () => {
    expect(hqqQuantizer.name).toBe("hqq");
    expect(hqqQuantizer.calibration).toBe("none");
    expect(hqqQuantizer.defaultGroupSize).toBe(64);
    expect(hqqQuantizer.supportedBits).toEqual([2, 3, 4, 8]);
    expect(Object.fromEntries(hqqQuantizer.options!.map((o) => [o.name, o.default]))).toEqual({ lpNorm: 0.7, beta: 10, kappa: 1.01, iterations: 20, optimizeScale: false });
  });
  it("zero points are real (f16) and outlier-free groups keep their grid in range", () => {
    const q = quantizeHqq(w, { bits: 4, groupSize: 32 });
    expect(q.zeroKind).toBe("real");
    expect(q.zeros.dtype).toBe("f16");
    q.dispose();
  });
  it("constant and all-zero groups are represented exactly", () => {
    const v = new Float32Array(128);
    v.fill(0.25, 0, 32);
    v.fill(-3, 32, 64); // 64..127 stay 0
    const c = tensor(v, [2, 64]);
    for (const bits of [2, 8]) {
      const q = quantizeHqq(c, { bits, groupSize: 32 });
      expect(Array.from(dequantizeAll(q))).toEqual(Array.from(v));
      q.dispose();
    }
    c.dispose();
  });
});
