// Element-wise unary and binary ops, scale, and the in-place updates.
import { add, binary, div, equal, greater, less, maximum, minimum, mul, pow, sub, addInPlace, assign, fillInPlace, scaleInPlace, scale, unary, type DType, type BinaryOpName, type UnaryOpName, type Tensor } from "../../index.js";
import { binaryRef, broadcastShape, sumToRef } from "../reference.js";
import type { CaseRng, ConformanceCase } from "../types.js";
import { count, fmt, input, perDType } from "./common.js";

interface UnarySpec {
  /** Input values. */
  gen: (rng: CaseRng, n: number) => Float64Array;
  f: (x: number) => number;
  /** f'(x); absent for ops without a gradient. */
  df?: (x: number) => number;
  ulps?: number;
  gradUlps?: number;
  param?: number;
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));
const positive = (rng: CaseRng, n: number) => rng.uniform(n, 0.1, 3);
const wide = (rng: CaseRng, n: number) => rng.awayFromZero(n, 0.1, 4);

// The native exp/log/tanh are vectorised approximations; 16 units of roundoff leaves room for them.
const UNARY: Record<UnaryOpName, UnarySpec> = {
  neg: { gen: wide, f: (x) => -x, df: () => -1 },
  exp: { gen: wide, f: Math.exp, df: Math.exp, ulps: 16 },
  log: { gen: positive, f: Math.log, df: (x) => 1 / x, ulps: 16 },
  sqrt: { gen: positive, f: Math.sqrt, df: (x) => 0.5 / Math.sqrt(x) },
  rsqrt: { gen: positive, f: (x) => 1 / Math.sqrt(x), df: (x) => -0.5 * x ** -1.5 },
  abs: { gen: wide, f: Math.abs, df: Math.sign },
  relu: { gen: wide, f: (x) => Math.max(x, 0), df: (x) => (x > 0 ? 1 : 0) },
  // The backward reads the saved y: y·(1 − y) loses log2(1/(1 − y)) bits as y → 1, so the
  // inputs stay in ±3 (1 − y ≥ 0.047) and the gradient gets 32 units.
  sigmoid: { gen: (rng, n) => rng.awayFromZero(n, 0.1, 3), f: sig, df: (x) => sig(x) * (1 - sig(x)), ulps: 16, gradUlps: 32 },
  tanh: { gen: wide, f: Math.tanh, df: (x) => 1 - Math.tanh(x) ** 2, ulps: 16 },
  silu: { gen: wide, f: (x) => x * sig(x), df: (x) => sig(x) + x * sig(x) * (1 - sig(x)), ulps: 16 },
  square: { gen: wide, f: (x) => x * x, df: (x) => 2 * x },
  reciprocal: { gen: positive, f: (x) => 1 / x, df: (x) => -1 / (x * x) },
  sign: { gen: wide, f: Math.sign },
  powScalar: { gen: positive, f: (x) => x ** 2.5, df: (x) => 2.5 * x ** 1.5, param: 2.5, ulps: 16 },
};

const UNARY_SHAPES: readonly (readonly number[])[] = [[3, 33], [127], [0, 5], []];

function unaryCase(op: UnaryOpName, dtype: DType, shape: readonly number[]): ConformanceCase {
  const s = UNARY[op];
  return {
    op, dtype, label: fmt(shape), kernels: s.df ? ["unary", "unaryGrad"] : ["unary"], ulps: s.ulps, gradUlps: s.gradUlps,
    inputs: (rng) => [input(shape, dtype, s.gen(rng, count(shape)), !!s.df)],
    forward: ([x]) => unary(op, x!, s.param ?? 0),
    reference: ([x]) => x!.map(s.f),
    referenceGrad: s.df ? ([x], w) => [x!.map((v, i) => w[i]! * s.df!(v))] : undefined,
  };
}

interface BinarySpec {
  fn: (a: Tensor, b: Tensor) => Tensor;
  f: (a: number, b: number) => number;
  /** Partial derivatives; absent for comparisons. */
  da?: (a: number, b: number) => number;
  db?: (a: number, b: number) => number;
  genA?: (rng: CaseRng, n: number) => Float64Array;
  genB?: (rng: CaseRng, n: number) => Float64Array;
  ulps?: number;
}

// Comparisons draw from a few integers so that equal elements occur.
const smallInts = (rng: CaseRng, n: number) => rng.ints(n, -2, 3);

const BINARY: Record<BinaryOpName, BinarySpec> = {
  add: { fn: add, f: (a, b) => a + b, da: () => 1, db: () => 1 },
  sub: { fn: sub, f: (a, b) => a - b, da: () => 1, db: () => -1 },
  mul: { fn: mul, f: (a, b) => a * b, da: (_, b) => b, db: (a) => a },
  div: { fn: div, f: (a, b) => a / b, da: (_, b) => 1 / b, db: (a, b) => -a / (b * b), genB: (rng, n) => rng.awayFromZero(n, 0.5, 2) },
  // Ties split the gradient evenly (the ops' documented rule); bf16-rounded inputs do tie.
  maximum: { fn: maximum, f: Math.max, da: (a, b) => (a > b ? 1 : a === b ? 0.5 : 0), db: (a, b) => (a > b ? 0 : a === b ? 0.5 : 1) },
  minimum: { fn: minimum, f: Math.min, da: (a, b) => (a < b ? 1 : a === b ? 0.5 : 0), db: (a, b) => (a < b ? 0 : a === b ? 0.5 : 1) },
  pow: {
    fn: pow, f: (a, b) => a ** b, da: (a, b) => b * a ** (b - 1), db: (a, b) => a ** b * Math.log(a),
    genA: (rng, n) => rng.uniform(n, 0.2, 2), ulps: 32, // pow is exp(b·log a): the errors of both add up
  },
  eq: { fn: equal, f: (a, b) => (a === b ? 1 : 0), genA: smallInts, genB: smallInts },
  gt: { fn: greater, f: (a, b) => (a > b ? 1 : 0), genA: smallInts, genB: smallInts },
  lt: { fn: less, f: (a, b) => (a < b ? 1 : 0), genA: smallInts, genB: smallInts },
};

