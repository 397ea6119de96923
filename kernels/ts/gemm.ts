import { native } from "./native.js";

/** Raw GEMM exports of the addon (see {@link gemm} for the meaning of the arguments). */
export interface RawGemm {
  gemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: FloatArray,
    lda: number,
    strideA: number,
    b: FloatArray,
    ldb: number,
    strideB: number,
    beta: number,
    c: FloatArray,
    ldc: number,
    strideC: number,
    batch: number,
  ): void;
  gemmInfo(): GemmInfo;
}

/** Element arrays GEMM accepts: all operands of one call share the type (f32 or f64). */
export type FloatArray = Float32Array | Float64Array;

/** The single-precision GEMM kernel in use: its ISA path, register tile and cache blocking. */
export interface GemmInfo {
  /** Instruction-set path: `"generic"`, `"avx2"` or `"avx512"`. */
  isa: string;
  /** Rows of the register tile of C (micro-kernel height). */
  mr: number;
  /** Columns of the register tile of C (micro-kernel width). */
  nr: number;
  /** Depth of a packed block (elements of k per pass). */
  kc: number;
  /** Rows of A packed per block. */
  mc: number;
  /** Columns of B packed per block. */
  nc: number;
}

/**
 * Batched general matrix multiply on row-major matrices:
 * `C[i] = alpha * op(A[i]) * op(B[i]) + beta * C[i]` for `i < batch`, where `op(A)` is `m x k`
 * and `op(B)` is `k x n`.
 *
 * - `transA = false`: `A(r, p) = a[r * lda + p]`; `transA = true`: `A(r, p) = a[p * lda + r]`
 *   (so `lda >= k`, resp. `lda >= m`). Likewise for `B` with `ldb >= n`, resp. `ldb >= k`.
 * - `C(r, j) = c[r * ldc + j]` with `ldc >= n`. `beta = 0` overwrites `C` (NaNs there are ignored);
 *   `k = 0` scales `C` by `beta`.
 * - Matrix `i` of each operand starts at element `i * stride`. A stride of 0 for `a` or `b`
 *   broadcasts that matrix; the `C` matrices must not overlap.
 *
 * `a`, `b` and `c` must all be `Float32Array` (SGEMM) or all `Float64Array` (DGEMM). Runs on
 * the native thread pool; the result does not depend on the number of threads. Throws a
 * `TypeError`/`RangeError` naming `gemm` and the offending argument on bad input.
 */
export function gemm(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: FloatArray,
  lda: number,
  strideA: number,
  b: FloatArray,
  ldb: number,
  strideB: number,
  beta: number,
  c: FloatArray,
  ldc: number,
  strideC: number,
  batch = 1,
): void {
  native().gemm(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch);
}

/** Describes the SGEMM kernel the CPU dispatch uses now (it follows {@link setIsa}). */
export function gemmInfo(): GemmInfo {
  return native().gemmInfo();
}
