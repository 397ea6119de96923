// Reductions over axes: sum, mean, max, min. Forward kernel: ../cpu/reduce.ts.
import { checkFloat, runOp1, type OpDef } from "../op.js";
import { normalizeAxes, shapeSize, shapesEqual } from "../shape.js";
import { OpError } from "../errors.js";
import type { Tensor } from "../tensor.js";
import { broadcastTo, reshape } from "./shape.js";
import { binary, div, mul } from "./binary.js";
import { scale } from "./unary.js";

/** Attributes of reductions. */
export interface ReduceAttrs {
  readonly op: "sum" | "max" | "min";
  /** Sorted, normalised axes. */
  readonly axes: readonly number[];
  readonly keepDims: boolean;
}

function keptShape(shape: readonly number[], axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

/** One definition for the three reductions; the backward differs by op. */
export const reduceDef: OpDef<ReduceAttrs> = {
  name: "reduce",
  save: ([x], [y], attrs) => (attrs.op === "sum" ? [] : [x!, y!]),
  backward: ([dy], ctx) => {
    const inShape = ctx.inputs[0]!.shape;
    const kept = reshape(dy!, keptShape(inShape, ctx.attrs.axes));
    if (ctx.attrs.op === "sum") return [broadcastTo(kept, inShape)];
    // max/min: the gradient goes to the elements equal to the result, split evenly among ties.
    const [x, y] = ctx.saved as [Tensor, Tensor];
    const yk = reshape(y, keptShape(inShape, ctx.attrs.axes));
    const mask = binary("eq", x, yk);
    const count = reduce("sum", mask, ctx.attrs.axes, true);
    const share = div(kept, count);
    return [mul(mask, share)];
  },
};

/** Generic reduction. */
export function reduce(op: ReduceAttrs["op"], x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  x.assertAlive(op);
  checkFloat(op, [x]);
  const ax = normalizeAxes(axes, x.rank, op);
  if (op !== "sum" && ax.some((a) => x.shape[a] === 0)) throw new OpError(op, "cannot reduce over an empty axis", [x]);
  return runOp1(reduceDef, [x], { op, axes: ax, keepDims });
}

/** Sum over `axes` (default: all). */
export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  return reduce("sum", x, axes, keepDims);
}

/** Mean over `axes` (default: all). */
export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normalizeAxes(axes, x.rank, "mean");
  const n = shapeSize(ax.map((a) => x.shape[a]!));
  if (n === 0) throw new OpError("mean", "mean over zero elements", [x]);
  const s = sum(x, ax, keepDims);
  try {
    return scale(s, 1 / n);
  } finally {
    s.dispose();
  }
}

/** Maximum over `axes` (default: all); ties share the gradient. */
export function max(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  return reduce("max", x, axes, keepDims);
}

/** Minimum over `axes` (default: all); ties share the gradient. */
export function min(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  return reduce("min", x, axes, keepDims);
}

/**
 * Sums `g` over the axes along which `shape` was broadcast to `g.shape`, giving a tensor of
 * `shape` (the backward of broadcasting). Returns `g` itself when no reduction is needed.
 */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (shapesEqual(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? sum(g, axes, false) : g;
  const r = reshape(s, shape);
  if (s !== g) s.dispose();
  return r;
}
