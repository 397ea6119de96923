// The OPTQ kernel against a plain f64 TypeScript reference written here: the whole column loop as
// the paper's unblocked algorithm (inverse-Hessian factor by Cholesky, inverse, Cholesky of the
// inverse; one full rank-1 update per column), which the native lazy-batch version must reproduce
// exactly (codes, scales, zeros, g_idx).
import { describe, expect, it } from "vitest";
import { optqQuantize, native } from "../ts/index.js";
import { rng } from "./helpers.js";

const f = Math.fround;

function roundHalfEven(x: number): number {
  const r = Math.floor(x);
  const d = x - r;
  if (d > 0.5) return r + 1;
  if (d < 0.5) return r + 0;
  return r % 2 === 0 ? r + 0 : r + 1;
}

/** GPTQ's min-max rule in f32 over already-f32 values. */
function params(vals: number[], bits: number, symmetric: boolean): { scale: number; zero: number } {
  const maxq = (1 << bits) - 1;
  let xmin = Math.min(0, ...vals);
  let xmax = Math.max(0, ...vals);
  if (symmetric) {
    xmax = Math.max(Math.abs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin === 0 && xmax === 0) [xmin, xmax] = [-1, 1];
  const scale = f(f(xmax - xmin) / maxq);
  return { scale, zero: symmetric ? (maxq + 1) / 2 : roundHalfEven(f(-xmin / scale)) };
}

function cholLower(a: Float64Array, n: number): Float64Array | null {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j]!;
    for (let k = 0; k < j; k++) d -= l[j * n + k]! ** 2;
    if (!(d > 0)) return null;
    l[j * n + j] = Math.sqrt(d);
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j]!;
      for (let k = 0; k < j; k++) s -= l[i * n + k]! * l[j * n + k]!;
      l[i * n + j] = s / l[j * n + j]!;
    }
  }
  return l;
}

/** Upper Cholesky factor of H⁻¹, the reference way: H⁻¹ by solving with L, then chol, transposed. */
function refHinv(h: Float64Array, n: number): Float64Array {
  const l = cholLower(h, n)!;
  const inv = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    // solve L y = e_c, then Lᵀ x = y
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = 0; k < i; k++) s -= l[i * n + k]! * y[k]!;
      y[i] = s / l[i * n + i]!;
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = y[i]!;
      for (let k = i + 1; k < n; k++) s -= l[k * n + i]! * inv[k * n + c]!;
      inv[i * n + c] = s / l[i * n + i]!;
    }
  }
  const l2 = cholLower(inv, n)!;
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = l2[j * n + i]!;
  return u;
}

interface RefOptions { bits: number; groupSize: number; symmetric: boolean; actOrder: boolean; staticGroups: boolean; percdamp: number }

