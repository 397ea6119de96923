// Fused ops of a LLaMA block (besides attention and the loss): RMSNorm, rotary embedding, SwiGLU,
// dropout, and the fused AdamW step. Each op's backward sits beside its forward; the backward
// kernels are ops of their own (not differentiable). Kernels: src/cpu/nn.ts.
import { getKernel, type Device } from "../backend.js";
import { isGradEnabled } from "../engine.js";
import { OpError } from "../errors.js";
import { checkFloat, checkInputs, runOp, runOp1, type OpDef } from "../op.js";
import { philox4x32, seedToKey } from "../random.js";
import { formatShape, shapesEqual } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { zeros } from "./creation.js";
import { reshape } from "./shape.js";

// --- RMSNorm --------------------------------------------------------------------------------------

/** Attributes of `rmsnorm`. */
export interface RmsnormAttrs {
  readonly eps: number;
}

/** Attributes of the RMSNorm backward kernel. */
export interface RmsnormGradAttrs {
  /** Whether to compute dweight (skipped for a frozen weight). */
  readonly weightGrad: boolean;
}

/** Forward kernel outputs `[y, rstd]`; rstd `[...rows]` is kept for the backward only. */
export const rmsnormDef: OpDef<RmsnormAttrs> = {
  name: "rmsnorm",
  save: ([x, w], [, rstd]) => [x!, w!, rstd!],
  backward: ([dy], ctx) => {
    if (!dy) return [null, null];
    const [x, w, rstd] = ctx.saved;
    const [dx, dw] = runOp(rmsnormGradDef, [x!, w!, rstd!, dy], { weightGrad: ctx.needsGrad[1]! });
    return [dx!, dw ?? null];
  },
};

/** `[x, weight, rstd, dy]` → `[dx]` or `[dx, dweight]` (not differentiable). */
export const rmsnormGradDef: OpDef<RmsnormGradAttrs> = { name: "rmsnormGrad" };

/**
 * LLaMA RMSNorm over the last axis: `y = x / sqrt(mean(x²) + eps) · weight`.
 *
 * The statistics are computed in f64 (for f32 inputs too, as Hugging Face computes them in f32 or
 * better). Differentiable in `x` and `weight`; dweight is summed over rows deterministically.
 * @param x - `[..., D]`
 * @param weight - `[D]`
 * @param eps - added to the mean of squares (default 1e-5; LLaMA configs call it `rms_norm_eps`)
 */
export function rmsnorm(x: Tensor, weight: Tensor, eps = 1e-5): Tensor {
  const op = "rmsnorm";
  checkInputs(op, [x, weight]);
  checkFloat(op, [x, weight]);
  if (weight.rank !== 1) throw new OpError(op, `weight must be 1-D [D], got ${formatShape(weight.shape)}`, [x, weight]);
  const d = weight.shape[0]!;
  if (x.rank < 1 || x.shape[x.rank - 1] !== d) {
    throw new OpError(op, `the last axis of x must match weight [${d}], got x ${formatShape(x.shape)}`, [x, weight]);
  }
  if (d === 0) throw new OpError(op, "cannot normalize over an empty axis (D = 0)", [x, weight]);
  if (!(Number.isFinite(eps) && eps >= 0)) throw new OpError(op, `eps must be a finite number ≥ 0, got ${eps}`, [x, weight]);
  const [y, rstd] = runOp(rmsnormDef, [x, weight], { eps });
  rstd!.dispose(); // the tape keeps its own handle
  return y!;
}

// --- RoPE -----------------------------------------------------------------------------------------

/**
 * Llama 3.1 frequency scaling: wavelengths longer than `originalMaxPositionEmbeddings / lowFreqFactor`
 * are stretched by `factor`, those shorter than `originalMaxPositionEmbeddings / highFreqFactor`
 * are kept, and the band in between is interpolated smoothly.
 */
export interface RopeLlama3Scaling {
  readonly type: "llama3";
  readonly factor: number;
  readonly lowFreqFactor: number;
  readonly highFreqFactor: number;
  readonly originalMaxPositionEmbeddings: number;
}

