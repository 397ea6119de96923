// Shape ops. reshape (of contiguous data), transpose/permute and slice are views: they share
// storage with their input and copy nothing. concat, broadcastTo, clone and contiguous (of a
// non-contiguous view) copy.
import { OpError } from "../errors.js";
import { checkInputs, runOp1, type OpDef } from "../op.js";
import { broadcastShapes, checkShape, formatShape, normalizeAxis, shapeSize, shapesEqual } from "../shape.js";
import type { Tensor } from "../tensor.js";
import type { DType } from "../dtype.js";
import { sumToShape } from "./reduce.js";

/** Attributes of reshape. */
export interface ReshapeAttrs { readonly shape: readonly number[] }
/** Attributes of permute. */
export interface PermuteAttrs { readonly perm: readonly number[] }
/** Attributes of slice: per-axis start and end (exclusive). */
export interface SliceAttrs { readonly starts: readonly number[]; readonly ends: readonly number[] }
/** Attributes of concat. */
export interface ConcatAttrs { readonly axis: number }
/** Attributes of broadcastTo. */
export interface BroadcastAttrs { readonly shape: readonly number[] }
/** Attributes of the slice backward: the input shape it scatters into. */
export interface SliceGradAttrs { readonly shape: readonly number[]; readonly starts: readonly number[] }

export const reshapeDef: OpDef<ReshapeAttrs> = {
  name: "reshape",
  backward: ([dy], ctx) => [reshape(dy!, ctx.inputs[0]!.shape)],
};

export const permuteDef: OpDef<PermuteAttrs> = {
  name: "permute",
  backward: ([dy], ctx) => {
    const inv = new Array<number>(ctx.attrs.perm.length);
    ctx.attrs.perm.forEach((p, i) => (inv[p] = i));
    return [permute(dy!, inv)];
  },
};

export const sliceDef: OpDef<SliceAttrs> = {
  name: "slice",
  backward: ([dy], ctx) => [runOp1(sliceGradDef, [dy!], { shape: ctx.inputs[0]!.shape, starts: ctx.attrs.starts })],
};

/** Zeros of the input shape with `dy` written into the sliced region (not differentiable). */
export const sliceGradDef: OpDef<SliceGradAttrs> = { name: "sliceGrad" };

export const concatDef: OpDef<ConcatAttrs> = {
  name: "concat",
  backward: ([dy], ctx) => {
    const axis = ctx.attrs.axis;
    let start = 0;
    return ctx.inputs.map((inp, i) => {
      const len = inp.shape[axis]!;
      const starts = inp.shape.map((_, k) => (k === axis ? start : 0));
      const ends = inp.shape.map((d, k) => (k === axis ? start + len : d));
      start += len;
      return ctx.needsGrad[i] ? slice(dy!, starts, ends) : null;
    });
  },
};

export const broadcastDef: OpDef<BroadcastAttrs> = {
  name: "broadcastTo",
  backward: ([dy], ctx) => {
    const r = sumToShape(dy!, ctx.inputs[0]!.shape);
    return [r === dy ? dy!.detach() : r];
  },
};

export const contiguousDef: OpDef<Record<string, never>> = {
  name: "contiguous",
  backward: ([dy]) => [dy!.detach()],
};

/** Identity for gradients; always copies. */
export const cloneDef: OpDef<Record<string, never>> = {
  name: "clone",
  backward: ([dy]) => [dy!.detach()],
};

/** Resolves one `-1` in a target shape; checks the element count. */
export function resolveShape(x: Tensor, shape: readonly number[]): number[] {
  const out = [...shape];
  const neg = out.reduce<number[]>((acc, d, i) => (d === -1 ? [...acc, i] : acc), []);
  if (neg.length > 1) throw new OpError("reshape", `at most one dimension can be -1, got ${formatShape(shape)}`, [x]);
  if (neg.length === 1) {
    const known = shapeSize(out.filter((d) => d !== -1));
    if (known === 0 || x.size % known !== 0) throw new OpError("reshape", `cannot infer -1 in ${formatShape(shape)} for ${x.size} elements`, [x]);
    out[neg[0]!] = x.size / known;
  }
  checkShape(out, "reshape: shape");
  if (shapeSize(out) !== x.size) {
    throw new OpError("reshape", `cannot reshape ${x.size} elements into ${formatShape(shape)} (${shapeSize(out)} elements)`, [x]);
  }
  return out;
}

/** Same elements, new shape (one dimension may be -1). A view when `x` is contiguous, else a copy. */
export function reshape<D extends DType>(x: Tensor<D>, shape: readonly number[]): Tensor<D> {
  x.assertAlive("reshape");
  return runOp1(reshapeDef, [x], { shape: resolveShape(x, shape) }) as Tensor<D>;
}