/** OPTQ, unblocked: every column's error is applied to all later columns at once. */
function refOptq(w: Float32Array, h0: Float64Array, out: number, n: number, o: RefOptions) {
  const h = Float64Array.from(h0);
  const dead = Array.from({ length: n }, (_, i) => h[i * n + i] === 0);
  dead.forEach((d, i) => { if (d) h[i * n + i] = 1; });
  const perm = Array.from({ length: n }, (_, i) => i);
  if (o.actOrder) perm.sort((a, b) => h[b * n + b]! - h[a * n + a]! || a - b);
  const gs = o.groupSize;
  const groups = n / gs;
  const W = Array.from({ length: out }, (_, r) => perm.map((c) => (dead[c] ? 0 : w[r * n + c]!)));
  const fixed = Array.from({ length: out }, (_, r) => Array.from({ length: groups }, (_, g) =>
    params(Array.from({ length: gs }, (_, k) => (dead[g * gs + k] ? 0 : w[r * n + g * gs + k]!)), o.bits, o.symmetric)));
  const hp = new Float64Array(n * n);
  let mean = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) hp[i * n + j] = h[perm[i]! * n + perm[j]!]!;
  for (let i = 0; i < n; i++) mean += hp[i * n + i]! / n;
  for (let i = 0; i < n; i++) hp[i * n + i] += o.percdamp * mean;
  const U = refHinv(hp, n);
  const maxq = (1 << o.bits) - 1;
  const codes = new Uint8Array(out * n);
  const scales = new Float32Array(out * groups);
  const zeros = new Uint8Array(out * groups);
  const gIdx = new Int32Array(n);
  perm.forEach((c, j) => { gIdx[c] = o.staticGroups || !o.actOrder ? Math.floor(c / gs) : Math.floor(j / gs); });
  for (let r = 0; r < out; r++) {
    const row = W[r]!;
    let p = { scale: 1, zero: 0 };
    for (let i = 0; i < n; i++) {
      if (o.staticGroups) p = fixed[r]![Math.floor(perm[i]! / gs)]!;
      else if (i % gs === 0) {
        p = params(row.slice(i, i + gs).map(f), o.bits, o.symmetric);
        scales[r * groups + i / gs] = p.scale;
        zeros[r * groups + i / gs] = p.zero;
      }
      const q = Math.min(Math.max(roundHalfEven(f(f(row[i]!) / p.scale)) + p.zero, 0), maxq);
      codes[r * n + perm[i]!] = q;
      const err = (row[i]! - f(p.scale * (q - p.zero))) / U[i * n + i]!;
      for (let c = i + 1; c < n; c++) row[c] -= err * U[i * n + c]!;
    }
    if (o.staticGroups) fixed[r]!.forEach((g, k) => { scales[r * groups + k] = g.scale; zeros[r * groups + k] = g.zero; });
  }
  return { codes, scales, zeros, gIdx };
}

/** H = (2/m) XᵀX of X [m, n] with correlated columns (a random mixing of N(0,1) noise) and varied scales. */
function hessian(n: number, m: number, seed: number, deadCols: number[] = []): Float64Array {
  const u = rng(seed);
  const g = () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  const z = Array.from({ length: m * n }, g);
  const x = new Float64Array(m * n);
  for (let t = 0; t < m; t++)
    for (let j = 0; j < n; j++) {
      let s = z[t * n + j]!;
      if (j > 0) s += 0.8 * z[t * n + j - 1]!;
      if (j > 1) s += 0.5 * z[t * n + j - 2]!;
      x[t * n + j] = deadCols.includes(j) ? 0 : s * (0.5 + (j % 7) / 3);
    }
  const h = new Float64Array(n * n);
  for (let t = 0; t < m; t++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j] += (2 / m) * x[t * n + i]! * x[t * n + j]!;
  return h;
}

function weights(out: number, n: number, seed: number): Float32Array {
  const u = rng(seed);
  return Float32Array.from({ length: out * n }, () => (u() - 0.5) * 0.2);
}

