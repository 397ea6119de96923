// Cross-entropy (with ignoreIndex and every reduction), softmax and logSoftmax.
import { crossEntropy, logSoftmax, softmax, type DType, type CrossEntropyReduction } from "../../index.js";
import { crossEntropyRowsRef, softmaxRef } from "../reference.js";
import type { ConformanceCase } from "../types.js";
import { count, fmt, input, ints, perDType } from "./common.js";

interface CrossEntropyRow {
  shape: number[];
  reduction: CrossEntropyReduction;
  ignoreIndex?: number;
  /** Rows whose target is set to the ignore index. */
  ignored: number[];
  /** Logits are uniform in ±spread (default 4). */
  spread?: number;
}

const CE_ROWS: CrossEntropyRow[] = [
  { shape: [5, 17], reduction: "mean", ignored: [2] },
  { shape: [3, 4099], reduction: "mean", ignored: [] },
  { shape: [2, 3, 7], reduction: "sum", ignored: [0, 4] },
  { shape: [6, 33], reduction: "none", ignored: [1, 5] },
  { shape: [4, 5], reduction: "mean", ignoreIndex: 0, ignored: [0, 1, 2, 3] }, // every row ignored: 0, gradient 0
  { shape: [1, 1], reduction: "mean", ignored: [] },
  { shape: [0, 9], reduction: "sum", ignored: [] },
  // exp(±300) overflows f32 unless stabilised. Forward only: the gradient p − 1 at a saturated
  // target cancels, and the conditioning would set its error, not the kernel.
  { shape: [4, 33], reduction: "mean", ignored: [], spread: 300 },
];

function crossEntropyCase(dtype: DType, r: CrossEntropyRow): ConformanceCase {
  const V = r.shape[r.shape.length - 1]!;
  const lead = r.shape.slice(0, -1);
  const n = count(lead);
  const ignoreIndex = r.ignoreIndex ?? -100;
  return {
    op: "crossEntropy", dtype, label: `${fmt(r.shape)} ${r.reduction} ignored ${r.ignored.length}/${n}${r.spread ? ` logits ±${r.spread}` : ""}`,
    kernels: ["crossEntropy", "crossEntropyGrad"], ulps: 16, depth: V * (r.reduction === "none" ? 1 : n),
    gradDepth: V,
    inputs: (rng) => {
      const t = rng.ints(n, 0, V);
      for (const i of r.ignored) t[i] = ignoreIndex;
      if (ignoreIndex >= 0) for (let i = 0; i < n; i++) if (!r.ignored.includes(i) && t[i] === ignoreIndex) t[i] = (ignoreIndex + 1) % V;
      const spread = r.spread ?? 4;
      return [input(r.shape, dtype, rng.uniform(count(r.shape), -spread, spread), spread <= 4), ints(lead, t)];
    },
    forward: ([x, t]) => crossEntropy(x!, t!, { reduction: r.reduction, ignoreIndex }),
    reference: ([x, t]) => {
      const rows = crossEntropyRowsRef(x!, t!, V, ignoreIndex);
      if (r.reduction === "none") return rows;
      const total = rows.reduce((a, b) => a + b, 0);
      const used = t!.filter((v) => v !== ignoreIndex).length;
      return Float64Array.of(r.reduction === "sum" ? total : used ? total / used : 0);
    },
    referenceGrad: ([x, t], w) => {
      const used = t!.filter((v) => v !== ignoreIndex).length;
      const p = softmaxRef(x!, [n, V], 1, false);
      const g = new Float64Array(x!.length);
      for (let i = 0; i < n; i++) {
        if (t![i] === ignoreIndex) continue;
        const s = r.reduction === "none" ? w[i]! : r.reduction === "sum" ? w[0]! : w[0]! / used;
        for (let j = 0; j < V; j++) g[i * V + j] = s * (p[i * V + j]! - (j === t![i] ? 1 : 0));
      }
      return [g, null];
    },
  };
}

function softmaxCases(dtype: DType): ConformanceCase[] {
  // [shape, axis, spread of the inputs, -inf entries]: ±300 overflows exp in f32 unless the row max
  // is subtracted first; -inf entries (masked logits) must give probability 0 (log-probability -inf).
  // Saturated rows are checked forward only: their gradient y·(w − Σ w·y) cancels to nothing, and
  // that conditioning, not the kernel, would set the error.
  const rows: [number[], number, number, boolean][] = [
    [[3, 33], -1, 5, false], [[3, 4099], -1, 5, false], [[5, 3, 7], 1, 5, false], [[1, 1], -1, 5, false], [[0, 5], -1, 5, false],
    [[4, 33], -1, 300, false], [[4, 17], -1, 5, true],
  ];
  return (["softmax", "logSoftmax"] as const).flatMap((op) =>
    rows.map(([shape, axisArg, spread, masked]) => {
      const axis = axisArg < 0 ? shape.length + axisArg : axisArg;
      const n = shape[axis]!;
      const inner = count(shape.slice(axis + 1));
      const log = op === "logSoftmax";
      return {
        op, dtype, label: `${fmt(shape)} axis=${axisArg}${spread !== 5 ? ` values ±${spread}` : ""}${masked ? " with -inf" : ""}`,
        // exp's condition number is |x − max| (up to 600 in the ±300 rows): the inputs' own rounding grows by it.
        kernels: [op, `${op}Grad`], ulps: spread > 5 ? 64 : 16, depth: n,
        gradUlps: 32, // the backward subtracts a row sum from w (softmax: w − Σ w·y), which cancels
        inputs: (rng) => {
          const x = rng.uniform(count(shape), -spread, spread);
          // Every row keeps its first element finite.
          if (masked) for (let i = 0; i < x.length; i++) if (i % n !== 0 && rng.next() < 0.3) x[i] = -Infinity;
          return [input(shape, dtype, x, spread <= 5)];
        },
        forward: ([x]) => (log ? logSoftmax(x!, axisArg) : softmax(x!, axisArg)),
        reference: ([x]) => softmaxRef(x!, shape, axis, log),
        referenceGrad: ([x], w) => {
          // softmax: dx = y ∘ (w − Σ w∘y); logSoftmax: dx = w − softmax(x) · Σ w.
          const p = softmaxRef(x!, shape, axis, false);
          const g = new Float64Array(x!.length);
          for (let o = 0; o < count(shape.slice(0, axis)); o++) {
            for (let r = 0; r < inner; r++) {
              const at = (j: number) => o * n * inner + j * inner + r;
              let s = 0;
              for (let j = 0; j < n; j++) s += log ? w[at(j)]! : w[at(j)]! * p[at(j)]!;
              for (let j = 0; j < n; j++) g[at(j)] = log ? w[at(j)]! - p[at(j)]! * s : p[at(j)]! * (w[at(j)]! - s);
            }
          }
          return [g];
        },
      } satisfies ConformanceCase;
    }),
  );
}

/** Loss and softmax cases. */
export const LOSS_CASES: ConformanceCase[] = perDType((dtype) => [...CE_ROWS.map((r) => crossEntropyCase(dtype, r)), ...softmaxCases(dtype)]);
