// Index selection along an axis, and its backward (scatter-add).
import { OpError } from "../errors.js";
import { runOp1, type OpDef } from "../op.js";
import { normalizeAxis } from "../shape.js";
import type { Tensor } from "../tensor.js";

/** Attributes of gather / scatterAdd. */
export interface GatherAttrs {
  readonly axis: number;
  /** For scatterAdd: the shape of the tensor that was gathered from. */
  readonly shape?: readonly number[];
}

export const gatherDef: OpDef<GatherAttrs> = {
  name: "gather",
  save: ([, idx]) => [idx!],
  backward: ([dy], ctx) => [runOp1(scatterAddDef, [dy!, ctx.saved[0]!], { axis: ctx.attrs.axis, shape: ctx.inputs[0]!.shape }), null],
};

/** Zeros of `shape`, plus `src` added at the gathered positions (not differentiable). */
export const scatterAddDef: OpDef<GatherAttrs> = { name: "scatterAdd" };

/**
 * Picks entries of `x` along `axis` by `indices` (i32, any shape): the result's shape is
 * `x.shape[:axis] + indices.shape + x.shape[axis+1:]`. Out-of-range indices are an error.
 * With `axis = 0` on a [vocab, dim] matrix this is an embedding lookup.
 */
export function gather(x: Tensor, indices: Tensor, axis = 0): Tensor {
  x.assertAlive("gather");
  indices.assertAlive("gather");
  if (indices.dtype !== "i32") throw new OpError("gather", `indices must be i32, got ${indices.dtype}`, [x, indices]);
  if (x.rank === 0) throw new OpError("gather", "cannot gather from a scalar", [x, indices]);
  const ax = normalizeAxis(axis, x.rank, "gather");
  return runOp1(gatherDef, [x, indices], { axis: ax });
}
