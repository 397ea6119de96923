// The numerics of Half-Quadratic Quantization (HQQ, Badri & Shaji 2023), per group, in plain
// TypeScript on the host (JS numbers, i.e. f64, over the f32 weight).
//
// HQQ fits, per group, the zero point z (and optionally the scale s) of the affine grid
// ŵ = s·(q − z), q = clamp(round(w/s + z), 0, 2^b − 1), against the sparsity-promoting objective
// φ(W − Ŵ) = Σ|w − ŵ|^p with p < 1, which tolerates a few large (outlier) errors. Half-quadratic
// splitting introduces W_e ≈ W − Ŵ and minimizes φ(W_e) + β/2·‖W_e − (W − Ŵ)‖², alternating:
//   1. W_e ← shrink_p(W − Ŵ, β), the generalized soft-thresholding of the lp norm:
//      shrink_p(x, β) = sign(x)·max(|x| − |x|^(p−1)/β, 0);
//   2. z ← ⟨q − (W − W_e)/s⟩ (mean over the group), the closed-form minimizer of
//      ‖(W − W_e) − s·(q − z)‖² in z for the current codes q;
//   3. β ← κ·β;
// starting from the min-max grid. Defaults from the write-up: p = 0.7, β = 10, κ = 1.01,
// 20 iterations, stopping early once the error stops falling (as the write-up's code measures it:
// the mean |W − Ŵ| over the whole weight, all groups stepping together).

/** Hyper-parameters of the HQQ iteration (see {@link hqqOptimizeGroup}). */
export interface HqqParams {
  /** p of the lp objective, in (0, 1]. */
  lpNorm: number;
  /** Initial β of the half-quadratic penalty (> 0). */
  beta: number;
  /** β's growth per iteration (> 1). */
  kappa: number;
  /** Updates to try (0: the min-max start as it is). */
  iterations: number;
  /** Also update the scale (joint least-squares fit of scale and zero, see {@link hqqOptimizeGroup}). */
  optimizeScale: boolean;
}

/** The defaults of the HQQ write-up: p = 0.7, β = 10, κ = 1.01, 20 iterations, zero point only. */
export const HQQ_DEFAULTS: Readonly<HqqParams> = { lpNorm: 0.7, beta: 10, kappa: 1.01, iterations: 20, optimizeScale: false };

/**
 * Largest |zero| the start allows: f16 stores the zero point, and keeps integers exact only up
 * to 2048. A group whose values all lie far from 0 relative to their spread (range below
 * max|w|·(2^b − 1)/1024) gets a slightly wider scale instead of a zero point f16 cannot hold.
 * Real weights straddle 0, where this never applies.
 */
export const HQQ_MAX_ZERO = 1024;

/** Smallest scale: the smallest positive f16 (2^−24), so that the stored scale is never 0. */
export const HQQ_MIN_SCALE = 2 ** -24;

/** Round half to even (as torch.round), for finite x of moderate size. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // half up
  return r - x === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

/** The code of `w` on the grid (scale, zero): clamp(round(w / scale + zero), 0, maxq). */
export function hqqCode(w: number, scale: number, zero: number, maxq: number): number {
  const q = roundHalfEven(w / scale + zero);
  return q < 0 ? 0 : q > maxq ? maxq : q;
}

/** The generalized soft-thresholding of the lp norm: sign(x)·max(|x| − |x|^(p−1)/β, 0). */
export function shrinkLp(x: number, beta: number, p: number): number {
  const a = Math.abs(x);
  if (a === 0) return 0;
  const t = a - a ** (p - 1) / beta;
  return t > 0 ? Math.sign(x) * t : 0;
}

/**
 * The min-max start of one group values[start, end): the grid spans [min w, max w] exactly,
 * scale = (max − min)/(2^b − 1) and the real zero point = −min/scale (HQQ's start; unlike RTN's
 * the range need not contain 0 and the zero is not rounded), with the bounds of
 * {@link HQQ_MAX_ZERO} and {@link HQQ_MIN_SCALE}.
 */
