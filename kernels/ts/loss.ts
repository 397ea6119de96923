import { native } from "./native.js";
import type { FloatArrayLike } from "./elementwise.js";

/**
 * Raw cross-entropy and softmax exports of the addon (see the typed wrappers below for the
 * meaning of the arguments). Float arrays of one call are all `Float32Array` or all
 * `Float64Array`; the math runs in that type.
 */
export interface RawLoss {
  crossEntropyForward(
    logits: FloatArrayLike, rowShape: readonly number[], rowStrides: readonly number[], vocab: number,
    targets: Int32Array, ignoreIndex: number, lse: FloatArrayLike, loss: FloatArrayLike,
  ): number;
  crossEntropyBackward(
    logits: FloatArrayLike, rowShape: readonly number[], rowStrides: readonly number[], vocab: number,
    targets: Int32Array, ignoreIndex: number, lse: FloatArrayLike, g: FloatArrayLike, gStride: number,
    mean: boolean, dlogits: FloatArrayLike,
  ): void;
  softmax(x: FloatArrayLike, outer: number, n: number, inner: number, y: FloatArrayLike): void;
  logSoftmax(x: FloatArrayLike, outer: number, n: number, inner: number, y: FloatArrayLike): void;
  softmaxBackward(y: FloatArrayLike, dy: FloatArrayLike, outer: number, n: number, inner: number, dx: FloatArrayLike): void;
  logSoftmaxBackward(y: FloatArrayLike, dy: FloatArrayLike, outer: number, n: number, inner: number, dx: FloatArrayLike): void;
}

/** Columns the cross-entropy and row softmax kernels process per chunk of a row. */
export const LOSS_CHUNK = 4096;

/**
 * Where the rows of a `[..., vocab]` logits array start: row `r` is the `r`-th multi-index of
 * `shape` in row-major order and starts at element `Σ index[i] * strides[i]` of the array; its
 * `vocab` columns are contiguous. A contiguous `[N, V]` matrix is `{ shape: [N], strides: [V] }`.
 */
export interface RowLayout {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
}

/**
 * Softmax cross-entropy forward over `vocab` classes, one row at a time, without materialising
 * the softmax: each row's max and logsumexp come from one chunked pass over its logits.
 *
 * For row `r` with target `t = targets[r]`: `lse[r] = logsumexp(logits[r, :])` and
 * `loss[r] = lse[r] - logits[r, t]`. Rows whose target equals `ignoreIndex` get
 * `lse[r] = loss[r] = 0` and are not read. Every other target must be in `[0, vocab)`, else a
 * `RangeError` naming `crossEntropy`, the row and the value is thrown before anything is computed.
 *
 * @param logits - the logits, addressed through `rows` (columns contiguous)
 * @param rows - the rows' layout; `N` = the product of `rows.shape`
 * @param vocab - columns per row (`V`)
 * @param targets - `N` class indices
 * @param ignoreIndex - the target value of rows to skip (PyTorch's default is -100)
 * @param lse - out: `N` logsumexp values
 * @param loss - out: `N` per-row losses
 * @returns the number of rows whose target is not `ignoreIndex`
 */
export function crossEntropyForward(
  logits: FloatArrayLike, rows: RowLayout, vocab: number, targets: Int32Array, ignoreIndex: number,
  lse: FloatArrayLike, loss: FloatArrayLike,
): number {
  return native().crossEntropyForward(logits, rows.shape, rows.strides, vocab, targets, ignoreIndex, lse, loss);
}

/**
 * Softmax cross-entropy backward: writes the contiguous `[N, vocab]` gradient
 * `dlogits[r, :] = (exp(logits[r, :] - lse[r]) - onehot(targets[r])) * g_r` in one pass per
 * row, with `g_r = g[r * gStride]` (`gStride = 0` broadcasts one upstream gradient), divided by
 * the number of non-ignored rows when `mean` (and 0 when there is none). Ignored rows get zeros.
 * `lse` is what {@link crossEntropyForward} returned for the same logits and targets.
 */
export function crossEntropyBackward(
  logits: FloatArrayLike, rows: RowLayout, vocab: number, targets: Int32Array, ignoreIndex: number,
  lse: FloatArrayLike, g: FloatArrayLike, gStride: number, mean: boolean, dlogits: FloatArrayLike,
): void {
  native().crossEntropyBackward(logits, rows.shape, rows.strides, vocab, targets, ignoreIndex, lse, g, gStride, mean, dlogits);
}

/**
 * `y = softmax(x)` (or `logSoftmax` when `log`) along the middle axis of the contiguous
 * `[outer, n, inner]` array `x`; `y` has the same layout. Stable: the max along the axis is
 * subtracted first. `inner = 1` is the common last-axis case (chunked rows); `inner > 1` reduces
 * across rows in blocks of contiguous columns.
 */
export function softmaxForward(x: FloatArrayLike, outer: number, n: number, inner: number, y: FloatArrayLike, log = false): void {
  if (log) native().logSoftmax(x, outer, n, inner, y);
  else native().softmax(x, outer, n, inner, y);
}

/**
 * Backward of {@link softmaxForward} from its output `y`, along the middle axis of contiguous
 * `[outer, n, inner]` arrays: softmax `dx = y * (dy - Σ dy * y)`; logSoftmax
 * `dx = dy - exp(y) * Σ dy`.
 */
export function softmaxBackward(
  y: FloatArrayLike, dy: FloatArrayLike, outer: number, n: number, inner: number, dx: FloatArrayLike, log = false,
): void {
  if (log) native().logSoftmaxBackward(y, dy, outer, n, inner, dx);
  else native().softmaxBackward(y, dy, outer, n, inner, dx);
}