/** Options of {@link rope} and {@link ropeInvFreq}. */
export interface RopeOptions {
  /** Base of the frequencies (`rope_theta`): invFreq[i] = theta^(−2i/D). Default 10000. */
  readonly theta?: number;
  /** Frequency scaling (`rope_scaling`); none by default. */
  readonly scaling?: RopeLlama3Scaling;
}

/** Attributes of `rope`. */
export interface RopeAttrs {
  /** `D/2` inverse frequencies. */
  readonly invFreq: Float64Array;
  /** Rotate by −angle (the backward). */
  readonly inverse: boolean;
}

/** The backward of a rotation is the rotation by the opposite angle: dx = R(−θ)·dy. */
export const ropeDef: OpDef<RopeAttrs> = {
  name: "rope",
  save: ([, positions]) => [positions!],
  backward: ([dy], ctx) => [dy ? runOp1(ropeDef, [dy, ctx.saved[0]!], { ...ctx.attrs, inverse: !ctx.attrs.inverse }) : null, null],
};

function positiveFinite(op: string, what: string, v: unknown): number {
  if (typeof v !== "number" || !(Number.isFinite(v) && v > 0)) throw new OpError(op, `${what} must be a finite number > 0, got ${String(v)}`);
  return v;
}

function invFreqFor(op: string, headDim: number, options: RopeOptions): Float64Array {
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) {
    throw new OpError(op, `head dim ${headDim} must be an even integer ≥ 2 (rotate-half pairs i and i + D/2)`);
  }
  const theta = positiveFinite(op, "theta", options.theta ?? 10000);
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / theta ** ((2 * i) / headDim);
  const s = options.scaling;
  if (!s) return inv;
  if (s.type !== "llama3") throw new OpError(op, `unknown rope scaling type '${String(s.type)}'; supported: llama3`);
  const factor = positiveFinite(op, "scaling.factor", s.factor);
  const low = positiveFinite(op, "scaling.lowFreqFactor", s.lowFreqFactor);
  const high = positiveFinite(op, "scaling.highFreqFactor", s.highFreqFactor);
  const orig = positiveFinite(op, "scaling.originalMaxPositionEmbeddings", s.originalMaxPositionEmbeddings);
  if (!(high > low)) throw new OpError(op, `scaling.highFreqFactor (${high}) must be greater than scaling.lowFreqFactor (${low})`);
  const lowFreqWavelen = orig / low; // longer wavelengths: stretched by `factor`
  const highFreqWavelen = orig / high; // shorter wavelengths: kept
  for (let i = 0; i < half; i++) {
    const f = inv[i]!;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) continue;
    if (wavelen > lowFreqWavelen) {
      inv[i] = f / factor;
    } else {
      const smooth = (orig / wavelen - low) / (high - low);
      inv[i] = ((1 - smooth) * f) / factor + smooth * f;
    }
  }
  return inv;
}

/**
 * The `headDim/2` inverse frequencies of {@link rope}, in f64: `theta^(−2i/D)`, then the Llama 3.1
 * scaling if `options.scaling` is given. For a backend or a cache that needs the same angles.
 */
export function ropeInvFreq(headDim: number, options: RopeOptions = {}): Float64Array {
  return invFreqFor("ropeInvFreq", headDim, options);
}

/**
 * Rotary position embedding, LLaMA's rotate-half convention. For i < D/2, with
 * `angle = position · invFreq[i]`: `out[..., i] = x1·cos − x2·sin` and
 * `out[..., i + D/2] = x2·cos + x1·sin`, where x1 = x[..., i], x2 = x[..., i + D/2]. Angles and
 * cos/sin are computed in f64, then rounded to the dtype of x.
 *
 * @param x - `[B, T, H, D]` with D even; strided views are read as they are (D contiguous)
 * @param positions - i32 `[T]` (shared by the batch) or `[B, T]`
 * @returns a new contiguous `[B, T, H, D]` tensor; differentiable in `x`
 */
