// The loss over the vocabulary and its neighbours: softmax cross-entropy (fused, chunked), its
// plain reference composed of core ops, softmax / logSoftmax (fused) and embedding (a named
// gather). Backward beside each forward; the backward kernels are ops of their own (not
// differentiable). CPU kernels: src/cpu/loss.ts (native: kernels/src/cpu/loss.cc).
import { tidy } from "../engine.js";
import { OpError } from "../errors.js";
import { checkFloat, checkInputs, runOp, runOp1, type OpDef } from "../op.js";
import { formatShape, normalizeAxis, shapeSize, shapesEqual } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { add, mul, sub } from "./binary.js";
import { tensor } from "./creation.js";
import { gather, gatherDef, type GatherAttrs } from "./gather.js";
import { max, sum } from "./reduce.js";
import { reshape } from "./shape.js";
import { exp, log, scale } from "./unary.js";

// --- cross-entropy ------------------------------------------------------------------------------

/** How {@link crossEntropy} combines the per-row losses. */
export type CrossEntropyReduction = "mean" | "sum" | "none";

/** Options of {@link crossEntropy} and {@link crossEntropyReference}. */
export interface CrossEntropyOptions {
  /** Rows whose target equals this contribute nothing (default -100, as in PyTorch and Hugging Face). */
  readonly ignoreIndex?: number;
  /** `"mean"` over the non-ignored rows (default), `"sum"`, or `"none"` (one loss per row). */
  readonly reduction?: CrossEntropyReduction;
}

/** Attributes of `crossEntropy` and its backward kernel. */
export interface CrossEntropyAttrs {
  readonly ignoreIndex: number;
  readonly reduction: CrossEntropyReduction;
}

/**
 * Forward kernel: `[logits [..., V], targets]` → `[loss, lse [N]]`. Saves the logits themselves
 * (a handle on the input, no copy), the targets and lse; nothing of size N×V.
 */
export const crossEntropyDef: OpDef<CrossEntropyAttrs> = {
  name: "crossEntropy",
  save: ([logits, targets], [, lse]) => [logits!, targets!, lse!],
  backward: ([dy], ctx) => {
    if (!dy) return [null, null];
    const [logits, targets, lse] = ctx.saved;
    return [runOp1(crossEntropyGradDef, [dy, logits!, targets!, lse!], ctx.attrs), null];
  },
};

/**
 * `[dy, logits, targets, lse]` → `[dlogits]` (contiguous, the logits' shape):
 * `(softmax(logits) − onehot(target)) · g` per row, zero rows for ignored targets (not differentiable).
 */
export const crossEntropyGradDef: OpDef<CrossEntropyAttrs> = { name: "crossEntropyGrad" };

const REDUCTIONS: readonly CrossEntropyReduction[] = ["mean", "sum", "none"];

/** Checks the arguments shared by the fused op and the reference; returns the attributes. */
function crossEntropyAttrs(logits: Tensor, targets: Tensor, options: CrossEntropyOptions): CrossEntropyAttrs {
  const op = "crossEntropy";
  const inputs = [logits, targets];
  checkInputs(op, inputs);
  checkFloat(op, [logits]);
  if (targets.dtype !== "i32") throw new OpError(op, `targets must be i32, got ${targets.dtype}`, inputs);
  if (logits.rank < 1) throw new OpError(op, "logits must have a class axis ([..., V]), got a scalar", inputs);
  const v = logits.shape[logits.rank - 1]!;
  if (v === 0) throw new OpError(op, "the class axis of the logits is empty (V = 0)", inputs);
  const lead = logits.shape.slice(0, -1);
  const n = shapeSize(lead);
  if (!shapesEqual(targets.shape, lead) && !(targets.rank === 1 && targets.size === n)) {
    throw new OpError(op, `targets ${formatShape(targets.shape)} must have the logits' shape without the class axis, ${formatShape(lead)}, or be [${n}]`, inputs);
  }
  const ignoreIndex = options.ignoreIndex ?? -100;
  if (!Number.isInteger(ignoreIndex) || ignoreIndex < -(2 ** 31) || ignoreIndex >= 2 ** 31) {
    throw new OpError(op, `ignoreIndex must be a 32-bit integer, got ${ignoreIndex}`, inputs);
  }
  const reduction = options.reduction ?? "mean";
  if (!REDUCTIONS.includes(reduction)) throw new OpError(op, `reduction must be one of ${REDUCTIONS.join(", ")}, got '${String(reduction)}'`, inputs);
  return { ignoreIndex, reduction };
}

