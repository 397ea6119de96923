import { native } from "./native.js";

/** A float array the element-wise kernels compute on (all arrays of one call share the type). */
export type FloatArrayLike = Float32Array | Float64Array;

/** Any typed array that tensor storage is viewed as (bf16/f16 as raw bits in a `Uint16Array`). */
export type AnyTypedArray = Float32Array | Float64Array | Uint16Array | Int32Array | Int8Array | Uint8Array | Uint32Array;

/**
 * Raw element-wise, reduction, copy, cast and gather exports of the addon. Op arguments are the
 * numeric codes of {@link BINARY_OPS}, {@link UNARY_OPS} and {@link REDUCE_OPS}; dtype arguments
 * are the native dtype codes (0 f32, 1 f64, 2 bf16, 3 f16, 4 i32, 5 i8, 6 u8, 7 u32).
 */
export interface RawElementwise {
  binary(op: number, shape: readonly number[], a: FloatArrayLike, aStrides: readonly number[], b: FloatArrayLike, bStrides: readonly number[], out: FloatArrayLike): void;
  unary(op: number, x: FloatArrayLike, out: FloatArrayLike, param?: number): void;
  affine(x: FloatArrayLike, alpha: number, beta: number, out: FloatArrayLike): void;
  unaryGrad(op: number, x: FloatArrayLike, y: FloatArrayLike, dy: FloatArrayLike, dx: FloatArrayLike, param?: number): void;
  reduce(op: number, shape: readonly number[], x: FloatArrayLike, xStrides: readonly number[], axes: readonly number[], out: FloatArrayLike): void;
  copyStrided(shape: readonly number[], src: AnyTypedArray, srcStrides: readonly number[], dst: AnyTypedArray, dstStrides: readonly number[]): void;
  cast(src: AnyTypedArray, srcDtype: number, dst: AnyTypedArray, dstDtype: number, n: number): void;
  gather(src: AnyTypedArray, outer: number, n: number, inner: number, idx: Int32Array, out: AnyTypedArray): void;
  scatterAdd(src: FloatArrayLike, outer: number, m: number, inner: number, idx: Int32Array, out: FloatArrayLike, n: number): void;
  fill(dst: AnyTypedArray, value: number): void;
  countNonFinite(x: FloatArrayLike): number;
}

/** Binary ops: `add sub mul div maximum minimum` (NaN-propagating), comparisons `eq gt lt` (1 or 0), `pow`. */
export type BinaryOp = "add" | "sub" | "mul" | "div" | "maximum" | "minimum" | "eq" | "gt" | "lt" | "pow";

/** Unary ops; `powScalar` raises to the scalar `param`. */
export type UnaryOp =
  | "neg" | "exp" | "log" | "sqrt" | "rsqrt" | "abs" | "relu" | "sigmoid" | "tanh" | "silu"
  | "square" | "reciprocal" | "sign" | "powScalar";

/** Reduction ops (a mean is a sum followed by {@link affineOp}). */
export type ReduceOp = "sum" | "max" | "min";

/** Binary op names, in native code order (the index is the code). */
export const BINARY_OPS: readonly BinaryOp[] = Object.freeze([
  "add", "sub", "mul", "div", "maximum", "minimum", "eq", "gt", "lt", "pow",
] as const);

/** Unary op names, in native code order (the index is the code). */
export const UNARY_OPS: readonly UnaryOp[] = Object.freeze([
  "neg", "exp", "log", "sqrt", "rsqrt", "abs", "relu", "sigmoid", "tanh", "silu",
  "square", "reciprocal", "sign", "powScalar",
] as const);

/** Reduce op names, in native code order (the index is the code). */
export const REDUCE_OPS: readonly ReduceOp[] = Object.freeze(["sum", "max", "min"] as const);

function opCode<T extends string>(kind: string, table: readonly T[], op: T): number {
  const code = table.indexOf(op);
  if (code < 0) throw new TypeError(`unknown ${kind} op '${String(op)}'; valid ops: ${table.join(", ")}`);
  return code;
}

/**
 * `out = a op b` element-wise over `shape`, broadcasting through strides (a stride of 0 repeats
 * an element). `a` and `b` are strided views (pass a `subarray` for an offset); `out` is
 * contiguous row-major with `shape` and may be `a` or `b` itself when that input is contiguous
 * with the same shape (in-place update).
 */