export function rope(x: Tensor, positions: Tensor, options: RopeOptions = {}): Tensor {
  const op = "rope";
  checkInputs(op, [x, positions]);
  checkFloat(op, [x]);
  if (x.rank !== 4) throw new OpError(op, `x must be [B, T, H, D], got rank ${x.rank}`, [x, positions]);
  const [b, t, , d] = x.shape as [number, number, number, number];
  if (d < 2 || d % 2 !== 0) throw new OpError(op, `head dim D = ${d} must be even and ≥ 2 (rotate-half pairs i and i + D/2)`, [x, positions]);
  if (positions.dtype !== "i32") throw new OpError(op, `positions must be i32, got ${positions.dtype}`, [x, positions]);
  if (!shapesEqual(positions.shape, [t]) && !shapesEqual(positions.shape, [b, t])) {
    throw new OpError(op, `positions must be [T] = [${t}] or [B, T] = [${b},${t}], got ${formatShape(positions.shape)}`, [x, positions]);
  }
  return runOp1(ropeDef, [x, positions], { invFreq: invFreqFor(op, d, options), inverse: false });
}

// --- SwiGLU ---------------------------------------------------------------------------------------

/** `[gate, up]` → `[silu(gate) · up]`. */
export const swigluDef: OpDef<Record<string, never>> = {
  name: "swiglu",
  save: ([gate, up]) => [gate!, up!],
  backward: ([dy], ctx) => (dy ? runOp(swigluGradDef, [ctx.saved[0]!, ctx.saved[1]!, dy], {}) : [null, null]),
};

/** `[gate, up, dy]` → `[dgate, dup]` in one pass (not differentiable). */
export const swigluGradDef: OpDef<Record<string, never>> = { name: "swigluGrad" };

/**
 * The LLaMA MLP gate: `silu(gate) · up` in one fused pass (no intermediate tensor), with an
 * overflow-free sigmoid. `gate` and `up` have the same shape and dtype.
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  const op = "swiglu";
  checkInputs(op, [gate, up]);
  checkFloat(op, [gate, up]);
  if (!shapesEqual(gate.shape, up.shape)) throw new OpError(op, `gate and up must have the same shape`, [gate, up]);
  return runOp1(swigluDef, [gate, up], {});
}

// --- Dropout --------------------------------------------------------------------------------------

/** Options of {@link dropout}. */
export interface DropoutOptions {
  /** Seed of the mask (a safe integer). */
  readonly seed: number;
  /**
   * First Philox counter (default 0). A call over n elements uses `ceil(n / 4)` counters, so the
   * next independent mask with the same seed may start at `offset + ceil(n / 4)`.
   */
  readonly offset?: number;
  /** When false, dropout is the identity (default true). */
  readonly training?: boolean;
}

/** Attributes of `dropout`. */
export interface DropoutAttrs {
  readonly p: number;
  readonly seed: number;
  readonly offset: number;
}

/** No mask is stored: the backward regenerates it from (seed, offset) and applies it to dy. */
export const dropoutDef: OpDef<DropoutAttrs> = {
  name: "dropout",
  backward: ([dy], ctx) => [dy ? runOp1(dropoutDef, [dy], ctx.attrs) : null],
};

function checkDropoutArgs(op: string, p: number, seed: number, offset: number, inputs: readonly Tensor[] = []): void {
  if (typeof p !== "number" || !(p >= 0 && p < 1)) throw new OpError(op, `p must be a number in [0, 1), got ${String(p)}`, inputs);
  if (!Number.isSafeInteger(seed)) throw new OpError(op, `seed must be a safe integer, got ${String(seed)}`, inputs);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new OpError(op, `offset must be a non-negative safe integer, got ${String(offset)}`, inputs);
}

/**
 * Inverted dropout with a counter-based mask: element i (flat row-major index of `x`) is kept iff
 * `u_i ≥ p`, where `u_i = (w >>> 8) / 2^24` and w is word `i mod 4` of
 * `philox4x32((c mod 2^32, ⌊c / 2^32⌋, 2, 0), seedToKey(seed))` with `c = offset + ⌊i/4⌋`; kept
 * values are scaled by `1/(1 − p)`. The mask is never stored: the backward regenerates it, and any
 * backend can reproduce it ({@link dropoutMask}). `p = 0` or `training: false` is the identity.
 */
