import { native } from "./native.js";
import type { FloatArrayLike } from "./elementwise.js";

/**
 * Raw exports of the fused LLaMA-block kernels (src/bind_nn.cc). All float arrays of one call
 * share Float32Array or Float64Array; arrays are contiguous row-major unless a stride argument
 * says otherwise. Bad arguments throw a `TypeError`/`RangeError` that names the op.
 */
export interface RawNn {
  rmsnormForward(x: FloatArrayLike, weight: FloatArrayLike, eps: number, y: FloatArrayLike, rstd: FloatArrayLike): void;
  rmsnormBackward(x: FloatArrayLike, weight: FloatArrayLike, rstd: FloatArrayLike, dy: FloatArrayLike, dx: FloatArrayLike, dweight: FloatArrayLike | null): void;
  rope(x: FloatArrayLike, xStrides: readonly number[], shape: readonly number[], positions: Int32Array, invFreq: Float64Array, inverse: boolean, out: FloatArrayLike): void;
  swigluForward(gate: FloatArrayLike, up: FloatArrayLike, out: FloatArrayLike): void;
  swigluBackward(gate: FloatArrayLike, up: FloatArrayLike, dy: FloatArrayLike, dgate: FloatArrayLike, dup: FloatArrayLike): void;
  dropout(x: FloatArrayLike, p: number, seed: number, offset: number, out: FloatArrayLike): void;
  adamwStep(param: FloatArrayLike, grad: FloatArrayLike, m: FloatArrayLike, v: FloatArrayLike, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void;
}

/**
 * RMSNorm forward over rows of length `weight.length`: `y = x / sqrt(mean(x²) + eps) * weight`
 * (computed as `weight * (x * rstd)`, as Hugging Face does), and `rstd[r] = 1 / sqrt(mean(x[r]²) + eps)`
 * for the backward. The mean of squares is accumulated in double for f32 and f64.
 *
 * @param x - `[rows, D]`
 * @param weight - `[D]`, D ≥ 1
 * @param eps - added to the mean of squares (≥ 0)
 * @param y - output `[rows, D]` (may be `x` itself)
 * @param rstd - output `[rows]`
 */
export function rmsnormForward(x: FloatArrayLike, weight: FloatArrayLike, eps: number, y: FloatArrayLike, rstd: FloatArrayLike): void {
  native().rmsnormForward(x, weight, eps, y, rstd);
}

/**
 * RMSNorm backward from the saved `x` and `rstd`:
 * `dx = rstd · (weight·dy − x · rstd² · mean(weight·dy·x))` per row, and (when `dweight` is given)
 * `dweight[j] = Σ_rows dy[r,j] · x[r,j] · rstd[r]`. `dweight` is summed over the rows in order,
 * block of columns by block of columns, so it is bit-identical for any number of threads.
 *
 * @param dweight - output `[D]`, or `null` to skip it (a frozen weight)
 */
export function rmsnormBackward(
  x: FloatArrayLike, weight: FloatArrayLike, rstd: FloatArrayLike, dy: FloatArrayLike, dx: FloatArrayLike, dweight: FloatArrayLike | null,
): void {
  native().rmsnormBackward(x, weight, rstd, dy, dx, dweight);
}

/** Shape and layout of a rotary-embedding call. */
export interface RopeLayout {
  /** `[B, T, H, D]`; D even. */
  readonly shape: readonly [number, number, number, number];
  /** Element strides of B, T and H in `x` (D must be contiguous). Default: contiguous. */
  readonly strides?: readonly [number, number, number];
}

function ropeStrides(layout: RopeLayout): readonly number[] {
  const [, T, H, D] = layout.shape;
  return layout.strides ?? [T * H * D, H * D, D];
}

/**
 * Rotary position embedding, LLaMA's rotate-half convention. For each (b, t, h) and i < D/2,
 * with `a = positions[t or b*T + t] · invFreq[i]` computed in double and cos/sin rounded once:
 * `out[i] = x[i]·cos a − x[i+D/2]·sin a`, `out[i+D/2] = x[i+D/2]·cos a + x[i]·sin a`.
 *
 * @param x - a view of `[B, T, H, D]` (see {@link RopeLayout}); the start of the view is `x[0]`
 * @param positions - `T` positions shared by the batch, or `B·T`
 * @param invFreq - the `D/2` inverse frequencies (`ropeInvFreq` in `@modulora/tensor`)
 * @param out - contiguous `[B, T, H, D]`
 */
export function ropeForward(x: FloatArrayLike, layout: RopeLayout, positions: Int32Array, invFreq: Float64Array, out: FloatArrayLike): void {
  native().rope(x, ropeStrides(layout), layout.shape, positions, invFreq, false, out);
}

/** Backward of {@link ropeForward}: the rotation by −a, `dx = R(−a)·dy` (a rotation is orthogonal). */
export function ropeBackward(dy: FloatArrayLike, layout: RopeLayout, positions: Int32Array, invFreq: Float64Array, dx: FloatArrayLike): void {
  native().rope(dy, ropeStrides(layout), layout.shape, positions, invFreq, true, dx);
}

/** SwiGLU forward in one pass: `out = silu(gate) · up` (the sigmoid is exact in both tails: no NaN for any finite gate). */
export function swigluForward(gate: FloatArrayLike, up: FloatArrayLike, out: FloatArrayLike): void {
  native().swigluForward(gate, up, out);
}

/**
 * SwiGLU backward in one pass: `dgate = dy · up · σ(g)(1 + g(1 − σ(g)))`, `dup = dy · silu(g)`.
 */
export function swigluBackward(gate: FloatArrayLike, up: FloatArrayLike, dy: FloatArrayLike, dgate: FloatArrayLike, dup: FloatArrayLike): void {
  native().swigluBackward(gate, up, dy, dgate, dup);
}

/**
 * Counter-based dropout: `out[i] = x[i] / (1 − p)` if element i is kept, else 0. Element i keeps
 * iff `u ≥ p` with `u = (w >>> 8) / 2^24`, w being word `i mod 4` of
 * `philox4x32(counter = (c mod 2^32, ⌊c / 2^32⌋, 2, 0), key = seedToKey(seed))`, `c = offset + ⌊i/4⌋`.
 * No mask is stored: the backward is the same call on `dy`. One call uses `ceil(n / 4)` counters,
 * so the next independent call may start at `offset + ceil(n / 4)`.
 *
 * @param p - drop probability in [0, 1)
 * @param seed - a safe integer
 * @param offset - first Philox counter, a non-negative safe integer
 */
export function dropoutForward(x: FloatArrayLike, p: number, seed: number, offset: number, out: FloatArrayLike): void {
  native().dropout(x, p, seed, offset, out);
}

/** Backward of {@link dropoutForward}: the same mask and scale applied to `dy`. */
export function dropoutBackward(dy: FloatArrayLike, p: number, seed: number, offset: number, dx: FloatArrayLike): void {
  native().dropout(dy, p, seed, offset, dx);
}

/** Hyper-parameters of one {@link adamwStep}. */
export interface AdamwStepOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay: `p ← p − lr·weightDecay·p` before the Adam update. */
  weightDecay: number;
  /** The step number t ≥ 1 (bias corrections 1 − β^t). */
  step: number;
}

/**
 * One fused AdamW update, in place, in one pass over the four arrays (equal lengths, one type):
 * `p ← p·(1 − lr·wd)`, `m ← β1·m + (1 − β1)·g`, `v ← β2·v + (1 − β2)·g²`,
 * `p ← p − lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps)`.
 */
export function adamwStep(param: FloatArrayLike, grad: FloatArrayLike, m: FloatArrayLike, v: FloatArrayLike, o: AdamwStepOptions): void {
  native().adamwStep(param, grad, m, v, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.step);
}