export function binaryOp(
  op: BinaryOp, shape: readonly number[], a: FloatArrayLike, aStrides: readonly number[],
  b: FloatArrayLike, bStrides: readonly number[], out: FloatArrayLike,
): void {
  native().binary(opCode("binary", BINARY_OPS, op), shape, a, aStrides, b, bStrides, out);
}

/** `out = f(x)` element-wise over contiguous arrays of equal length; `param` is the exponent of `powScalar`. */
export function unaryOp(op: UnaryOp, x: FloatArrayLike, out: FloatArrayLike, param = 0): void {
  native().unary(opCode("unary", UNARY_OPS, op), x, out, param);
}

/** `out = alpha * x + beta` over contiguous arrays of equal length (computed in the array's type). */
export function affineOp(x: FloatArrayLike, alpha: number, beta: number, out: FloatArrayLike): void {
  native().affine(x, alpha, beta, out);
}

/**
 * Backward of {@link unaryOp}: `dx = dy * f'(x)`, given `y = f(x)` from the forward pass (and
 * the same `param` for `powScalar`). All arrays contiguous and of equal length.
 */
export function unaryGradOp(
  op: UnaryOp, x: FloatArrayLike, y: FloatArrayLike, dy: FloatArrayLike, dx: FloatArrayLike, param = 0,
): void {
  native().unaryGrad(opCode("unary", UNARY_OPS, op), x, y, dy, dx, param);
}

/**
 * Reduces the strided view `x` of `shape` over `axes` (any subset, any order; an empty list
 * copies). `out` is contiguous over the kept axes in their original order. f32 input is
 * accumulated in double. An empty sum is 0; max/min over zero elements throws a `RangeError`.
 */
export function reduceOp(
  op: ReduceOp, shape: readonly number[], x: FloatArrayLike, xStrides: readonly number[],
  axes: readonly number[], out: FloatArrayLike,
): void {
  native().reduce(opCode("reduce", REDUCE_OPS, op), shape, x, xStrides, axes, out);
}

/**
 * Copies the strided view of `src` into the strided view of `dst` (same shape, same array type;
 * any element type). Materialises transposes, slices and broadcasts, and writes concat parts.
 * The two views must not overlap; a zero destination stride on an axis longer than 1 is refused.
 */
export function copyStrided(
  shape: readonly number[], src: AnyTypedArray, srcStrides: readonly number[],
  dst: AnyTypedArray, dstStrides: readonly number[],
): void {
  native().copyStrided(shape, src, srcStrides, dst, dstStrides);
}

/**
 * Converts the first `n` elements of `src` (dtype code `srcDtype`) into `dst` (dtype code
 * `dstDtype`). Conversions to bf16/f16 round to nearest even and keep NaN and infinities; to an
 * integer type they truncate toward zero, and a NaN, infinite or out-of-range element throws a
 * `RangeError` naming its index before anything is written.
 */
export function castArray(src: AnyTypedArray, srcDtype: number, dst: AnyTypedArray, dstDtype: number, n: number): void {
  native().cast(src, srcDtype, dst, dstDtype, n);
}

/**
 * Row gather: `out[o, j, :] = src[o, idx[j], :]` for `src` of shape `[outer, n, inner]` and
 * `out` of shape `[outer, idx.length, inner]`. Any typed array type (both the same). An index
 * outside `[0, n)` throws a `RangeError` naming its position and value.
 */
export function gatherRows(
  src: AnyTypedArray, outer: number, n: number, inner: number, idx: Int32Array, out: AnyTypedArray,
): void {
  native().gather(src, outer, n, inner, idx, out);
}

/**
 * Backward of {@link gatherRows}: `out[o, idx[j], :] += src[o, j, :]` for `src` of shape
 * `[outer, m, inner]` and `out` of shape `[outer, n, inner]`; duplicate indices accumulate.
 * `idx.length` must equal `m`. Float arrays only.
 */
export function scatterAddRows(
  src: FloatArrayLike, outer: number, m: number, inner: number, idx: Int32Array, out: FloatArrayLike, n: number,
): void {
  native().scatterAdd(src, outer, m, inner, idx, out, n);
}

/**
 * Sets every element of `dst` to `value`. For integer arrays `value` must be an integer in the
 * type's range; for bf16/f16 storage pass the raw bit pattern (0..65535).
 */
export function fillArray(dst: AnyTypedArray, value: number): void {
  native().fill(dst, value);
}

/** Number of NaN and ±Infinity elements of `x` (used to skip bad optimizer steps). */
export function countNonFinite(x: FloatArrayLike): number {
  return native().countNonFinite(x);
}