/** Reorders dimensions (a view). `perm[i]` is the input dimension that becomes dimension i. */
export function permute<D extends DType>(x: Tensor<D>, perm: readonly number[]): Tensor<D> {
  x.assertAlive("permute");
  if (perm.length !== x.rank) throw new OpError("permute", `perm ${JSON.stringify(perm)} must list each of the ${x.rank} dimensions once`, [x]);
  const p = perm.map((a) => normalizeAxis(a, x.rank, "permute"));
  if (new Set(p).size !== p.length) throw new OpError("permute", `perm ${JSON.stringify(perm)} repeats a dimension`, [x]);
  return runOp1(permuteDef, [x], { perm: p }) as Tensor<D>;
}

/** Swaps two dimensions (a view); defaults to the last two. */
export function transpose<D extends DType>(x: Tensor<D>, dim0 = -2, dim1 = -1): Tensor<D> {
  x.assertAlive("transpose");
  if (x.rank < 2) throw new OpError("transpose", "needs a tensor of rank 2 or more", [x]);
  const a = normalizeAxis(dim0, x.rank, "transpose");
  const b = normalizeAxis(dim1, x.rank, "transpose");
  const perm = Array.from({ length: x.rank }, (_, i) => i);
  perm[a] = b;
  perm[b] = a;
  return runOp1(permuteDef, [x], { perm }) as Tensor<D>;
}

/**
 * A view of `x[starts[0]:ends[0], starts[1]:ends[1], ...]`. Missing entries take the whole axis;
 * negative values count from the end; `ends` entries may be undefined (to the end).
 */
export function slice<D extends DType>(x: Tensor<D>, starts: readonly number[], ends?: readonly (number | undefined)[]): Tensor<D> {
  x.assertAlive("slice");
  if (starts.length > x.rank || (ends && ends.length > x.rank)) throw new OpError("slice", `got ${Math.max(starts.length, ends?.length ?? 0)} ranges for a tensor of rank ${x.rank}`, [x]);
  const s: number[] = [];
  const e: number[] = [];
  for (let i = 0; i < x.rank; i++) {
    const d = x.shape[i]!;
    let a = starts[i] ?? 0;
    let b = ends?.[i] ?? d;
    if (!Number.isInteger(a) || !Number.isInteger(b)) throw new OpError("slice", `range ${a}:${b} of axis ${i} must be integers`, [x]);
    if (a < 0) a += d;
    if (b < 0) b += d;
    if (a < 0 || b > d || a > b) throw new OpError("slice", `range ${starts[i]}:${ends?.[i] ?? ""} is out of bounds for axis ${i} of size ${d}`, [x]);
    s.push(a);
    e.push(b);
  }
  return runOp1(sliceDef, [x], { starts: s, ends: e }) as Tensor<D>;
}

/** Joins tensors along `axis` (a copy). All other dimensions must match. */
export function concat(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw new OpError("concat", "needs at least one tensor");
  checkInputs("concat", tensors);
  const first = tensors[0]!;
  const ax = normalizeAxis(axis, first.rank, "concat");
  for (const t of tensors) {
    if (t.dtype !== first.dtype) throw new OpError("concat", "all tensors must have one dtype", tensors);
    if (t.rank !== first.rank || t.shape.some((d, i) => i !== ax && d !== first.shape[i])) {
      throw new OpError("concat", `shapes must match except along axis ${ax}`, tensors);
    }
  }
  return runOp1(concatDef, tensors, { axis: ax });
}

/** Copies `x` broadcast to `shape` (NumPy rules). */
export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  x.assertAlive("broadcastTo");
  const b = broadcastShapes(x.shape, shape);
  if (!b || !shapesEqual(b, shape)) throw new OpError("broadcastTo", `cannot broadcast to ${formatShape(shape)}`, [x]);
  return runOp1(broadcastDef, [x], { shape: [...shape] });
}

/** A contiguous tensor with the same elements: `x` itself if it already is contiguous, else a copy. */
export function contiguous<D extends DType>(x: Tensor<D>): Tensor<D> {
  x.assertAlive("contiguous");
  if (x.isContiguous) return x;
  return runOp1(contiguousDef, [x], {}) as Tensor<D>;
}

/** A contiguous copy of `x` with its own storage. */
export function clone<D extends DType>(x: Tensor<D>): Tensor<D> {
  x.assertAlive("clone");
  return runOp1(cloneDef, [x], {}) as Tensor<D>;
}

/** Inserts a dimension of size 1 at `axis` (a view). */
export function unsqueeze<D extends DType>(x: Tensor<D>, axis: number): Tensor<D> {
  const a = normalizeAxis(axis, x.rank + 1, "unsqueeze");
  const shape = [...x.shape];
  shape.splice(a, 0, 1);
  return reshape(x, shape);
}

/** Removes dimensions of size 1 (all, or the listed ones). */
export function squeeze<D extends DType>(x: Tensor<D>, axes?: readonly number[]): Tensor<D> {
  const drop = new Set((axes ?? x.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0)).map((a) => normalizeAxis(a, x.rank, "squeeze")));
  for (const a of drop) if (x.shape[a] !== 1) throw new OpError("squeeze", `axis ${a} has size ${x.shape[a]}, not 1`, [x]);
  return reshape(x, x.shape.filter((_, i) => !drop.has(i)));
}