export function hqqMinMax(values: ArrayLike<number>, start: number, end: number, bits: number): { scale: number; zero: number } {
  const maxq = (1 << bits) - 1;
  let mn = Infinity;
  let mx = -Infinity;
  for (let i = start; i < end; i++) {
    const v = values[i]!;
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  const scale = Math.max((mx - mn) / maxq, Math.max(Math.abs(mn), Math.abs(mx)) / HQQ_MAX_ZERO, HQQ_MIN_SCALE);
  return { scale, zero: -mn / scale };
}

/** Σ |w − ŵ|^p over values[start, end) on the grid (scale, zero): the objective HQQ minimizes. */
export function lpError(values: ArrayLike<number>, start: number, end: number, scale: number, zero: number, bits: number, p: number): number {
  const maxq = (1 << bits) - 1;
  let s = 0;
  for (let i = start; i < end; i++) {
    const w = values[i]!;
    s += Math.abs(w - scale * (hqqCode(w, scale, zero, maxq) - zero)) ** p;
  }
  return s;
}

/** What one HQQ step computes on a group: the objective at (scale, zero) and the updated pair. */
export interface HqqStep {
  /** Σ |w − ŵ|^p at the (scale, zero) the step started from. */
  error: number;
  /** Σ |w − ŵ| there (what the early stop watches). */
  l1: number;
  /** The zero point after the step (and the scale, which changes only with `optimizeScale`). */
  scale: number;
  zero: number;
}

/**
 * One HQQ step on values[start, end) from (scale, zero) with penalty β: codes q, residual
 * e = w − s·(q − z), W_e = shrink_p(e, β), then the zero point z' = mean(q − (w − W_e)/s).
 *
 * With `optimizeScale`, the step instead solves the same quadratic sub-problem in both unknowns:
 * min over (s, z) of ‖(W − W_e) − s·(q − z)‖², a least-squares line t ≈ a·q + b through the
 * points (q_i, t_i = w_i − W_e,i): s' = cov(q, t)/var(q), z' = mean(q) − mean(t)/s'. Where that
 * fit is degenerate (all codes equal, or a non-positive slope) only the zero point is updated.
 */
export function hqqStep(values: ArrayLike<number>, start: number, end: number, bits: number, scale: number, zero: number, beta: number, p: number, optimizeScale: boolean): HqqStep {
  const maxq = (1 << bits) - 1;
  const n = end - start;
  let err = 0;
  let l1 = 0;
  let sumQ = 0;
  let sumT = 0;
  let sumQQ = 0;
  let sumQT = 0;
  for (let i = start; i < end; i++) {
    const w = values[i]!;
    const q = hqqCode(w, scale, zero, maxq);
    const e = w - scale * (q - zero);
    const a = Math.abs(e);
    let we = 0;
    l1 += a;
    if (a > 0) {
      const ap = a ** p;
      err += ap;
      // |e|^(p−1) = |e|^p / |e|: one power per weight serves the error and the shrinkage
      const t = a - ap / a / beta;
      if (t > 0) we = e > 0 ? t : -t;
    }
    const target = w - we;
    sumQ += q;
    sumT += target;
    sumQQ += q * q;
    sumQT += q * target;
  }
  const mq = sumQ / n;
  const mt = sumT / n;
  if (optimizeScale) {
    const varQ = sumQQ / n - mq * mq;
    const cov = sumQT / n - mq * mt;
    if (varQ > 1e-12 && cov > 0) {
      const s = Math.max(cov / varQ, HQQ_MIN_SCALE);
      return { error: err, l1, scale: s, zero: mq - mt / s };
    }
  }
  return { error: err, l1, scale, zero: mq - mt / scale };
}

/** The result of {@link hqqOptimize}: one (scale, zero) per group, before f16 rounding. */
export interface HqqFit {
  scales: Float64Array;
  zeros: Float64Array;
  /** Updates kept (0: the min-max start). */
  steps: number;
  /** Σ |w − ŵ| at the kept grid, and at the min-max start. */
  l1: number;
  startL1: number;
}

/**
 * HQQ on consecutive groups of `groupSize` values of values[start, end) (a row-major [out, in]
 * weight with groups of columns is exactly that: group k = row ⌊k / groups⌋, group k mod groups):
 * the min-max start ({@link hqqMinMax}), then up to `iterations` steps ({@link hqqStep}) of every
 * group together, β growing by κ after each. As in the write-up's code, the search stops at the
 * first step after which the mean |W − Ŵ| over all the groups is not lower than before; the grid
 * with the lowest such error is returned.
 */
export function hqqOptimize(values: ArrayLike<number>, groupSize: number, bits: number, params: HqqParams, start = 0, end = values.length): HqqFit {
  const n = (end - start) / groupSize;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`hqq: ${end - start} values do not make whole groups of ${groupSize}`);
  const scales = new Float64Array(n);
  const zeros = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const a = start + k * groupSize;
    const r = hqqMinMax(values, a, a + groupSize, bits);
    scales[k] = r.scale;
    zeros[k] = r.zero;
  }
  const bestScales = new Float64Array(n);
  const bestZeros = new Float64Array(n);
  let best = Infinity;
  let startL1 = 0;
  let steps = -1;
  let beta = params.beta;
  for (let it = 0; it <= params.iterations; it++) {
    // One pass per iteration: the error of the current grid and, from the same codes, its update.
    const next = new Array<HqqStep>(n);
    let l1 = 0;
    for (let k = 0; k < n; k++) {
      const a = start + k * groupSize;
      next[k] = hqqStep(values, a, a + groupSize, bits, scales[k]!, zeros[k]!, beta, params.lpNorm, params.optimizeScale);
      l1 += next[k]!.l1;
    }
    if (it === 0) startL1 = l1;
    if (!(l1 < best)) break;
    best = l1;
    steps++;
    bestScales.set(scales);
    bestZeros.set(zeros);
    for (let k = 0; k < n; k++) {
      scales[k] = next[k]!.scale;
      zeros[k] = next[k]!.zero;
    }
    beta *= params.kappa;
  }
  return { scales: bestScales, zeros: bestZeros, steps, l1: best, startL1 };
}

/** HQQ on one group values[start, end): {@link hqqOptimize} with the group alone. */
export function hqqOptimizeGroup(values: ArrayLike<number>, start: number, end: number, bits: number, params: HqqParams): { scale: number; zero: number; steps: number } {
  const r = hqqOptimize(values, end - start, bits, params, start, end);
  return { scale: r.scales[0]!, zero: r.zeros[0]!, steps: r.steps };
}
