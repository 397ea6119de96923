// OPTQ's column solve (the `optqSolve` kernel). With a diagonal Hessian and no damping the error
// feedback is zero (Hinv's rows have no off-diagonal entries), so the solve must give exactly
// GPTQ's min-max round-to-nearest on the original weights — in the original column order, or,
// with act-order, in groups of columns taken by descending diag(H) and recorded in g_idx.
import { getKernel, hasKernel } from "../../backend.js";
import { tidy } from "../../engine.js";
import { OPTQ_SOLVE_OP, type OptqSolveAttrs } from "../../optq.js";
import type { Tensor } from "../../tensor.js";
import type { ConformanceCase } from "../types.js";
import { count, fmt, input } from "./common.js";

const f = Math.fround;

/** Round half to even, as GPTQ's torch.round. */
function roundEven(x: number): number {
  const r = Math.floor(x);
  const d = x - r;
  if (d !== 0.5) return d > 0.5 ? r + 1 : r + 0;
  return r % 2 === 0 ? r + 0 : r + 1;
}

/** GPTQ's min-max grid of one group (f32 arithmetic): scale and zero point. */
function grid(values: readonly number[], bits: number, symmetric: boolean): { scale: number; zero: number } {
  const maxq = (1 << bits) - 1;
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  if (symmetric) {
    hi = Math.max(Math.abs(lo), hi);
    if (lo < 0) lo = -hi;
  }
  if (lo === 0 && hi === 0) [lo, hi] = [-1, 1];
  const scale = f(f(hi - lo) / maxq);
  return { scale, zero: symmetric ? (maxq + 1) / 2 : roundEven(f(-lo / scale)) };
}

/** codes [out, in], scales and zeros [out, groups], g_idx [in]. */
function reference(w: Float64Array, diag: Float64Array, out: number, inF: number, a: OptqSolveAttrs): Float64Array[] {
  const order = Array.from({ length: inF }, (_, i) => i);
  if (a.actOrder) order.sort((x, y) => diag[y]! - diag[x]! || x - y);
  const groups = inF / a.groupSize;
  const maxq = (1 << a.bits) - 1;
  const codes = new Float64Array(out * inF);
  const scales = new Float64Array(out * groups);
  const zeros = new Float64Array(out * groups);
  const gIdx = new Float64Array(inF);
  for (let g = 0; g < groups; g++) {
    const cols = order.slice(g * a.groupSize, (g + 1) * a.groupSize);
    for (const c of cols) gIdx[c] = g;
    for (let j = 0; j < out; j++) {
      const { scale, zero } = grid(cols.map((c) => w[j * inF + c]!), a.bits, a.symmetric);
      scales[j * groups + g] = scale;
      zeros[j * groups + g] = zero;
      for (const c of cols) codes[j * inF + c] = Math.min(Math.max(roundEven(f(w[j * inF + c]! / scale)) + zero, 0), maxq);
    }
  }
  return [codes, scales, zeros, gIdx];
}

/** [out, in, bits, groupSize, symmetric, actOrder]. */
const ROWS: readonly [number, number, number, number, boolean, boolean][] = [
  [6, 64, 4, 32, false, false],
  [5, 48, 3, 16, false, true],
  [3, 64, 2, 64, true, false],
  [4, 32, 8, 8, false, true],
];

/** The OPTQ solve cases (f32 weights, f64 Hessian; every output compared exactly). */
export const OPTQ_CASES: readonly ConformanceCase[] = ROWS.map(([out, inF, bits, groupSize, symmetric, actOrder]) => {
  const attrs: OptqSolveAttrs = { bits, groupSize, symmetric, actOrder, staticGroups: false, percdamp: 0, blockSize: 16, hessianScale: 2 };
  return {
    op: OPTQ_SOLVE_OP, dtype: "f32", label: `W ${fmt([out, inF])} ${bits}-bit group ${groupSize}${symmetric ? " sym" : ""}${actOrder ? " act-order" : ""}, diagonal H`,
    kernels: [OPTQ_SOLVE_OP], exact: true,
    inputs: (rng) => {
      // distinct diagonal entries: act-order's permutation is unambiguous
      const d = rng.uniform(inF, 0.5, 4);
      const h = new Float64Array(inF * inF);
      for (let i = 0; i < inF; i++) h[i * inF + i] = d[i]! + i * 1e-3;
      return [input([out, inF], "f32", rng.uniform(count([out, inF]))), input([inF, inF], "f64", h)];
    },
    // Only host backends have the kernel; elsewhere @modulora/core solves on a host copy, and so does the case.
    forward: ([w, h], device) =>
      hasKernel(OPTQ_SOLVE_OP, device)
        ? (getKernel<OptqSolveAttrs>(OPTQ_SOLVE_OP, device)([w!, h!], attrs) as Tensor[])
        : tidy(() => getKernel<OptqSolveAttrs>(OPTQ_SOLVE_OP, "cpu")([w!.to("cpu"), h!.to("cpu")], attrs) as Tensor[]),
    reference: ([w, h]) => {
      const diag = Float64Array.from({ length: inF }, (_, i) => h![i * inF + i]!);
      return reference(w!, diag, out, inF, attrs);
    },
  };
});
