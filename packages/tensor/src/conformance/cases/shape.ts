// Shape ops with kernels (views, copies, concat, broadcast), gather/embedding, and cast.
import { cast, gather, embedding, broadcastTo, clone, concat, contiguous, permute, reshape, slice, transpose, type DType } from "../../index.js";
import { bf16Bits, bitsToNumber16, broadcastRef, f16Bits, permuteRef, sliceRef, sumToRef } from "../reference.js";
import type { ConformanceCase } from "../types.js";
import { count, fmt, input, ints, perDType } from "./common.js";

function shapeCases(dtype: DType): ConformanceCase[] {
  const grad = dtype === "f32" || dtype === "f64" || dtype === "bf16";
  const copy = (op: string, label: string, shape: number[], kernels: string[], forward: ConformanceCase["forward"], reference: ConformanceCase["reference"], referenceGrad?: ConformanceCase["referenceGrad"]): ConformanceCase => ({
    op, dtype, label, kernels, exact: true, forward, reference,
    inputs: (rng) => [input(shape, dtype, dtype === "i32" ? rng.ints(count(shape), -50, 50) : rng.uniform(count(shape)), grad)],
    referenceGrad: grad ? referenceGrad : undefined,
  });
  return [
    copy("reshape", "[3,4,5] -> [12,5]", [3, 4, 5], ["reshape"], ([x]) => reshape(x!, [12, 5]), ([x]) => x!, (_, w) => [w]),
    copy("reshape", "[4,6]ᵀ -> [24] (a copy)", [4, 6], ["reshape", "permute"], ([x]) => reshape(transpose(x!), [24]), ([x]) => permuteRef(x!, [4, 6], [1, 0]), (_, w) => [permuteRef(w, [6, 4], [1, 0])]),
    copy("permute", "[2,3,5] perm=[2,0,1]", [2, 3, 5], ["permute", "contiguous"], ([x]) => contiguous(permute(x!, [2, 0, 1])), ([x]) => permuteRef(x!, [2, 3, 5], [2, 0, 1]), (_, w) => [permuteRef(w, [5, 2, 3], [1, 2, 0])]),
    copy("contiguous", "[17,33]ᵀ", [17, 33], ["contiguous", "permute"], ([x]) => contiguous(transpose(x!)), ([x]) => permuteRef(x!, [17, 33], [1, 0]), (_, w) => [permuteRef(w, [33, 17], [1, 0])]),
    copy("clone", "[127]", [127], ["clone"], ([x]) => clone(x!), ([x]) => x!, (_, w) => [w]),
    copy("clone", "[]", [], ["clone"], ([x]) => clone(x!), ([x]) => x!, (_, w) => [w]),
    copy("slice", "[17,33] [3:10,5:]", [17, 33], ["slice", "sliceGrad", "contiguous"], ([x]) => contiguous(slice(x!, [3, 5], [10, 33])), ([x]) => sliceRef(x!, [17, 33], [3, 5], [10, 33]),
      (_, w) => [padRef(w, [7, 28], [17, 33], [3, 5])]),
    copy("slice", "[17,33] [4:4,:] (empty)", [17, 33], ["slice", "sliceGrad"], ([x]) => slice(x!, [4], [4]), () => new Float64Array(0), () => [new Float64Array(17 * 33)]),
    {
      op: "concat", dtype, label: "[3,5] [3,0] [3,2] axis=1", kernels: ["concat", "slice", "contiguous"], exact: true,
      inputs: (rng) => [[3, 5], [3, 0], [3, 2]].map((s) => input(s, dtype, dtype === "i32" ? rng.ints(count(s), -9, 9) : rng.uniform(count(s)), grad)),
      forward: (xs) => concat(xs, 1),
      reference: ([a, , c]) => Float64Array.from({ length: 21 }, (_, i) => (i % 7 < 5 ? a![Math.floor(i / 7) * 5 + (i % 7)]! : c![Math.floor(i / 7) * 2 + (i % 7) - 5]!)),
      referenceGrad: grad ? (_, w) => [sliceRef(w, [3, 7], [0, 0], [3, 5]), new Float64Array(0), sliceRef(w, [3, 7], [0, 5], [3, 7])] : undefined,
    },
    {
      op: "concat", dtype, label: "[1,4] [2,4] axis=0", kernels: ["concat", "slice"], exact: true,
      inputs: (rng) => [[1, 4], [2, 4]].map((s) => input(s, dtype, dtype === "i32" ? rng.ints(count(s), -9, 9) : rng.uniform(count(s)), grad)),
      forward: (xs) => concat(xs, 0),
      reference: ([a, b]) => Float64Array.from([...a!, ...b!]),
      referenceGrad: grad ? (_, w) => [w.slice(0, 4), w.slice(4)] : undefined,
    },
    {
      op: "broadcastTo", dtype, label: "[3,1] -> [2,3,5]", kernels: ["broadcastTo", "reduce", "reshape"], exact: true, exactGrad: false, gradDepth: 10,
      inputs: (rng) => [input([3, 1], dtype, dtype === "i32" ? rng.ints(3, -9, 9) : rng.uniform(3), grad)],
      forward: ([x]) => broadcastTo(x!, [2, 3, 5]),
      reference: ([x]) => broadcastRef(x!, [3, 1], [2, 3, 5]),
      referenceGrad: grad ? (_, w) => [sumToRef(w, [2, 3, 5], [3, 1])] : undefined,
    },
  ];
}