export function dropout(x: Tensor, p: number, options: DropoutOptions): Tensor {
  const op = "dropout";
  checkInputs(op, [x]);
  checkFloat(op, [x]);
  const offset = options?.offset ?? 0;
  checkDropoutArgs(op, p, options?.seed, offset, [x]);
  if (p === 0 || options.training === false) return reshape(x, x.shape); // a new handle, gradients flow
  if (offset + Math.ceil(x.size / 4) > Number.MAX_SAFE_INTEGER) {
    throw new OpError(op, `offset ${offset} + ${Math.ceil(x.size / 4)} counters exceeds 2^53 - 1`, [x]);
  }
  return runOp1(dropoutDef, [x], { p, seed: options.seed, offset });
}

/**
 * The keep-mask of {@link dropout} over `n` elements (1 = kept, 0 = dropped), computed in
 * TypeScript from `philox4x32`: the reference a GPU backend or a test reproduces bit for bit.
 */
export function dropoutMask(n: number, p: number, seed: number, offset = 0): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new OpError("dropoutMask", `n must be a non-negative integer, got ${n}`);
  checkDropoutArgs("dropoutMask", p, seed, offset);
  const [k0, k1] = seedToKey(seed);
  const threshold = p * 16777216; // u ≥ p  ⟺  (w >>> 8) ≥ p·2^24, exactly
  const mask = new Uint8Array(n);
  const block = new Uint32Array(4);
  for (let i = 0; i < n; i += 4) {
    const c = offset + i / 4;
    philox4x32(c >>> 0, Math.floor(c / 4294967296) >>> 0, 2, 0, k0, k1, block);
    for (let j = 0; j < 4 && i + j < n; j++) mask[i + j] = block[j]! >>> 8 >= threshold ? 1 : 0;
  }
  return mask;
}

// --- AdamW step -----------------------------------------------------------------------------------

/** Hyper-parameters of one {@link adamwStep}. */
export interface AdamwStepOptions {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  /** Decoupled weight decay: `p ← p − lr·weightDecay·p` before the Adam update. */
  readonly weightDecay: number;
  /** The step number t ≥ 1 of the bias corrections `1 − β^t`. */
  readonly step: number;
}

/**
 * One fused AdamW update of `param`, `m` and `v` in place (one kernel call, no temporaries):
 * `p ← p − lr·wd·p`; `m ← β1·m + (1 − β1)·g`; `v ← β2·v + (1 − β2)·g²`;
 * `p ← p − lr · m̂ / (sqrt(v̂) + eps)` with `m̂ = m / (1 − β1^t)`, `v̂ = v / (1 − β2^t)`.
 * All four tensors are contiguous, of one shape and one float dtype, f32 or f64 (bf16 is refused:
 * the bf16 policy keeps trainable parameters and optimizer state in f32). Not recorded for autograd;
 * a parameter that requires grad may only be updated inside `noGrad()`.
 */
export function adamwStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, options: AdamwStepOptions): void {
  const op = "adamwStep";
  const inputs = [param, grad, m, v];
  checkInputs(op, inputs);
  checkAdamwTensors(op, inputs, inputs);
  checkAdamwOptions(op, options, inputs);
  getKernel<AdamwStepOptions>(op, param.device)(inputs, options);
  for (const t of [param, m, v]) t.storage.version++;
}

/** The per-tensor checks of {@link adamwStep} for one `[param, grad, m, v]`; `all` names the inputs of the error. */
function checkAdamwTensors(op: string, group: readonly Tensor[], all: readonly Tensor[]): void {
  const [param, , m, v] = group as [Tensor, Tensor, Tensor, Tensor];
  if (checkFloat(op, group) === "bf16") {
    throw new OpError(op, "bf16 parameters are not updated in place: keep trainable parameters and optimizer state in f32 (master weights) and cast them to bf16 where the model computes in bf16", all);
  }
  for (const t of group) {
    if (!shapesEqual(t.shape, param.shape)) throw new OpError(op, "param, grad, m and v must have the same shape", all);
    if (!t.isContiguous) throw new OpError(op, `every tensor must be contiguous; ${formatShape(t.shape)} with strides [${t.strides.join(",")}] is not`, all);
  }
  if (isGradEnabled() && [param, m, v].some((t) => t.requiresGrad)) {
    throw new OpError(op, "in-place update of a tensor that requires grad; do it inside noGrad() (as optimizers do)", all);
  }
}

