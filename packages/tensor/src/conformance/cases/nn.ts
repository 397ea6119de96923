// The fused ops of a LLaMA block: RMSNorm, RoPE, SwiGLU, dropout, the AdamW step.
import { noGrad, adamwStep, adamwStepMany, dropout, gradNormStats, dropoutMask, rmsnorm, rope, swiglu, slice, type DType, type RopeOptions } from "../../index.js";
import { rmsnormRef, ropeInvFreqRef, ropeRef } from "../reference.js";
import type { ConformanceCase } from "../types.js";
import { atDType, count, fmt, input, ints, perDType } from "./common.js";

function rmsnormCases(dtype: DType): ConformanceCase[] {
  const eps = 1e-5;
  // [shape, magnitude of x]: 1e20 squares past the f32 range (the statistics run in f64), 1e-20 under it.
  const rows: [number[], number][] = [[[3, 17], 1], [[2, 3, 4099], 1], [[1, 1], 1], [[0, 8], 1], [[2, 33], 1e20], [[2, 33], 1e-20]];
  return rows.map(([shape, mag]) => {
    const d = shape[shape.length - 1]!;
    return {
      op: "rmsnorm", dtype, label: `${fmt(shape)}${mag !== 1 ? ` x ~${mag.toExponential()}` : ""}`, kernels: ["rmsnorm", "rmsnormGrad"], depth: d,
      gradDepth: Math.max(d, count(shape) / d), // dweight sums over the rows
      // With D = 1, y = x·w/sqrt(x² + eps) saturates at ±w for |x| ≫ sqrt(eps) and dx cancels down
      // to eps/x² of its terms; inputs of order sqrt(eps) keep that row's gradient well-conditioned.
      inputs: (rng) => [input(shape, dtype, rng.uniform(count(shape), -2, 2).map((v) => v * mag * (d === 1 ? 3e-3 : 1)), true), input([d], dtype, rng.uniform(d, 0.5, 1.5), true)],
      forward: ([x, w]) => rmsnorm(x!, w!, eps),
      reference: ([x, w]) => rmsnormRef(x!, w!, eps),
      referenceGrad: ([x, w], g) => {
        // y_j = x_j·r·w_j with r = (mean(x²) + eps)^(-1/2):
        // dx_j = r·w_j·g_j − r³/D · x_j · Σ_k g_k w_k x_k;  dw_j = Σ_rows g_j x_j r.
        const dx = new Float64Array(x!.length);
        const dw = new Float64Array(d);
        for (let r = 0; r < x!.length / d; r++) {
          let ss = 0;
          let dot = 0;
          for (let j = 0; j < d; j++) {
            ss += x![r * d + j]! ** 2;
            dot += g[r * d + j]! * w![j]! * x![r * d + j]!;
          }
          const rs = 1 / Math.sqrt(ss / d + eps);
          for (let j = 0; j < d; j++) {
            dx[r * d + j] = rs * w![j]! * g[r * d + j]! - (rs ** 3 / d) * x![r * d + j]! * dot;
            dw[j]! += g[r * d + j]! * x![r * d + j]! * rs;
          }
        }
        return [dx, dw];
      },
    } satisfies ConformanceCase;
  });
}

function ropeCases(dtype: DType): ConformanceCase[] {
  const llama3 = { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } as const;
  // [shape, positions shape, options, label, slice of H (a strided view) or none]
  const rows: [number[], number[], RopeOptions, string, [number, number] | null][] = [
    [[1, 5, 3, 8], [5], {}, "theta=1e4", null],
    [[2, 3, 2, 16], [2, 3], { theta: 500000 }, "theta=5e5 positions [B,T]", null],
    [[1, 7, 2, 16], [7], { theta: 500000, scaling: llama3 }, "llama3 scaling", null],
    [[1, 4, 4, 8], [4], {}, "strided view H 1:3", [1, 3]],
    [[1, 1, 1, 2], [1], {}, "one pair", null],
  ];
  return rows.map(([shape, ps, options, what, hs]) => {
    const [B, T, H, D] = shape as [number, number, number, number];
    const inv = ropeInvFreqRef(D, options.theta ?? 10000, options.scaling && { factor: 8, low: 1, high: 4, orig: 64 });
    const viewShape = hs ? [B, T, hs[1] - hs[0], D] : shape;
    const pick = (x: Float64Array) => (hs ? x.filter((_, i) => { const h = Math.floor(i / D) % H; return h >= hs[0] && h < hs[1]; }) : x);
    return {
      op: "rope", dtype, label: `${fmt(shape)} ${what}`, kernels: ["rope"],
      ulps: 16, // angles up to ~100 rad: cos/sin of the f64 angle, rounded once
      inputs: (rng) => [input(shape, dtype, rng.uniform(count(shape)), true), ints(ps, rng.ints(count(ps), 0, 100))],
      forward: ([x, p]) => rope(hs ? slice(x!, [0, 0, hs[0]], [B, T, hs[1]]) : x!, p!, options),
      reference: ([x, p]) => ropeRef(pick(x!), viewShape, p!, inv),
      referenceGrad: ([, p], w) => {
        const g = ropeRef(w, viewShape, p!.map((v) => -v), inv); // dx = R(−θ)·dy
        if (!hs) return [g, null];
        const full = new Float64Array(count(shape));
        let k = 0;
        for (let i = 0; i < full.length; i++) {
          const h = Math.floor(i / D) % H;
          if (h >= hs[0] && h < hs[1]) full[i] = g[k++]!;
        }
        return [full, null];
      },
    } satisfies ConformanceCase;
  });
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));

