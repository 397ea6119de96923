import { describe, expect, it } from "vitest";
import { tensorFrom, type Tensor } from "@modulora/tensor";
import { GradientBucketer, LocalGroup, averageGradients } from "../src/index.js";

// Deterministic pseudo-random values with long binary expansions, different per rank and tensor.
function values(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 3.7;
  });
}

// The reference: per element, the sum in rank order 0, 1, 2 in the dtype's precision, then / n.
function referenceMean(perRank: number[][], f32: boolean): number[] {
  const round = f32 ? Math.fround : (x: number) => x;
  return perRank[0]!.map((_, i) => {
    let acc = round(perRank[0]![i]!);
    for (let r = 1; r < perRank.length; r++) acc = round(acc + round(perRank[r]![i]!));
    return round(acc / perRank.length);
  });
}

const SIZES = [1, 7, 33, 100, 5, 16, 64];

describe("GradientBucketer", () => {
  it("plans buckets in reverse parameter order, capped by bytes, split by dtype", () => {
    const grads = [
      tensorFrom(new Float32Array(4)), tensorFrom(new Float32Array(3)), tensorFrom(new Float32Array(10)),
      tensorFrom(new Float64Array(2)), tensorFrom(new Float64Array(1)), tensorFrom(new Float32Array(2)),
    ];
    const plan = new GradientBucketer(grads, { bucketBytes: 32 });
    expect(plan.buckets.map((b) => ({ indices: b.indices, dtype: b.dtype, bytes: b.bytes }))).toEqual([
      { indices: [5], dtype: "f32", bytes: 8 },
      { indices: [4, 3], dtype: "f64", bytes: 24 },
      { indices: [2], dtype: "f32", bytes: 40 }, // larger than the cap: a bucket of its own
      { indices: [1, 0], dtype: "f32", bytes: 28 },
    ]);
  });

  it("refuses a missing gradient and a changed shape", async () => {
    expect(() => new GradientBucketer([tensorFrom(new Float32Array(1)), null as unknown as Tensor])).toThrow("gradient 1 is null; every parameter needs a gradient");
    const plan = new GradientBucketer([tensorFrom(new Float32Array(2))]);
    const [c] = LocalGroup.create(1);
    await expect(plan.average(c!, [tensorFrom(new Float32Array(3))])).rejects.toThrow("gradient 0 has shape [3], the plan [2]");
  });

  for (const dtype of ["f32", "f64"] as const) {
    for (const bucketBytes of [1, 40 * (dtype === "f32" ? 4 : 8), 1 << 20]) {
      it(`averageGradients over 3 ranks is bit-exact against the rank-order mean (${dtype}, bucketBytes ${bucketBytes})`, async () => {
        const ranks = LocalGroup.create(3);
        const data = ranks.map((c) => SIZES.map((n, i) => values(n, 1000 * c.rank + i + 1)));
        const Arr = dtype === "f32" ? Float32Array : Float64Array;
        const grads = data.map((perTensor) => perTensor.map((v, i) => tensorFrom(new Arr(v), { shape: i === 3 ? [10, 10] : [v.length] })));
        await Promise.all(ranks.map((c) => averageGradients(c, grads[c.rank]!, { bucketBytes })));
        let maxDiff = 0;
        SIZES.forEach((_, i) => {
          const want = referenceMean(data.map((d) => d[i]!), dtype === "f32");
          for (const g of grads) {
            const got = g[i]!.toArray();
            got.forEach((x, k) => { maxDiff = Math.max(maxDiff, Math.abs(x - want[k]!)); });
            expect(got).toEqual(want);
          }
          expect(grads[0]![i]!.shape).toEqual(i === 3 ? [10, 10] : [SIZES[i]]);
        });
        console.log(`${dtype} bucketBytes ${bucketBytes}: max |diff| ${maxDiff}`);
      });
    }
  }
});