/**
 * Softmax cross-entropy of `logits` against class indices, as one fused op:
 * `loss_i = logsumexp(logits_i) − logits_i[targets_i]`.
 *
 * - `logits` `[..., V]` f32, f64 or bf16 (all leading axes are rows); `targets` i32 with the
 *   logits' shape without the class axis, or flat `[N]`.
 * - The loss has the logits' dtype, except for bf16 logits: they are read as f32, the loss (and
 *   the per-row losses of `"none"`) is **f32**, and the gradient of the logits is bf16 (the bf16
 *   policy: loss and softmax statistics in f32).
 * - Rows whose target equals `ignoreIndex` (default -100) contribute nothing and are not read.
 *   `"mean"` (default) divides by the number of the other rows; when every row is ignored the
 *   loss is **0 and so are the gradients** (PyTorch returns NaN here; a fully masked micro-batch
 *   must not poison training). `"sum"` adds the rows; `"none"` returns one loss per row, shaped
 *   like `targets`, 0 for ignored rows.
 * - Any other target outside `[0, V)` is an {@link OpError} naming `crossEntropy`, the row and
 *   the value.
 *
 * Memory: the forward never materialises the softmax. Each row's max and logsumexp come from one
 * chunked pass over its logits (statistics in f32 for f32 and bf16 logits, f64 for f64), so the forward
 * allocates O(N) beyond the logits, and backward saves only the logits (no copy), the targets and
 * `lse` [N]. The backward writes `(exp(logits − lse) − onehot(target)) · g_i` straight into the one
 * `[..., V]` gradient. Logits whose class axis is not contiguous are copied first.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const attrs = crossEntropyAttrs(logits, targets, options);
  const [loss, lse] = runOp(crossEntropyDef, [logits, targets], attrs);
  lse!.dispose(); // the tape keeps its own handle
  return loss!;
}

/**
 * The same loss as {@link crossEntropy}, composed of core ops (`max`, `sub`, `exp`, `sum`, `log`,
 * `gather`): a plain reference for tests and for backends without a fused kernel. It materialises
 * several `[N, V]` tensors, and reads the targets on the host. Its result has the logits' dtype
 * (bf16 too: each of its ops rounds to bf16, unlike the fused op's f32 loss). Ignored rows are masked by a
 * multiplication, so non-finite logits in an ignored row still reach the result (the fused op never
 * reads them).
 */
export function crossEntropyReference(logits: Tensor, targets: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const { ignoreIndex, reduction } = crossEntropyAttrs(logits, targets, options);
  const v = logits.shape[logits.rank - 1]!;
  const n = targets.size;
  const t = targets.dataSync() as Int32Array;
  const flat = new Int32Array(n);
  const mask = new Float64Array(n);
  let count = 0;
  for (let r = 0; r < n; r++) {
    const y = t[r]!;
    if (y === ignoreIndex) continue;
    if (y < 0 || y >= v) throw new OpError("crossEntropy", `target ${y} at row ${r} is outside [0, ${v}) and is not ignoreIndex (${ignoreIndex})`, [logits, targets]);
    flat[r] = r * v + y;
    mask[r] = 1;
    count++;
  }
  return tidy(() => {
    const x = reshape(logits, [n, v]);
    const m = max(x.detach(), 1, true); // [N, 1]; any constant per row gives the same value and gradient
    const lse = add(log(sum(exp(sub(x, m)), 1)), reshape(m, [n])); // [N]
    const picked = gather(reshape(x, [n * v]), tensor(flat), 0); // [N]
    const rows = mul(sub(lse, picked), tensor(mask, [n], { dtype: logits.dtype }));
    if (reduction === "none") return reshape(rows, targets.shape);
    const total = sum(rows);
    return reduction === "sum" ? total : scale(total, count ? 1 / count : 0);
  });
}