function swigluCases(dtype: DType): ConformanceCase[] {
  return [[3, 17], [4099], [0, 3], [1]].map((shape) => ({
    op: "swiglu", dtype, label: fmt(shape), kernels: ["swiglu", "swigluGrad"], ulps: 16,
    inputs: (rng) => [input(shape, dtype, rng.uniform(count(shape), -4, 4), true), input(shape, dtype, rng.uniform(count(shape), -2, 2), true)],
    forward: ([g, u]) => swiglu(g!, u!),
    reference: ([g, u]) => g!.map((v, i) => v * sig(v) * u![i]!),
    referenceGrad: ([g, u], w) => [
      g!.map((v, i) => w[i]! * u![i]! * (sig(v) + v * sig(v) * (1 - sig(v)))),
      g!.map((v, i) => w[i]! * v * sig(v)),
    ],
  }) satisfies ConformanceCase);
}

function dropoutCases(dtype: DType): ConformanceCase[] {
  // [shape, p, seed, offset]
  const rows: [number[], number, number, number][] = [
    [[3, 33], 0.1, 7, 0],
    [[4099], 0.5, 1234, 12],
    [[1], 0.3, 5, 0],
    [[0], 0.3, 5, 0],
  ];
  return rows.map(([shape, p, seed, offset]) => {
    const keep = (n: number) => dropoutMask(n, p, seed, offset); // the TS reference of the mask
    return {
      op: "dropout", dtype, label: `${fmt(shape)} p=${p} seed=${seed} offset=${offset}`, kernels: ["dropout"], ulps: 4, // two roundings: the scale 1/(1 − p) and the product
      // Inputs away from zero: a wrong mask element shows as an error of order 1.
      inputs: (rng) => [input(shape, dtype, rng.awayFromZero(count(shape), 0.5, 1), true)],
      forward: ([x]) => dropout(x!, p, { seed, offset }),
      reference: ([x]) => { const m = keep(x!.length); return x!.map((v, i) => (m[i] ? v / (1 - p) : 0)); },
      referenceGrad: (_, w) => { const m = keep(w.length); return [w.map((v, i) => (m[i] ? v / (1 - p) : 0))]; },
    } satisfies ConformanceCase;
  });
}

function adamwCases(dtype: DType): ConformanceCase[] {
  const hyper = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
  return ([[[17], 1], [[3, 33], 5], [[1], 2]] as [number[], number][]).map(([shape, step]) => ({
    op: "adamwStep", dtype, label: `${fmt(shape)} step=${step}`, kernels: ["adamwStep"], ulps: 16,
    inputs: (rng) => {
      const n = count(shape);
      return [
        input(shape, dtype, rng.uniform(n)),
        input(shape, dtype, rng.uniform(n)),
        input(shape, dtype, step === 1 ? new Float64Array(n) : rng.uniform(n, -0.1, 0.1)),
        input(shape, dtype, step === 1 ? new Float64Array(n) : rng.uniform(n, 0.001, 0.01)),
      ];
    },
    forward: ([p, g, m, v]) => {
      noGrad(() => adamwStep(p!, g!, m!, v!, { ...hyper, step }));
      return [p!, m!, v!];
    },
    reference: ([p, g, m, v]) => {
      const { lr, beta1, beta2, eps, weightDecay } = hyper;
      const po = new Float64Array(p!.length), mo = new Float64Array(p!.length), vo = new Float64Array(p!.length);
      for (let i = 0; i < p!.length; i++) {
        mo[i] = beta1 * m![i]! + (1 - beta1) * g![i]!;
        vo[i] = beta2 * v![i]! + (1 - beta2) * g![i]! ** 2;
        const mh = mo[i]! / (1 - beta1 ** step);
        const vh = vo[i]! / (1 - beta2 ** step);
        po[i] = p![i]! - lr * weightDecay * p![i]! - (lr * mh) / (Math.sqrt(vh) + eps);
      }
      return [po, mo, vo];
    },
  }) satisfies ConformanceCase);
}

