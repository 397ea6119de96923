// Shared helpers of the OPTQ tests: synthetic Hessians and quantities read from quantized weights.
import { keep, tensor, type Tensor } from "@modulora/tensor";
import type { CalibrationStats } from "@modulora/core";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const cache = new Map<number, Float64Array>();

/**
 * Σ xᵀx (f64 [n, n], unscaled, as the calibration driver hands it) of `m` rows x whose columns are
 * correlated (each a mix of its own and its two neighbours' N(0, 1) noise) and of varied scale.
 */
export function correlatedHessian(n: number, m = 512): Float64Array {
  const hit = cache.get(n * 100_000 + m);
  if (hit) return hit;
  const u = rng(n + m);
  const g = () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  const z = Float64Array.from({ length: m * n }, g);
  const x = new Float64Array(m * n);
  for (let t = 0; t < m; t++)
    for (let j = 0; j < n; j++) {
      let s = z[t * n + j]!;
      if (j > 0) s += 0.9 * z[t * n + j - 1]!;
      if (j > 1) s += 0.6 * z[t * n + j - 2]!;
      x[t * n + j] = s * (0.3 + (j % 11) / 5);
    }
  const h = new Float64Array(n * n);
  for (let t = 0; t < m; t++) {
    const row = x.subarray(t * n, (t + 1) * n);
    for (let i = 0; i < n; i++) {
      const xi = row[i]!;
      const hi = i * n;
      for (let j = 0; j < n; j++) h[hi + j] += xi * row[j]!;
    }
  }
  cache.set(n * 100_000 + m, h);
  return h;
}

const tensors = new Map<number, Tensor>();

/** Makes the Hessian tensors of these input sizes now (they are shared and never freed). */
export function prepareHessians(sizes: readonly number[], m = 512): void {
  for (const n of sizes) if (!tensors.has(n)) tensors.set(n, keep(tensor(Float64Array.from(correlatedHessian(n, m)), [n, n], { dtype: "f64" })));
}

/**
 * Calibration statistics with a correlated Hessian for a weight [out, in]. The tensor is shared
 * between calls (made by {@link prepareHessians} before the tests, so the conformance suite's
 * memory accounting sees only the quantized weight); the plugin does not modify it.
 */
export function correlatedStats(w: Tensor, m = 512): CalibrationStats {
  const n = w.shape.length === 2 ? w.shape[1]! : 1;
  prepareHessians([n], m);
  return { hessian: tensors.get(n)!, samples: m };
}

/** Statistics with H = Σ xᵀx = c·I. */
export function identityStats(n: number, c = 1): CalibrationStats {
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) h[i * n + i] = c;
  return { hessian: tensor(h, [n, n], { dtype: "f64" }), samples: 2 };
}
