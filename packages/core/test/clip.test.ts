// The gradient norm over the fused gradNormStats op: the same values as the composed formula it
// replaced (Σ sum(g²) per gradient, added in f64), the finiteness probe, the extra value read in
// the same transfer, and clipping.
import { describe, expect, it } from "vitest";
import { cast, square, sum, tensor, transpose, type Tensor } from "@modulora/tensor";
import { clipGradNorm, gradNorm, gradNormChecked, gradsNonFinite } from "../src/index.js";

function param(values: number[], shape: number[], dtype: "f32" | "f64" | "bf16" = "f32", grad?: Tensor): Tensor {
  const p = tensor(values, shape, { dtype: dtype === "bf16" ? "f32" : dtype, requiresGrad: true });
  p.grad = grad ?? tensor(values.map((v) => v * 0.5 - 0.25), shape, { dtype });
  return p;
}

/** The old formula: each gradient's sum of squares, cast to f64 and added. */
function oldNormSquared(params: readonly Tensor[]): number {
  let s = 0;
  for (const p of params) if (p.grad) s += cast(sum(square(p.grad)), "f64").dataSync()[0]!;
  return s;
}

describe("gradNorm over gradNormStats", () => {
  const vals = (n: number, k: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + k) * 1.5);

  it("equals the composed formula (f32, f64, bf16 and transposed gradients)", () => {
    const params = [
      param(vals(17, 1), [17]),
      param(vals(12, 2), [3, 4], "f64"),
      param(vals(10, 3), [10], "bf16"),
      param(vals(6, 4), [3, 2], "f32", transpose(tensor(vals(6, 5), [2, 3]), 0, 1)),
    ];
    const noGradParam = tensor([1, 2], [2], { requiresGrad: true });
    const all = [...params, noGradParam];
    const n = gradNorm(all);
    // The old formula rounded the bf16 squares and their sum to bf16 (≈ 2^-8 each); the fused op
    // accumulates in f64, so it matches the old value to bf16 accuracy and the exact f64 sum tightly.
    const old = oldNormSquared(params);
    expect(Math.abs(n * n - old) / old).toBeLessThan(2e-3);
    let exact = 0;
    for (const p of params) for (const v of cast(p.grad!, "f64").dataSync()) exact += v * v;
    expect(Math.abs(n * n - exact) / exact).toBeLessThan(1e-14);
    // Without the bf16 gradient the old f32/f64 formula agrees to f32 accuracy.
    const wide = [params[0]!, params[1]!, params[3]!];
    expect(Math.abs(gradNorm(wide) ** 2 - oldNormSquared(wide)) / oldNormSquared(wide)).toBeLessThan(1e-6);
    expect(gradsNonFinite(all)).toBe(false);
  });

  it("reads extra in the same call and reports non-finite gradients", () => {
    const p = param([1, 2, 3], [3]);
    const r = gradNormChecked([p], tensor([2.5]));
    expect(r.value).toBe(2.5);
    expect(r.finite).toBe(true);
    expect(r.norm).toBeCloseTo(Math.sqrt(0.25 ** 2 + 0.75 ** 2 + 1.25 ** 2), 6);
    const bad = param([1, 2], [2], "f32", tensor([1, Infinity]));
    expect(gradNormChecked([bad, p]).finite).toBe(false);
    expect(gradsNonFinite([bad])).toBe(true);
  });

  it("is 0 without gradients, extra still read", () => {
    const q = tensor([1, 2], [2], { requiresGrad: true });
    expect(gradNorm([q])).toBe(0);
    expect(gradNormChecked([q], tensor([7])).value).toBe(7);
  });

  it("clipGradNorm scales to maxNorm", () => {
    const p = param([3, 4, 5], [3]);
    const before = clipGradNorm([p], 0.1);
    expect(before).toBeGreaterThan(0.1);
    expect(gradNorm([p])).toBeCloseTo(0.1 * before / (before + 1e-6), 6);
  });
});
