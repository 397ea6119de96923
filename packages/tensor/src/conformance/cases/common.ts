// Shared pieces of the case tables.
import type { DType } from "../../index.js";
import type { CaseInput, ConformanceCase } from "../types.js";

/**
 * The dtypes every float case runs at. bf16 is the compute policy of issue 14, item 5: bf16 inputs
 * are computed in f32 (f32 accumulation) and the outputs rounded to bf16, so its bound is
 * `UNIT_ROUNDOFF.bf16` = 2^-8 (the reference is f64 on the bf16-rounded inputs, and the output
 * rounding adds at most half a bf16 ulp). f16 is a storage type, checked by the cast cases. Cases
 * that do not run at bf16 say why where they are excluded ({@link NOT_AT_BF16}).
 */
export const COMPUTE_DTYPES: readonly DType[] = ["f32", "f64", "bf16"];

/**
 * Case families deliberately not run at bf16, with the reason (the table's documented
 * exclusions; each family filters itself with {@link atDType}).
 */
export const NOT_AT_BF16: Readonly<Record<string, string>> = {
  adamwStep: "the bf16 policy keeps trainable parameters and optimizer state in f32 (master weights); adamwStep refuses bf16 and a test checks that",
  quantDequantize: "Ŵ is always decoded to f32 (the op has no input dtype); its cases run at f32",
};

/** Whether the case family `op` runs at `dtype` (false for the exclusions of {@link NOT_AT_BF16}). */
export function atDType(op: string, dtype: DType): boolean {
  return !(dtype === "bf16" && op in NOT_AT_BF16);
}

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
