// Reductions and the batched matrix product.
import { matmul, max, mean, min, sum, type DType } from "../../index.js";
import { broadcastRef, matmulRef, reduceRef, sumToRef } from "../reference.js";
import type { ConformanceCase } from "../types.js";
import { count, fmt, input, perDType } from "./common.js";

type ReduceName = "sum" | "max" | "min" | "mean";
const REDUCE_FN = { sum, max, min, mean };

/** Shape, axes (undefined: all), keepDims. Max/min skip the empty shapes (an error by design). */
const REDUCE_SHAPES: readonly [readonly number[], readonly number[] | undefined, boolean][] = [
  [[17, 33], undefined, false],
  [[3, 4099], [1], false],
  [[2, 3, 5], [0, 2], true],
  [[5, 7], [0], false],
  [[1], undefined, false],
  [[], undefined, false],
  [[0, 3], [0], false],
];

function reduceCase(op: ReduceName, dtype: DType, shape: readonly number[], axesOpt: readonly number[] | undefined, keepDims: boolean): ConformanceCase {
  const axes = axesOpt ?? shape.map((_, i) => i);
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const n = count(axes.map((a) => shape[a]!));
  const base = op === "mean" ? "sum" : op;
  return {
    op, dtype, label: `${fmt(shape)} axes=${axesOpt ? fmt(axesOpt) : "all"}${keepDims ? " keepDims" : ""}`,
    kernels: op === "mean" ? ["reduce", "scale", "broadcastTo"] : ["reduce", "broadcastTo", "eq", "div", "mul"],
    depth: op === "sum" || op === "mean" ? n : 1,
    inputs: (rng) => [input(shape, dtype, rng.uniform(count(shape)), true)],
    forward: ([x]) => REDUCE_FN[op](x!, axesOpt, keepDims),
    reference: ([x]) => {
      const y = reduceRef(base, x!, shape, axes);
      return op === "mean" ? y.map((v) => v / n) : y;
    },
    referenceGrad: ([x], w) => {
      const wb = broadcastRef(w, kept, shape);
      if (op === "sum") return [wb];
      if (op === "mean") return [wb.map((v) => v / n)];
      const yb = broadcastRef(reduceRef(base, x!, shape, axes), kept, shape);
      // Ties share the gradient evenly.
      const hits = x!.map((v, i) => (v === yb[i] ? 1 : 0));
      const ties = broadcastRef(sumToRef(hits, shape, kept), kept, shape);
      return [hits.map((h, i) => (h ? wb[i]! / ties[i]! : 0))];
    },
  };
}

/** a shape, b shape, transA, transB. */
const MATMUL_SHAPES: readonly [readonly number[], readonly number[], boolean, boolean][] = [
  [[17, 33], [33, 3], false, false],
  [[33, 17], [33, 3], true, false],
  [[17, 33], [3, 33], false, true],
  [[33, 17], [3, 33], true, true],
  [[2, 3, 5, 7], [7, 4], false, false], // a linear layer: B shared by the batch
  [[2, 1, 5, 7], [3, 7, 4], false, false], // both batch shapes broadcast
  [[2, 3, 7, 5], [2, 3, 4, 7], true, true],
  [[1, 1], [1, 1], false, false],
  [[2, 4099], [4099, 3], false, false], // a long inner dimension
  [[5, 0], [0, 3], false, false], // K = 0: zeros
  [[0, 4], [4, 3], false, false], // M = 0: empty
];

function matmulCase(dtype: DType, as: readonly number[], bs: readonly number[], transA: boolean, transB: boolean): ConformanceCase {
  const k = transA ? as[as.length - 2]! : as[as.length - 1]!;
  const out = matmulRef(new Float64Array(count(as)), as, new Float64Array(count(bs)), bs, transA, transB).shape;
  return {
    op: "matmul", dtype, label: `${fmt(as)}${transA ? "ᵀ" : ""} ${fmt(bs)}${transB ? "ᵀ" : ""}`,
    kernels: ["matmul", "reduce", "reshape", "permute"],
    depth: k,
    // dA sums over N, dB over M and the broadcast batch.
    gradDepth: Math.max(1, count(out) / Math.max(1, Math.min(count(as), count(bs))) * k),
    inputs: (rng) => [input(as, dtype, rng.uniform(count(as)), true), input(bs, dtype, rng.uniform(count(bs)), true)],
    forward: ([a, b]) => matmul(a!, b!, { transA, transB }),
    reference: ([a, b]) => matmulRef(a!, as, b!, bs, transA, transB).data,
    referenceGrad: ([a, b], w) => {
      // Y = op(A)·op(B): d op(A) = W·op(B)ᵀ, d op(B) = op(A)ᵀ·W, transposed back where op() transposed.
      const da = transA ? matmulRef(b!, bs, w, out, transB, true) : matmulRef(w, out, b!, bs, false, !transB);
      const db = transB ? matmulRef(w, out, a!, as, true, transA) : matmulRef(a!, as, w, out, !transA, false);
      return [sumToRef(da.data, da.shape, as), sumToRef(db.data, db.shape, bs)];
    },
  };
}

/** Reduction and matmul cases. */
export const LINALG_CASES: ConformanceCase[] = perDType((dtype) => [
  ...(["sum", "max", "min", "mean"] as const).flatMap((op) =>
    REDUCE_SHAPES.filter(([shape]) => op === "sum" || count(shape) > 0).map(([s, a, kd]) => reduceCase(op, dtype, s, a, kd)),
  ),
  ...MATMUL_SHAPES.map(([a, b, ta, tb]) => matmulCase(dtype, a, b, ta, tb)),
]);
