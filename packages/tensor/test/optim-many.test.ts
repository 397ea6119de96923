// adamwStepMany (the multi-tensor AdamW step AdamW.step() uses) and gradNormStats (the fused
// gradient norm): bit-for-bit equality with the per-tensor step, the old composed norm, the checks.
import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";
import { rnd, size } from "./ref.js";

const HYPER = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
const SHAPES = [[17], [3, 33], [1], [0], [2, 5, 7]];

function group(shape: number[], seed: number, dtype: "f32" | "f64") {
  const n = size(shape);
  return [
    T.tensor(rnd(n, seed, -1, 1), shape, { dtype }),
    T.tensor(rnd(n, seed + 1, -1, 1), shape, { dtype }),
    T.tensor(rnd(n, seed + 2, -0.1, 0.1), shape, { dtype }),
    T.tensor(rnd(n, seed + 3, 0.001, 0.01), shape, { dtype }),
  ] as [T.Tensor, T.Tensor, T.Tensor, T.Tensor];
}

describe("adamwStepMany", () => {
  for (const dtype of ["f32", "f64"] as const) {
    it(`equals one adamwStep per tensor bit for bit (${dtype})`, () => {
      const a = SHAPES.map((s, i) => group(s, 10 * i + 1, dtype));
      const b = SHAPES.map((s, i) => group(s, 10 * i + 1, dtype));
      for (const step of [1, 2, 7]) {
        T.noGrad(() => {
          for (const [p, g, m, v] of a) T.adamwStep(p, g, m, v, { ...HYPER, step });
          T.adamwStepMany(b.map((x) => x[0]), b.map((x) => x[1]), b.map((x) => x[2]), b.map((x) => x[3]), { ...HYPER, step });
        });
      }
      a.forEach((ga, i) => {
        for (const j of [0, 2, 3]) expect(Array.from(b[i]![j]!.dataSync())).toEqual(Array.from(ga[j]!.dataSync()));
      });
    });
  }

  it("mixes dtypes across groups and accepts empty lists", () => {
    const [p32, g32, m32, v32] = group([5], 3, "f32");
    const [p64, g64, m64, v64] = group([4], 4, "f64");
    T.noGrad(() => T.adamwStepMany([p32, p64], [g32, g64], [m32, m64], [v32, v64], { ...HYPER, step: 1 }));
    expect(p32.dataSync()[0]).not.toBe(T.tensor(rnd(5, 3, -1, 1), [5]).dataSync()[0]);
    expect(() => T.adamwStepMany([], [], [], [], { ...HYPER, step: 1 })).not.toThrow();
  });

  it("refuses what adamwStep refuses, and lists of different lengths or repeated tensors", () => {
    const [p, g, m, v] = group([4], 5, "f32");
    expect(() => T.adamwStepMany([p], [g], [m], [], { ...HYPER, step: 1 })).toThrow(/same length/);
    expect(() => T.adamwStepMany([p], [g], [m], [v], { ...HYPER, step: 0 })).toThrow(/step must be/);
    const bf = T.tensor([1, 2, 3, 4], [4], { dtype: "bf16" });
    expect(() => T.adamwStepMany([bf], [bf], [bf], [bf], { ...HYPER, step: 1 })).toThrow(/bf16/);
    const [q, h, , vv] = group([4], 6, "f32");
    expect(() => T.adamwStepMany([p, q], [g, h], [m, m], [v, vv], { ...HYPER, step: 1 })).toThrow(/appears twice/);
  });

  it("AdamW.step() gives the per-parameter result", () => {
    const mk = () => SHAPES.filter((s) => size(s) > 0).map((s, i) => T.tensor(rnd(size(s), 40 + i, -1, 1), s, { requiresGrad: true }));
    const ps = mk();
    const ref = mk();
    const opt = new T.AdamW(ps, { ...HYPER });
    const ms = ref.map((p) => T.zerosLike(p));
    const vs = ref.map((p) => T.zerosLike(p));
    for (let step = 1; step <= 3; step++) {
      ps.forEach((p, i) => { p.grad = T.tensor(rnd(p.size, 100 * step + i, -1, 1), p.shape); });
      opt.step();
      T.noGrad(() => ref.forEach((p, i) => T.adamwStep(p, T.tensor(rnd(p.size, 100 * step + i, -1, 1), p.shape), ms[i]!, vs[i]!, { ...HYPER, step })));
    }
    ps.forEach((p, i) => expect(Array.from(p.dataSync())).toEqual(Array.from(ref[i]!.dataSync())));
  });
});

describe("gradNormStats", () => {
  it("equals the composed formula [Σ sum(g²), Σ sum(g − g)]", () => {
    const gs = [
      T.tensor(rnd(17, 1, -2, 2), [17]),
      T.tensor(rnd(99, 2, -2, 2), [3, 33], { dtype: "f64" }),
      T.tensor(rnd(40, 3, -2, 2), [5, 8], { dtype: "bf16" }),
      T.transpose(T.tensor(rnd(35, 4, -2, 2), [5, 7]), 0, 1),
      T.zeros([0, 4]),
    ];
    const [sq, probe] = Array.from(T.gradNormStats(gs).toFloat64Array());
    let old = 0;
    for (const g of gs) old += T.cast(T.sum(T.square(T.cast(g, "f64"))), "f64").dataSync()[0]!;
    expect(sq).toBeCloseTo(old, 10);
    expect(probe).toBe(0);
  });

  it("is NaN in the probe for a NaN or Inf, and [0, 0] for no gradients", () => {
    expect(Number.isNaN(T.gradNormStats([T.tensor([1, Infinity, 2])]).toFloat64Array()[1])).toBe(true);
    expect(Number.isNaN(T.gradNormStats([T.tensor([1, 2]), T.tensor([NaN])]).toFloat64Array()[1])).toBe(true);
    const none = T.gradNormStats([]);
    expect(none.dtype).toBe("f64");
    expect(Array.from(none.toFloat64Array())).toEqual([0, 0]);
  });

  it("refuses integer tensors", () => {
    expect(() => T.gradNormStats([T.tensor([1, 2], [2], { dtype: "i32" })])).toThrow(/gradNormStats/);
  });
});
