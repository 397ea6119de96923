// Causal self-attention with grouped-query heads as one fused op, and a plain unfused reference.
//
// Forward kernel: ../cpu/attention.ts → the FlashAttention-style native kernel (key blocks streamed
// with an online softmax; it never builds the [B, Hq, T, S] score matrix). The op saves q, k, v,
// its output and the per-row logsumexp [B, Hq, T]; the backward recomputes the scores block by
// block from those (op `attentionBackward`, not differentiable itself).
// `attentionReference` computes the same thing from matmul/exp/sum/max: it checks the fused op in
// tests and serves backends that have no fused kernel.
import { tidy } from "../engine.js";
import { OpError } from "../errors.js";
import { checkFloat, runOp, type OpDef } from "../op.js";
import { broadcastShapes, formatShape, shapesEqual } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { add, div, maximum, sub } from "./binary.js";
import { tensor } from "./creation.js";
import { matmul } from "./matmul.js";
import { max, sum } from "./reduce.js";
import { permute, reshape, unsqueeze } from "./shape.js";
import { exp, scale as scaleOp } from "./unary.js";

/** Options of {@link attention} and {@link attentionReference}. */
export interface AttentionOptions {
  /**
   * Causal masking (default true): query `t` sits at absolute position `S - T + t`, so with a KV
   * cache (`S > T`) the `T` queries are the newest positions; key `j` is visible iff `j <= S - T + t`.
   */
  causal?: boolean;
  /** Multiplies `q · kᵀ` (default `1 / sqrt(D)`). */
  scale?: number;
  /**
   * Additive mask, broadcastable to `[B, Hq, T, S]` (e.g. `[T, S]`, `[B, 1, T, S]`), same dtype as
   * `q`, added to the scaled scores before the softmax. `-Infinity` hides a key; a query row whose
   * keys are all hidden gives output 0 (and gradient 0). The mask gets no gradient.
   */
  mask?: Tensor | null;
}

/** Attributes of the attention ops (shapes resolved, defaults applied). */
export interface AttentionAttrs {
  readonly batch: number;
  readonly queryLen: number;
  readonly keyLen: number;
  readonly queryHeads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly causal: boolean;
  readonly scale: number;
  /** Whether the op's inputs end with a mask tensor. */
  readonly hasMask: boolean;
}

/**
 * The fused op. Inputs `[q, k, v]` or `[q, k, v, mask]`; outputs `[out, lse]` with
 * `lse` [B, Hq, T] the log of each row's softmax denominator (`+Infinity` for fully masked rows).
 */
export const attentionDef: OpDef<AttentionAttrs> = {
  name: "attention",
  // Saved state beyond the inputs is the output (returned anyway) and lse: O(B·Hq·T), never O(T·S).
  save: (inputs, [out, lse]) => [inputs[0]!, inputs[1]!, inputs[2]!, out!, lse!, ...inputs.slice(3)],
  backward: ([dOut], ctx) => {
    const none = ctx.attrs.hasMask ? [null, null, null, null] : [null, null, null];
    if (!dOut) return none;
    const [q, k, v, out, lse, mask] = ctx.saved as Tensor[];
    const inputs = [q!, k!, v!, out!, lse!, dOut, ...(mask ? [mask] : [])];
    const grads: (Tensor | null)[] = runOp(attentionBackwardDef, inputs, ctx.attrs);
    for (let i = 0; i < 3; i++) {
      if (!ctx.needsGrad[i]) {
        grads[i]!.dispose();
        grads[i] = null;
      }
    }
    return ctx.attrs.hasMask ? [...grads, null] : grads;
  },
};

/**
 * Backward of {@link attentionDef} as an op (not differentiable itself). Inputs
 * `[q, k, v, out, lse, dOut]` (+ `mask`), outputs `[dq, dk, dv]`; the gradient of a kv head sums
 * over the query heads that read it.
 */
export const attentionBackwardDef: OpDef<AttentionAttrs> = { name: "attentionBackward" };