function checkAdamwOptions(op: string, options: AdamwStepOptions, inputs: readonly Tensor[]): void {
  const { lr, beta1, beta2, eps, weightDecay, step } = options;
  for (const [k, val] of [["lr", lr], ["eps", eps], ["weightDecay", weightDecay]] as const) {
    if (!(Number.isFinite(val) && val >= 0)) throw new OpError(op, `${k} must be a finite number ≥ 0, got ${val}`, inputs);
  }
  for (const [k, val] of [["beta1", beta1], ["beta2", beta2]] as const) {
    if (!(val >= 0 && val < 1)) throw new OpError(op, `${k} must be in [0, 1), got ${val}`, inputs);
  }
  if (!Number.isSafeInteger(step) || step < 1) throw new OpError(op, `step must be an integer ≥ 1, got ${step}`, inputs);
}

/**
 * {@link adamwStep} over many parameters at once: `params[i]` is updated from `grads[i]` with the
 * moments `ms[i]`, `vs[i]`, all with the same hyper-parameters. The checks of {@link adamwStep}
 * apply to each group (contiguous, one shape and one dtype per group, f32 or f64; groups may differ
 * in shape and dtype); all tensors are on one device. The result is bit for bit that of one
 * {@link adamwStep} per group. The registry kernel `adamwStepMany` receives
 * `[...params, ...grads, ...ms, ...vs]`; on CUDA it is one launch over all groups. The lists may be
 * empty (nothing happens).
 */
export function adamwStepMany(
  params: readonly Tensor[], grads: readonly Tensor[], ms: readonly Tensor[], vs: readonly Tensor[], options: AdamwStepOptions,
): void {
  const op = "adamwStepMany";
  const k = params.length;
  if (grads.length !== k || ms.length !== k || vs.length !== k) {
    throw new OpError(op, `params, grads, ms and vs must have the same length, got ${k}, ${grads.length}, ${ms.length} and ${vs.length}`);
  }
  const inputs = [...params, ...grads, ...ms, ...vs];
  checkInputs(op, inputs);
  for (let i = 0; i < k; i++) {
    const group = [params[i]!, grads[i]!, ms[i]!, vs[i]!];
    checkAdamwTensors(op, group, group);
  }
  // One launch updates every group at once: no tensor may be updated twice.
  const touched = new Map<unknown, Set<number>>();
  for (const t of [...params, ...ms, ...vs]) {
    let offsets = touched.get(t.storage);
    if (!offsets) touched.set(t.storage, (offsets = new Set()));
    if (offsets.has(t.offset)) throw new OpError(op, "a parameter or moment tensor appears twice: each is updated in place once per step", [t]);
    offsets.add(t.offset);
  }
  checkAdamwOptions(op, options, inputs.slice(0, 4));
  if (k === 0) return;
  getKernel<AdamwStepOptions>(op, params[0]!.device)(inputs, options);
  for (const t of [...params, ...ms, ...vs]) t.storage.version++;
}

// --- Gradient-norm statistics -----------------------------------------------------------------------

/**
 * The fused gradient norm: one f64 tensor `[2]` = `[Σ‖g‖², Σ(g − g)]` over all elements of all
 * `grads` (f32, f64 or bf16, any shapes and layouts, one device), accumulated in f64. The second
 * entry is a finiteness probe: 0 when every element is finite, NaN when one is NaN or ±Inf. One
 * kernel (registry name `gradNormStats`, inputs `grads`); on CUDA one launch over all tensors with
 * a deterministic (fixed-order) reduction. With no gradients the result is `[0, 0]` on `device`
 * (default `"cpu"`). Not recorded for autograd.
 */
export function gradNormStats(grads: readonly Tensor[], device?: Device): Tensor {
  const op = "gradNormStats";
  const dev = checkInputs(op, grads, device ?? "cpu");
  if (device !== undefined && grads.length > 0 && dev !== device) {
    throw new OpError(op, `the gradients are on '${dev}', not on the requested device '${device}'`, grads);
  }
  for (const g of grads) {
    if (g.dtype !== "f32" && g.dtype !== "f64" && g.dtype !== "bf16") {
      throw new OpError(op, `expects f32, f64 or bf16 gradients, got ${g.dtype}`, grads);
    }
  }
  if (grads.length === 0) return zeros([2], { dtype: "f64", device: dev });
  return getKernel(op, dev)(grads, {})[0]!;
}