// --- softmax / logSoftmax ---------------------------------------------------------------------

/** Attributes of `softmax` and `logSoftmax` and their backward kernels. */
export interface SoftmaxAttrs {
  /** Normalised axis. */
  readonly axis: number;
}

/** `softmax` saves its output only: dx = y ∘ (dy − Σ dy∘y). */
export const softmaxDef: OpDef<SoftmaxAttrs> = {
  name: "softmax",
  save: (_, [y]) => [y!],
  backward: ([dy], ctx) => [dy ? runOp1(softmaxGradDef, [ctx.saved[0]!, dy], ctx.attrs) : null],
};

/** `[y, dy]` → `[dx]` (not differentiable). */
export const softmaxGradDef: OpDef<SoftmaxAttrs> = { name: "softmaxGrad" };

/** `logSoftmax` saves its output only: dx = dy − exp(y) · Σ dy. */
export const logSoftmaxDef: OpDef<SoftmaxAttrs> = {
  name: "logSoftmax",
  save: (_, [y]) => [y!],
  backward: ([dy], ctx) => [dy ? runOp1(logSoftmaxGradDef, [ctx.saved[0]!, dy], ctx.attrs) : null],
};

/** `[y, dy]` → `[dx]` (not differentiable). */
export const logSoftmaxGradDef: OpDef<SoftmaxAttrs> = { name: "logSoftmaxGrad" };

function softmaxLike(def: OpDef<SoftmaxAttrs>, x: Tensor, axis: number): Tensor {
  checkInputs(def.name, [x]);
  checkFloat(def.name, [x]);
  if (x.rank === 0) throw new OpError(def.name, "needs at least one axis, got a scalar", [x]);
  return runOp1(def, [x], { axis: normalizeAxis(axis, x.rank, def.name) });
}

/**
 * `exp(x − max) / Σ exp(x − max)` along `axis` (default the last), as one fused, stable op.
 * Differentiable; the backward uses the saved output only. bf16 input is computed in f32 and the
 * result rounded to bf16 (cast the input to f32 first for f32 probabilities).
 */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxLike(softmaxDef, x, axis);
}

/**
 * `x − logsumexp(x)` along `axis` (default the last), as one fused, stable op (no `log(0)` for
 * tiny probabilities). Differentiable; the backward uses the saved output only.
 */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxLike(logSoftmaxDef, x, axis);
}

// --- embedding -------------------------------------------------------------------------------

/** `embedding` is `gather` on axis 0 under its own name; its backward is gather's scatter-add. */
export const embeddingDef: OpDef<GatherAttrs> = {
  name: "embedding",
  save: gatherDef.save,
  backward: gatherDef.backward,
};

/**
 * Embedding lookup: rows of `weight` `[V, D]` picked by `ids` (i32, any shape) → `[...ids, D]`.
 * Repeated ids accumulate their gradients (scatter-add). An id outside `[0, V)` is an
 * {@link OpError} naming `embedding`, the position and the value.
 */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  const op = "embedding";
  checkInputs(op, [weight, ids]);
  if (ids.dtype !== "i32") throw new OpError(op, `ids must be i32, got ${ids.dtype}`, [weight, ids]);
  if (weight.rank !== 2) throw new OpError(op, `weight must be [V, D], got ${formatShape(weight.shape)}`, [weight, ids]);
  return runOp1(embeddingDef, [weight, ids], { axis: 0 });
}