/** Shape pairs: same shape, both sides broadcast, a scalar side, empty, one element. */
const BINARY_SHAPES: readonly [readonly number[], readonly number[]][] = [
  [[17], [17]],
  [[3, 1, 33], [17, 1]],
  [[4, 5], []],
  [[0, 5], [5]],
  [[1], [1]],
];

function binaryCase(op: BinaryOpName, dtype: DType, as: readonly number[], bs: readonly number[]): ConformanceCase {
  const s = BINARY[op];
  const out = broadcastShape(as, bs);
  // A gradient of a broadcast input sums over the broadcast elements.
  const reps = Math.max(count(out) / Math.max(1, count(as)), count(out) / Math.max(1, count(bs)));
  const grad = !!s.da;
  return {
    op, dtype, label: `${fmt(as)} ${fmt(bs)}`, ulps: s.ulps, gradDepth: reps,
    kernels: grad ? [op, "reduce", "reshape"] : [op],
    inputs: (rng) => [
      input(as, dtype, (s.genA ?? wide)(rng, count(as)), grad),
      input(bs, dtype, (s.genB ?? wide)(rng, count(bs)), grad),
    ],
    forward: ([a, b]) => binary(op, a!, b!),
    reference: ([a, b]) => binaryRef(s.f, a!, as, b!, bs),
    referenceGrad: grad
      ? ([a, b], w) => [
          sumToRef(mulBy(binaryRef(s.da!, a!, as, b!, bs), w), out, as),
          sumToRef(mulBy(binaryRef(s.db!, a!, as, b!, bs), w), out, bs),
        ]
      : undefined,
  };
}

function mulBy(x: Float64Array, w: Float64Array): Float64Array {
  return x.map((v, i) => v * w[i]!);
}

function scaleCases(dtype: DType): ConformanceCase[] {
  return [[33, 3], [0], []].map((shape) => ({
    op: "scale", dtype, label: `${fmt(shape)} alpha=-1.5 beta=0.25`, kernels: ["scale"],
    inputs: (rng: CaseRng) => [input(shape, dtype, rng.uniform(count(shape)), true)],
    forward: ([x]: Tensor[]) => scale(x!, -1.5, 0.25),
    reference: ([x]: Float64Array[]) => x!.map((v) => -1.5 * v + 0.25),
    referenceGrad: (_: Float64Array[], w: Float64Array) => [w.map((v) => -1.5 * v)],
  }));
}

function inPlaceCases(dtype: DType): ConformanceCase[] {
  const shape = [3, 17];
  return [
    {
      op: "assign", dtype, label: `${fmt(shape)} <- [17]`, kernels: ["assign"], exact: true,
      inputs: (rng) => [input(shape, dtype, rng.uniform(51)), input([17], dtype, rng.uniform(17))],
      forward: ([d, s]) => assign(d!, s!),
      reference: ([, s]) => Float64Array.from({ length: 51 }, (_, i) => s![i % 17]!),
    },
    {
      op: "addInPlace", dtype, label: `${fmt(shape)} += 0.5*[3,1]`, kernels: ["addInPlace"],
      inputs: (rng) => [input(shape, dtype, rng.uniform(51)), input([3, 1], dtype, rng.uniform(3))],
      forward: ([d, s]) => addInPlace(d!, s!, 0.5),
      reference: ([d, s]) => d!.map((v, i) => v + 0.5 * s![Math.floor(i / 17)]!),
    },
    {
      op: "scaleInPlace", dtype, label: `${fmt(shape)} *2-1`, kernels: ["scaleInPlace"],
      inputs: (rng) => [input(shape, dtype, rng.uniform(51))],
      forward: ([d]) => scaleInPlace(d!, 2, -1),
      reference: ([d]) => d!.map((v) => 2 * v - 1),
    },
    {
      op: "fillInPlace", dtype, label: `${fmt(shape)} 0.75`, kernels: ["fillInPlace"], exact: true,
      inputs: (rng) => [input(shape, dtype, rng.uniform(51))],
      forward: ([d]) => fillInPlace(d!, 0.75),
      reference: () => new Float64Array(51).fill(0.75),
    },
  ];
}

/** Unary, binary, scale and in-place cases. */
export const ELEMENTWISE_CASES: ConformanceCase[] = perDType((dtype) => [
  ...(Object.keys(UNARY) as UnaryOpName[]).flatMap((op) => UNARY_SHAPES.map((shape) => unaryCase(op, dtype, shape))),
  unaryCase("exp", dtype, [4099]),
  ...(Object.keys(BINARY) as BinaryOpName[]).flatMap((op) => BINARY_SHAPES.map(([a, b]) => binaryCase(op, dtype, a, b))),
  ...scaleCases(dtype),
  ...inPlaceCases(dtype),
]);