/** Validates the inputs of the attention ops and resolves their attributes. */
function attentionAttrs(op: string, q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): AttentionAttrs {
  const mask = options.mask ?? null;
  const all = mask ? [q, k, v, mask] : [q, k, v];
  for (const t of all) t.assertAlive(op);
  checkFloat(op, all);
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) {
    throw new OpError(op, "q must be [B, T, Hq, D] and k, v [B, S, Hkv, D] (rank 4 each)", all);
  }
  const [B, T, Hq, D] = q.shape as [number, number, number, number];
  const [Bk, S, Hkv, Dk] = k.shape as [number, number, number, number];
  if (!shapesEqual(k.shape, v.shape)) throw new OpError(op, `k ${formatShape(k.shape)} and v ${formatShape(v.shape)} must have the same shape`, all);
  if (Bk !== B) throw new OpError(op, `batch sizes differ: q has ${B}, k and v have ${Bk}`, all);
  if (Dk !== D) throw new OpError(op, `head dims differ: q has D = ${D}, k and v have D = ${Dk}`, all);
  if (Hkv === 0 || Hq === 0 || D === 0) throw new OpError(op, "heads and head dim must be at least 1", all);
  if (Hq % Hkv !== 0) throw new OpError(op, `Hq = ${Hq} query heads is not a multiple of Hkv = ${Hkv} kv heads`, all);
  const causal = options.causal ?? true;
  if (causal && S < T) {
    throw new OpError(op, `causal attention needs S >= T (the T queries are the newest of S positions), got S = ${S} < T = ${T}`, all);
  }
  const target = [B, Hq, T, S];
  if (mask) {
    const b = mask.rank <= 4 ? broadcastShapes(mask.shape, target) : null;
    if (!b || !shapesEqual(b, target)) {
      throw new OpError(op, `mask ${formatShape(mask.shape)} does not broadcast to [B, Hq, T, S] = ${formatShape(target)}`, all);
    }
  }
  const scale = options.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) throw new OpError(op, `scale must be a finite number, got ${scale}`, all);
  return { batch: B, queryLen: T, keyLen: S, queryHeads: Hq, kvHeads: Hkv, headDim: D, causal, scale, hasMask: mask !== null };
}

/**
 * Scaled dot-product attention with grouped-query heads, fused (FlashAttention-style on the CPU:
 * no `[B, Hq, T, S]` score matrix is built, forward or backward).
 *
 * `q` is [B, T, Hq, D], `k` and `v` are [B, S, Hkv, D] — the projections reshaped, no transposes —
 * with `Hq` a multiple of `Hkv`; query head `h` reads kv head `floor(h / (Hq / Hkv))` (the
 * LLaMA/HF `repeat_kv` convention). Returns [B, T, Hq, D]:
 * `out[b,t,h] = softmax_j(scale · q[b,t,h]·k[b,j,g] + mask[b,h,t,j]) · v[b,:,g]`.
 * The softmax runs in f32 for f32 and bf16 inputs and in f64 for f64 inputs (bf16 inputs give a
 * bf16 output; the saved row statistics stay f32). Differentiable w.r.t. q, k, v.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  const attrs = attentionAttrs("attention", q, k, v, options);
  const inputs = options.mask ? [q, k, v, options.mask] : [q, k, v];
  const [out, lse] = runOp(attentionDef, inputs, attrs);
  lse!.dispose(); // the op's node keeps its own handle for the backward
  return out!;
}

/** The float dtypes ops compute in. */
type ComputeDType = ReturnType<typeof checkFloat>;

/** [T, S] additive causal mask: 0 where key j is visible to query t (j <= S - T + t), else -inf. */
function causalMask(T: number, S: number, dtype: ComputeDType): Tensor {
  const data = dtype === "f64" ? new Float64Array(T * S) : new Float32Array(T * S);
  for (let t = 0; t < T; t++) for (let j = S - T + t + 1; j < S; j++) data[t * S + j] = -Infinity;
  return tensor(data, [T, S], { dtype });
}

/**
 * The same computation as {@link attention}, unfused, from `matmul`, `exp`, `sum` and `max`: it
 * builds the [B, Hq, T, S] scores and probabilities (memory O(T·S) per head). Used to check the
 * fused op and by backends without a fused kernel; differentiable through the ops it uses.
 */
export function attentionReference(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  const a = attentionAttrs("attentionReference", q, k, v, options);
  const { batch: B, queryLen: T, keyLen: S, queryHeads: Hq, kvHeads: Hkv, headDim: D } = a;
  const G = Hq / Hkv;
  const dtype = q.dtype as ComputeDType;
  return tidy(() => {
    // Query head h = g_kv * G + r: group the G query heads of one kv head, and broadcast k, v over them.
    const qg = permute(reshape(q, [B, T, Hkv, G, D]), [0, 2, 3, 1, 4]); // [B, Hkv, G, T, D]
    const kh = unsqueeze(permute(k, [0, 2, 1, 3]), 2); //                  [B, Hkv, 1, S, D]
    const vh = unsqueeze(permute(v, [0, 2, 1, 3]), 2); //                  [B, Hkv, 1, S, D]
    let s = reshape(scaleOp(matmul(qg, kh, { transB: true }), a.scale), [B, Hq, T, S]);
    if (options.mask) s = add(s, options.mask);
    if (a.causal) s = add(s, causalMask(T, S, dtype));
    // Softmax over keys. The row max is a constant (no gradient); clamping it keeps rows that are
    // all -inf at exp(-inf) = 0 instead of NaN, and the floor on the sum turns them into 0 / tiny = 0.
    const m = maximum(max(s.detach(), -1, true), -3e38);
    const e = exp(sub(s, m));
    const p = div(e, maximum(sum(e, -1, true), 1e-30));
    const o = matmul(reshape(p, [B, Hkv, G, T, S]), vh); //                [B, Hkv, G, T, D]
    return reshape(permute(o, [0, 3, 1, 2, 4]), [B, T, Hq, D]);
  });
}