/** `w` of `shape` written at `starts` into zeros of `target` (the backward of slice). */
function padRef(w: Float64Array, shape: readonly number[], target: readonly number[], starts: readonly number[]): Float64Array {
  const out = new Float64Array(count(target));
  for (let i = 0; i < shape[0]!; i++) for (let j = 0; j < shape[1]!; j++) out[(i + starts[0]!) * target[1]! + j + starts[1]!] = w[i * shape[1]! + j]!;
  return out;
}

/** x [outer, n, inner] gathered at idx along the middle axis. */
function gatherRef(x: Float64Array, outer: number, n: number, inner: number, idx: Float64Array): Float64Array {
  const out = new Float64Array(outer * idx.length * inner);
  for (let o = 0; o < outer; o++) for (let k = 0; k < idx.length; k++) for (let j = 0; j < inner; j++) out[(o * idx.length + k) * inner + j] = x[(o * n + idx[k]!) * inner + j]!;
  return out;
}

function scatterRef(w: Float64Array, outer: number, n: number, inner: number, idx: Float64Array): Float64Array {
  const out = new Float64Array(outer * n * inner);
  for (let o = 0; o < outer; o++) for (let k = 0; k < idx.length; k++) for (let j = 0; j < inner; j++) out[(o * n + idx[k]!) * inner + j]! += w[(o * idx.length + k) * inner + j]!;
  return out;
}

function gatherCases(dtype: DType): ConformanceCase[] {
  // [shape of x, axis, shape of idx, op]
  const rows: [number[], number, number[], "gather" | "embedding"][] = [
    [[17, 5], 0, [3, 4], "gather"],
    [[3, 17, 4], 1, [5], "gather"],
    [[17, 5], 0, [0], "gather"],
    [[33, 8], 0, [2, 7], "embedding"],
    [[1, 1], 0, [3], "embedding"],
  ];
  return rows.map(([xs, axis, is, op]) => {
    const outer = count(xs.slice(0, axis));
    const n = xs[axis]!;
    const inner = count(xs.slice(axis + 1));
    return {
      op, dtype, label: `${fmt(xs)} axis=${axis} idx ${fmt(is)}`, exact: true, exactGrad: false,
      gradDepth: count(is), // repeated indices add up
      kernels: [op, "scatterAdd"],
      inputs: (rng) => [input(xs, dtype, rng.uniform(count(xs)), true), ints(is, rng.ints(count(is), 0, n))],
      forward: ([x, idx]) => (op === "embedding" ? embedding(x!, idx!) : gather(x!, idx!, axis)),
      reference: ([x, idx]) => gatherRef(x!, outer, n, inner, idx!),
      referenceGrad: ([, idx], w) => [scatterRef(w, outer, n, inner, idx!), null],
    } satisfies ConformanceCase;
  });
}