describe("optqQuantize: lazy batches equal the unblocked reference (out 6, in 64, group 16)", () => {
  const out = 6;
  const n = 64;
  const w = weights(out, n, 7);
  const h = hessian(n, 256, 3, [5, 40]);
  const cases = [
    { actOrder: false, staticGroups: false, symmetric: false, bits: 3, blockSize: 128 },
    { actOrder: false, staticGroups: false, symmetric: false, bits: 3, blockSize: 24 },
    { actOrder: true, staticGroups: false, symmetric: false, bits: 3, blockSize: 24 },
    { actOrder: true, staticGroups: false, symmetric: false, bits: 4, blockSize: 128 },
    { actOrder: true, staticGroups: true, symmetric: false, bits: 2, blockSize: 16 },
    { actOrder: false, staticGroups: false, symmetric: true, bits: 4, blockSize: 32 },
    { actOrder: true, staticGroups: false, symmetric: false, bits: 8, blockSize: 20 },
  ];
  for (const c of cases) {
    it(`${c.bits} bits, act-order ${c.actOrder}, static ${c.staticGroups}, symmetric ${c.symmetric}, block ${c.blockSize}`, () => {
      const got = optqQuantize(w, h, out, n, { ...c, groupSize: 16, percdamp: 0.01 });
      const ref = refOptq(w, h, out, n, { ...c, groupSize: 16, percdamp: 0.01 });
      expect(Array.from(got.codes)).toEqual(Array.from(ref.codes));
      expect(Array.from(got.scales)).toEqual(Array.from(ref.scales));
      expect(Array.from(got.zeros)).toEqual(Array.from(ref.zeros));
      expect(Array.from(got.gIdx)).toEqual(Array.from(ref.gIdx));
      // dead columns are quantized as zero weights: the code is the zero point
      for (let r = 0; r < out; r++) for (const d of [5, 40]) expect(got.codes[r * n + d]).toBe(got.zeros[r * 4 + got.gIdx[d]!]);
    });
  }
  it("act-order: g_idx assigns groups in descending diag(H) order", () => {
    const got = optqQuantize(w, h, out, n, { bits: 3, groupSize: 16, actOrder: true });
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => h[b * n + b]! - h[a * n + a]! || a - b);
    order.forEach((c, j) => expect(got.gIdx[c]).toBe(Math.floor(j / 16)));
  });
  it("does not modify the caller's H", () => {
    const copy = Float64Array.from(h);
    optqQuantize(w, h, out, n, { bits: 3, groupSize: 16 });
    expect(Array.from(h)).toEqual(Array.from(copy));
  });
});

describe("optqQuantize: argument checks name the op", () => {
  const w = weights(2, 8, 1);
  const h = hessian(8, 32, 2);
  const codes = new Uint8Array(16), scales = new Float32Array(4), zeros = new Uint8Array(4), gIdx = new Int32Array(8);
  const raw = (...over: [number, unknown][]) => {
    const args: unknown[] = [w, Float64Array.from(h), 2, 8, 3, 4, false, false, false, 0.01, 128, codes, scales, zeros, gIdx];
    for (const [i, v] of over) args[i] = v;
    return () => (native().optqQuantize as (...a: unknown[]) => void)(...args);
  };
  it("accepts a good call", () => expect(raw()).not.toThrow());
  it("rejects bad types, lengths and values", () => {
    expect(raw([0, new Float64Array(16)])).toThrow(/optqQuantize: argument 'w' \(index 0\) must be a Float32Array/);
    expect(raw([1, new Float32Array(64)])).toThrow(/optqQuantize: argument 'h' \(index 1\) must be a Float64Array/);
    expect(raw([1, new Float64Array(63)])).toThrow(/optqQuantize: argument 'h' holds 63 elements, expected inFeatures × inFeatures/);
    expect(raw([4, 5])).toThrow(/optqQuantize: argument 'bits' must be 2, 3, 4 or 8, got 5/);
    expect(raw([5, 3])).toThrow(/optqQuantize: argument 'groupSize' = 3 does not divide inFeatures = 8/);
    expect(raw([9, -1])).toThrow(/optqQuantize: argument 'percdamp' = -1 must be a finite number >= 0/);
    expect(raw([12, new Float32Array(3)])).toThrow(/optqQuantize: argument 'scales' holds 3 elements/);
    expect(raw([0, Float32Array.from({ length: 16 }, (_, i) => (i === 3 ? NaN : 0))])).toThrow(/optqQuantize: w\[3\] is not finite/);
    expect(() => (native().optqQuantize as (...a: unknown[]) => void)(w)).toThrow(/optqQuantize: expected 15 arguments/);
  });
  it("a Hessian that is not positive definite after damping suggests a larger percdamp", () => {
    // rank-1 H with a negative direction: not PD whatever the small damping
    const bad = new Float64Array(64);
    for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) bad[i * 8 + j] = i === j ? 1 : -0.9;
    expect(() => optqQuantize(w, bad, 2, 8, { bits: 3, groupSize: 4, percdamp: 0 })).toThrow(/optqQuantize: the Hessian is not positive definite after damping with percdamp = 0; pass a larger percdamp/);
  });
});
