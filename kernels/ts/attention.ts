import type { FloatArray } from "./gemm.js";
import { native } from "./native.js";

/**
 * Raw attention exports of the addon (see {@link attentionForward} and {@link attentionBackward}).
 * `dims` is `[B, T, S, Hq, Hkv, D]`; `mode` is 0 (auto), 1 (fused) or 2 (split).
 */
export interface RawAttention {
  attentionForward(
    dims: readonly number[],
    q: FloatArray,
    k: FloatArray,
    v: FloatArray,
    mask: FloatArray | null,
    maskStrides: readonly number[] | null,
    scale: number,
    causal: boolean,
    out: FloatArray,
    lse: FloatArray,
  ): void;
  attentionBackward(
    dims: readonly number[],
    q: FloatArray,
    k: FloatArray,
    v: FloatArray,
    mask: FloatArray | null,
    maskStrides: readonly number[] | null,
    scale: number,
    causal: boolean,
    out: FloatArray,
    lse: FloatArray,
    dout: FloatArray,
    dq: FloatArray,
    dk: FloatArray,
    dv: FloatArray,
    mode: number,
  ): void;
  attentionBackwardMode(dims: readonly number[]): AttentionBackwardMode;
  attentionBlockSizes(): AttentionBlockSizes;
}

/** Sizes of one attention problem. */
export interface AttentionDims {
  /** Batch size `B`. */
  batch: number;
  /** Query positions `T`. */
  queryLen: number;
  /** Key/value positions `S` (`S >= T` when causal: the queries are the newest `T` positions). */
  keyLen: number;
  /** Query heads `Hq` (a multiple of `kvHeads`; query head `h` reads kv head `floor(h / (Hq / Hkv))`). */
  queryHeads: number;
  /** Key/value heads `Hkv`. */
  kvHeads: number;
  /** Head dimension `D`. */
  headDim: number;
}

/** An additive mask read as `[B, Hq, T, S]` through element strides (0 along broadcast dims). */
export interface AttentionMaskView {
  /** The mask's elements, starting at its first element; same array type as `q`. */
  data: FloatArray;
  /** Strides over `[B, Hq, T, S]`, each `>= 0`. */
  strides: readonly [number, number, number, number];
}

/** Options of the attention kernels. */
export interface AttentionKernelOptions {
  /** Multiplies `q · kᵀ` before the mask is added (usually `1 / sqrt(D)`). */
  scale: number;
  /** Query `t` sees key `j` only when `j <= S - T + t`. */
  causal: boolean;
  /** Added to the scaled scores before the softmax; `-Infinity` hides a key. */
  mask?: AttentionMaskView | null;
}

/** How the backward splits its work over threads (see {@link attentionBackward}). */
export type AttentionBackwardMode = "fused" | "split";

const MODES: Record<"auto" | AttentionBackwardMode, number> = { auto: 0, fused: 1, split: 2 };

function dimsList(d: AttentionDims): number[] {
  return [d.batch, d.queryLen, d.keyLen, d.queryHeads, d.kvHeads, d.headDim];
}

/**
 * Fused attention forward (FlashAttention-style: key blocks streamed with an online softmax; no
 * `[T, S]` score matrix is built). Writes
 * `out[b,t,h,:] = softmax_j(scale · q[b,t,h,:]·k[b,j,g,:] + mask[b,h,t,j]) · v[b,:,g,:]` with
 * `g = floor(h / (Hq / Hkv))`, and `lse[b,h,t]` = the log of the softmax denominator (`+Infinity`
 * for a row whose keys are all masked; its output is 0).
 *
 * - `q`, `out`: contiguous `[B, T, Hq, D]`; `k`, `v`: contiguous `[B, S, Hkv, D]`; `lse`: `[B, Hq, T]`.
 * - All arrays are `Float32Array` (softmax in f32) or all `Float64Array` (softmax in f64).
 *
 * Runs on the native thread pool. Throws a `TypeError`/`RangeError` naming `attentionForward` on
 * bad input (shapes, array types and lengths, `Hq % Hkv`, causal with `S < T`, overlapping outputs).
 */
export function attentionForward(
  dims: AttentionDims,
  q: FloatArray,
  k: FloatArray,
  v: FloatArray,
  out: FloatArray,
  lse: FloatArray,
  options: AttentionKernelOptions,
): void {
  const m = options.mask ?? null;
  native().attentionForward(dimsList(dims), q, k, v, m ? m.data : null, m ? m.strides : null, options.scale, options.causal, out, lse);
}

/**
 * Fused attention backward: recomputes the scores block by block from `q`, `k` and the forward's
 * `lse`, and overwrites `dq` (`[B, T, Hq, D]`), `dk` and `dv` (`[B, S, Hkv, D]`) with the gradients
 * of the loss given `dout = dL/dout`. The gradient of a kv head sums over its query heads.
 *
 * `mode`: `"fused"` runs one task per (batch, kv head) (fewest FLOPs), `"split"` one pass per key
 * block for `dk`/`dv` and one per query block for `dq` (more parallelism), `"auto"` (default)
 * picks by the thread count ({@link attentionBackwardMode}). All modes give the same result.
 */
export function attentionBackward(
  dims: AttentionDims,
  q: FloatArray,
  k: FloatArray,
  v: FloatArray,
  out: FloatArray,
  lse: FloatArray,
  dout: FloatArray,
  dq: FloatArray,
  dk: FloatArray,
  dv: FloatArray,
  options: AttentionKernelOptions & { mode?: "auto" | AttentionBackwardMode },
): void {
  const m = options.mask ?? null;
  const mode = MODES[options.mode ?? "auto"];
  if (mode === undefined) throw new TypeError(`attentionBackward: unknown mode '${String(options.mode)}'; valid: auto, fused, split`);
  native().attentionBackward(dimsList(dims), q, k, v, m ? m.data : null, m ? m.strides : null, options.scale, options.causal, out, lse, dout, dq, dk, dv, mode);
}

/** The backward mode `"auto"` picks for these sizes with the current thread count. */
export function attentionBackwardMode(dims: AttentionDims): AttentionBackwardMode {
  return native().attentionBackwardMode(dimsList(dims));
}

/** Block sizes of the attention kernels. */
export interface AttentionBlockSizes {
  /** Query rows per block (forward and backward). */
  query: number;
  /** Keys per block in the forward. */
  keyForward: number;
  /** Keys per block in the backward. */
  keyBackward: number;
}

/** Block sizes of the attention kernels (scratch per thread grows with them). */
export function attentionBlockSizes(): AttentionBlockSizes {
  return native().attentionBlockSizes();
}