/** f32 values given by their bits: ties, subnormals, signed zero, infinities, NaN, large and tiny numbers. */
function specialF32(): Float64Array {
  const bits = [
    0x3f808000, 0x3f818000, 0x3f80c000, 0x3f807fff, 0xbf808001, // bf16 ties to even, above and below
    0x3f801000, 0x3f803000, 0x3f800fff, // f16 ties (13 dropped bits)
    0x00000001, 0x00400000, 0x387fc000, 0x33800000, 0x33000000, // f32 subnormals, f16 subnormal range, below half the smallest f16
    0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, // -0, ±inf, NaN
    0x477fe000, 0x477ff000, 0x47800000, 0x7f7fffff, 0x7f7f8000, // near the f16 and bf16 maxima
  ];
  const f = new Float32Array(new Uint32Array(bits).buffer);
  return Float64Array.from(f);
}

function castCases(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  const rt = (from: DType, to: DType, label: string, gen: (rng: import("../types.js").CaseRng) => Float64Array, ref: (x: number) => number, grad = false): void => {
    cases.push({
      op: "cast", dtype: from, label: `to ${to} ${label}`, kernels: ["cast"], exact: true,
      inputs: (rng) => {
        const data = gen(rng);
        return [input([data.length], from, data, grad)];
      },
      forward: ([x]) => cast(x!, to),
      reference: ([x]) => x!.map(ref),
      referenceGrad: grad ? (_, w) => [from === "f32" ? w.map(Math.fround) : w] : undefined,
    });
  };
  const random = (rng: import("../types.js").CaseRng) => Float64Array.from(rng.uniform(127, -3, 3), Math.fround);
  const bf16 = (x: number) => bitsToNumber16(bf16Bits(x), "bf16");
  const f16 = (x: number) => bitsToNumber16(f16Bits(x), "f16");
  rt("f32", "f64", "[127]", random, (x) => x, true);
  rt("f64", "f32", "[127]", (rng) => rng.uniform(127, -3, 3), Math.fround, true);
  rt("f32", "bf16", "[127]", random, bf16);
  rt("f32", "bf16", "special values", specialF32, bf16);
  rt("f32", "f16", "[127]", random, f16);
  rt("f32", "f16", "special values", specialF32, f16);
  rt("bf16", "f32", "round trip [127]", (rng) => Float64Array.from(random(rng), bf16), (x) => x);
  rt("f16", "f32", "round trip [127]", (rng) => Float64Array.from(random(rng), f16), (x) => x);
  rt("f32", "i32", "[127] truncates", (rng) => Float64Array.from(rng.uniform(127, -1000, 1000), Math.fround), Math.trunc);
  rt("i32", "f32", "[127]", (rng) => rng.ints(127, -(2 ** 30), 2 ** 30), Math.fround);
  rt("i32", "f64", "[127]", (rng) => rng.ints(127, -(2 ** 31), 2 ** 31), (x) => x);
  rt("u8", "f32", "[127]", (rng) => rng.ints(127, 0, 256), (x) => x);
  rt("f32", "f32", "[0]", () => new Float64Array(0), (x) => x);
  for (const to of ["bf16", "f64"] as const) {
    cases.push({
      op: "cast", dtype: "f32", label: `to ${to} [9,17] strided`, kernels: ["cast"], exact: true,
      inputs: (rng) => [{ ...input([9, 17], "f32", rng.uniform(153, -3, 3), to === "f64"), layout: "transposed" }],
      forward: ([x]) => cast(x!, to),
      reference: ([x]) => (to === "bf16" ? x!.map(bf16) : x!),
      referenceGrad: to === "f64" ? (_, w) => [w.map(Math.fround)] : undefined,
    });
  }
  return cases;
}

/** Shape, gather/embedding and cast cases. */
export const SHAPE_CASES: ConformanceCase[] = [
  ...perDType((dtype) => [...shapeCases(dtype), ...gatherCases(dtype)]),
  // Copies do not depend on the dtype: integer tensors must copy bit for bit too (bf16 is a compute dtype, above).
  ...shapeCases("i32"),
  ...castCases(),
];
