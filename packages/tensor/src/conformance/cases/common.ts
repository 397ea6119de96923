// Shared pieces of the case tables.
import type { DType } from "../../index.js";
import type { CaseInput, ConformanceCase } from "../types.js";

/**
 * The dtypes every float case runs at. The bf16 compute policy (issue 14, item 5) adds `"bf16"`
 * here once the ops accept bf16 inputs (f32 accumulation); its bound is already in
 * `UNIT_ROUNDOFF`. Until then bf16 and f16 are storage types, checked by the cast and copy cases.
 */
export const COMPUTE_DTYPES: readonly DType[] = ["f32", "f64"];

/** Float input of `shape` at the case's dtype. */
export function input(shape: readonly number[], dtype: DType, data: Float64Array, grad = false): CaseInput {
  return { shape, dtype, data, grad };
}

/** i32 input (indices, targets, positions). */
export function ints(shape: readonly number[], data: ArrayLike<number>): CaseInput {
  return { shape, dtype: "i32", data: Float64Array.from(data) };
}

/** `[3,33]`-style label of a shape. */
export function fmt(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

/** One case per compute dtype. */
export function perDType(make: (dtype: DType) => ConformanceCase | ConformanceCase[]): ConformanceCase[] {
  return COMPUTE_DTYPES.flatMap((d) => make(d));
}

/** Element count of a shape. */
export function count(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
