// Creation kernels: constants, ranges and Philox random numbers, made on the backend's device.
// Random numbers are a pure function of (seed, offset), so every backend must draw the same
// values as the Philox4x32-10 reference (random.ts), bit for bit.
import { arange, full, normalFill, rand, randn, uniformFill, type DType } from "../../index.js";
import { bf16Bits, bitsToNumber16 } from "../reference.js";
import type { ConformanceCase } from "../types.js";
import { COMPUTE_DTYPES, count, fmt } from "./common.js";

function fullCases(dtype: DType): ConformanceCase[] {
  const rows: [number[], number][] = [[[3, 33], 0], [[4099], dtype === "i32" ? -3 : -2.5], [[], 7], [[0, 5], 1]];
  return rows.map(([shape, value]) => ({
    op: "full", dtype, label: `${fmt(shape)} value=${value}`, kernels: ["fill"], exact: true,
    inputs: () => [],
    forward: (_, device) => full(shape, value, { dtype, device }),
    reference: () => atStorage(dtype, new Float64Array(count(shape)).fill(value)),
  }));
}

function arangeCases(dtype: DType): ConformanceCase[] {
  const rows: [number, number, number][] = [[0, 17, 1], [-3, 4099, 2], [5, 4, 1], [0, 1, 1]];
  if (dtype !== "i32") rows.push([0.5, -2, -0.25]);
  return rows.map(([start, end, step]) => ({
    op: "arange", dtype, label: `${start}..${end} step=${step}`, kernels: ["arange"], exact: true,
    inputs: () => [],
    forward: (_, device) => arange(start, end, step, { dtype, device }),
    reference: () => {
      const n = Math.max(0, Math.ceil((end - start) / step));
      return atStorage(dtype, Float64Array.from({ length: n }, (_, i) => start + i * step));
    },
  }));
}

function randomCases(dtype: DType): ConformanceCase[] {
  // [shape, seed, offset, a, b]: uniform in [a, b) / normal with mean a and std b.
  const rows: [number[], number, number, number, number][] = [[[3, 33], 7, 0, 0, 1], [[4099], 123456789, 5, -2, 3], [[1], 1, 0, 0, 1], [[0], 1, 0, 0, 1]];
  return rows.flatMap(([shape, seed, offset, a, b]) => [
    {
      op: "rand", dtype, label: `${fmt(shape)} seed=${seed} offset=${offset} [${a},${b})`, kernels: ["random"], exact: true,
      inputs: () => [],
      forward: (_, device) => rand(shape, { dtype, device, seed, offset, low: a, high: b }),
      reference: () => drawn(dtype, count(shape), (x) => uniformFill(x, seed, offset), (u) => a + (b - a) * u),
    },
    {
      // The Philox bits are the same everywhere, but Box–Muller takes log, sin and cos in f64, and
      // libms differ in the last bit (V8's against CUDA's). f32 and bf16 round that away; f64 keeps
      // it, so the f64 case allows 4 units of roundoff (an error of 1 ulp is 2) instead of bit equality.
      op: "randn", dtype, label: `${fmt(shape)} seed=${seed} offset=${offset} mean=${a} std=${b}`, kernels: ["random"],
      ...(dtype === "f64" ? { ulps: 4 } : { exact: true }),
      inputs: () => [],
      forward: (_, device) => randn(shape, { dtype, device, seed, offset, mean: a, std: b }),
      reference: () => drawn(dtype, count(shape), (x) => normalFill(x, seed, offset), (z) => a + b * z),
    },
  ] satisfies ConformanceCase[]);
}

/**
 * The reference draw: the generator at the case's dtype, then the affine map rounded there too
 * (bf16 draws in f32 and rounds the result once to bf16, as the creation ops do).
 */
function drawn(dtype: DType, n: number, fill: (x: Float32Array | Float64Array) => void, map: (v: number) => number): Float64Array {
  const x = dtype === "f64" ? new Float64Array(n) : new Float32Array(n);
  fill(x);
  for (let i = 0; i < n; i++) x[i] = map(x[i]!);
  return atStorage(dtype, Float64Array.from(x));
}

/** bf16 values are f32 values rounded once to nearest even; other dtypes hold `x` as it is. */
function atStorage(dtype: DType, x: Float64Array): Float64Array {
  return dtype === "bf16" ? x.map((v) => bitsToNumber16(bf16Bits(v), "bf16")) : x;
}

/** The creation cases. */
export const CREATION_CASES: readonly ConformanceCase[] = [
  ...[...COMPUTE_DTYPES, "i32" as const].flatMap(fullCases),
  ...[...COMPUTE_DTYPES, "i32" as const].flatMap(arangeCases),
  ...COMPUTE_DTYPES.flatMap(randomCases),
];