/** The f64 reference of one AdamW step of `[p, g, m, v]`: `[p', m', v']`. */
function adamwRef(p: Float64Array, g: Float64Array, m: Float64Array, v: Float64Array, step: number): Float64Array[] {
  const { lr, beta1, beta2, eps, weightDecay } = ADAMW_HYPER;
  const po = new Float64Array(p.length), mo = new Float64Array(p.length), vo = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    mo[i] = beta1 * m[i]! + (1 - beta1) * g[i]!;
    vo[i] = beta2 * v[i]! + (1 - beta2) * g[i]! ** 2;
    const mh = mo[i]! / (1 - beta1 ** step);
    const vh = vo[i]! / (1 - beta2 ** step);
    po[i] = p[i]! - lr * weightDecay * p[i]! - (lr * mh) / (Math.sqrt(vh) + eps);
  }
  return [po, mo, vo];
}

const ADAMW_HYPER = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

/** adamwStepMany: several groups of different shapes (an empty one too) in one call. */
function adamwManyCases(dtype: DType): ConformanceCase[] {
  const rows: [number[][], number][] = [[[[17], [3, 33], [1]], 1], [[[4099], [0], [2, 5]], 3]];
  return rows.map(([shapes, step]) => ({
    op: "adamwStepMany", dtype, label: `${shapes.map(fmt).join(" ")} step=${step}`, kernels: ["adamwStepMany"], ulps: 16,
    inputs: (rng) => {
      const k = shapes.length;
      const all: ReturnType<typeof input>[] = new Array(4 * k);
      shapes.forEach((shape, i) => {
        const n = count(shape);
        all[i] = input(shape, dtype, rng.uniform(n));
        all[k + i] = input(shape, dtype, rng.uniform(n));
        all[2 * k + i] = input(shape, dtype, step === 1 ? new Float64Array(n) : rng.uniform(n, -0.1, 0.1));
        all[3 * k + i] = input(shape, dtype, step === 1 ? new Float64Array(n) : rng.uniform(n, 0.001, 0.01));
      });
      return all;
    },
    forward: (xs) => {
      const k = shapes.length;
      const [ps, gs, ms, vs] = [0, 1, 2, 3].map((j) => xs.slice(j * k, (j + 1) * k));
      noGrad(() => adamwStepMany(ps!, gs!, ms!, vs!, { ...ADAMW_HYPER, step }));
      return [...ps!, ...ms!, ...vs!];
    },
    reference: (xs) => {
      const k = shapes.length;
      const outs = shapes.map((_, i) => adamwRef(xs[i]!, xs[k + i]!, xs[2 * k + i]!, xs[3 * k + i]!, step));
      return [...outs.map((o) => o[0]!), ...outs.map((o) => o[1]!), ...outs.map((o) => o[2]!)];
    },
  }) satisfies ConformanceCase);
}

/** gradNormStats: [Σ g², Σ(g − g)] in f64 over several tensors (a transposed view and an empty one among them). */
function gradNormCases(dtype: DType): ConformanceCase[] {
  const rows: [number[][], boolean][] = [[[[17], [3, 33], [0, 4]], false], [[[4099], [5, 7]], true], [[[1]], false]];
  return rows.map(([shapes, transposed]) => {
    const total = shapes.reduce((a, s) => a + count(s), 0);
    return {
      op: "gradNormStats", dtype, label: `${shapes.map(fmt).join(" ")}${transposed ? " (last transposed)" : ""}`, kernels: ["gradNormStats"],
      depth: total, // one f64 sum over every element (the bound is at the case dtype's roundoff: loose for f64 sums of rounded inputs)
      inputs: (rng) => shapes.map((shape, i) => ({
        ...input(shape, dtype, rng.uniform(count(shape), -2, 2)),
        ...(transposed && i === shapes.length - 1 ? { layout: "transposed" as const } : {}),
      })),
      forward: (xs) => gradNormStats(xs),
      reference: (xs) => {
        let sq = 0;
        for (const x of xs) for (const v of x) sq += v * v;
        return Float64Array.of(sq, 0);
      },
    } satisfies ConformanceCase;
  });
}

/** RMSNorm, RoPE, SwiGLU, dropout and AdamW cases. */
export const NN_CASES: ConformanceCase[] = perDType((dtype) => [
  ...rmsnormCases(dtype),
  ...ropeCases(dtype),
  ...swigluCases(dtype),
  ...dropoutCases(dtype),
  ...(atDType("adamwStep", dtype) ? adamwCases(dtype) : []),
  ...(atDType("adamwStep", dtype) ? adamwManyCases(dtype) : []),
  ...gradNormCases(dtype),
]);
