// Plain f64 reference implementations, written independently of the engine, for the tests. The
// shape helpers are shared with the conformance suite's references (src/conformance/reference.ts).
import { broadcastShape as bshape, matmulRef as conformanceMatmulRef, rowStrides as strides, unravelIndex as unravel } from "../src/conformance/reference.js";

export { bshape, strides, unravel };

export type Arr = Float64Array;

export function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Element of `data` (shape `shape`) at broadcast index `idx` of an output of rank idx.length. */
function at(data: Arr, shape: readonly number[], idx: readonly number[]): number {
  const off = idx.length - shape.length;
  let flat = 0;
  const st = strides(shape);
  for (let d = 0; d < shape.length; d++) flat += (shape[d] === 1 ? 0 : idx[off + d]!) * st[d]!;
  return data[flat]!;
}

export function binaryRef(f: (x: number, y: number) => number, a: Arr, as: number[], b: Arr, bs: number[]): { data: Arr; shape: number[] } {
  const shape = bshape(as, bs);
  const out = new Float64Array(size(shape));
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, shape);
    out[i] = f(at(a, as, idx), at(b, bs, idx));
  }
  return { data: out, shape };
}

export function reduceRef(f: "sum" | "max" | "min", x: Arr, shape: number[], axes: number[], keepDims: boolean): { data: Arr; shape: number[] } {
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const out = new Float64Array(size(kept)).fill(f === "sum" ? 0 : f === "max" ? -Infinity : Infinity);
  const ks = strides(kept);
  for (let i = 0; i < x.length; i++) {
    const idx = unravel(i, shape);
    let o = 0;
    idx.forEach((v, d) => (o += (axes.includes(d) ? 0 : v) * ks[d]!));
    out[o] = f === "sum" ? out[o]! + x[i]! : f === "max" ? Math.max(out[o]!, x[i]!) : Math.min(out[o]!, x[i]!);
  }
  return { data: out, shape: keepDims ? kept : shape.filter((_, i) => !axes.includes(i)) };
}

/** Batched matmul with broadcasting over leading dims (the conformance suite's reference). */
export function matmulRef(a: Arr, as: number[], b: Arr, bs: number[], transA = false, transB = false): { data: Arr; shape: number[] } {
  return conformanceMatmulRef(a, as, b, bs, transA, transB);
}

export function permuteRef(x: Arr, shape: number[], perm: number[]): { data: Arr; shape: number[] } {
  const outShape = perm.map((p) => shape[p]!);
  const out = new Float64Array(x.length);
  const st = strides(shape);
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, outShape);
    let src = 0;
    idx.forEach((v, d) => (src += v * st[perm[d]!]!));
    out[i] = x[src]!;
  }
  return { data: out, shape: outShape };
}

/** Deterministic pseudo-random values in [-1, 1) (LCG), independent of the engine's RNG. */
export function rnd(n: number, seed = 1, lo = -1, hi = 1): Float64Array {
  const out = new Float64Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / 16777216) * (hi - lo);
  }
  return out;
}

export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d;
  }
  return m;
}
