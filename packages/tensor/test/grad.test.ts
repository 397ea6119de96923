import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";
import { gradcheck } from "../src/testing.js";
import { rnd, size } from "./ref.js";

function param(shape: number[], seed: number, lo = -1, hi = 1) {
  return T.tensor(rnd(size(shape), seed, lo, hi), shape, { dtype: "f64", requiresGrad: true });
}

function check(fn: (...xs: T.Tensor[]) => T.Tensor, inputs: T.Tensor[], opts?: Parameters<typeof gradcheck>[2]) {
  const before = T.memory().tensors;
  const r = gradcheck(fn, inputs, opts);
  expect(r.checked).toBeGreaterThan(0);
  expect(r.worstRatio).toBeLessThanOrEqual(1);
  expect(T.memory().tensors).toBe(before);
  T.dispose(inputs);
}

describe("gradcheck: binary ops with broadcasting", () => {
  const shapes: [number[], number[]][] = [[[3, 4], [3, 4]], [[3, 4], [4]], [[2, 1, 3], [4, 1]], [[], [2, 3]]];
  for (const op of ["add", "sub", "mul", "div", "maximum", "minimum", "pow"] as const)
    for (const [as, bs] of shapes)
      it(`${op} ${JSON.stringify(as)} ${JSON.stringify(bs)}`, () => {
        const a = param(as, 1, op === "pow" ? 0.5 : -1, 2);
        const b = param(bs, 2, op === "div" || op === "pow" ? 0.5 : -1, 2);
        check((x, y) => T.binary(op, x!, y!), [a, b]);
      });
});

describe("gradcheck: unary ops", () => {
  const positive = new Set(["log", "sqrt", "rsqrt", "reciprocal", "powScalar"]);
  for (const op of ["neg", "exp", "log", "sqrt", "rsqrt", "abs", "relu", "sigmoid", "tanh", "silu", "square", "reciprocal", "powScalar"] as const)
    it(op, () => {
      // keep away from the kinks of abs/relu at 0
      const x = positive.has(op) ? param([4, 5], 3, 0.2, 2) : T.tidy(() => {
        const r = param([4, 5], 3, 0.1, 2);
        const s = T.tensor(rnd(20, 9).map((v) => (v < 0 ? -1 : 1)), [4, 5], { dtype: "f64" });
        const y = T.noGrad(() => T.mul(r, s));
        y.requiresGrad = true;
        return y;
      });
      check((t) => T.unary(op, t!, 1.7), [x]);
    });
  it("scale", () => check((t) => T.scale(t!, -2.5, 1), [param([7], 4)]));
});

describe("gradcheck: reductions", () => {
  for (const op of ["sum", "max", "min"] as const)
    for (const axes of [undefined, [0], [1], [2], [0, 2], [1, 2]] as (number[] | undefined)[])
      for (const keep of [false, true])
        it(`${op} axes=${JSON.stringify(axes)} keepDims=${keep}`, () => check((t) => T.reduce(op, t!, axes, keep), [param([3, 4, 5], 5)]));
  it("mean", () => check((t) => T.mean(t!, [0, 2]), [param([3, 4, 5], 6)]));
  it("max with ties splits the gradient evenly", () => {
    const x = T.tensor([1, 3, 3, 2], [4], { dtype: "f64", requiresGrad: true });
    T.tidy(() => T.backward(T.max(x)));
    expect(x.grad!.toArray()).toEqual([0, 0.5, 0.5, 0]);
    x.dispose();
  });
});

describe("gradcheck: matmul", () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[3, 4], [4, 5], false, false], [[4, 3], [4, 5], true, false], [[3, 4], [5, 4], false, true], [[4, 3], [5, 4], true, true],
    [[2, 3, 4], [4, 2], false, false], [[3, 4], [2, 4, 5], false, false], [[2, 1, 3, 4], [3, 5, 4], false, true],
  ];
  for (const [as, bs, ta, tb] of cases)
    it(`${JSON.stringify(as)}·${JSON.stringify(bs)} transA=${ta} transB=${tb}`, () =>
      check((a, b) => T.matmul(a!, b!, { transA: ta, transB: tb }), [param(as, 7), param(bs, 8)]));
});

describe("gradcheck: shape and indexing ops", () => {
  it("reshape", () => check((t) => T.reshape(t!, [6, -1]), [param([2, 3, 4], 1)]));
  it("permute", () => check((t) => T.permute(t!, [2, 0, 1]), [param([2, 3, 4], 2)]));
  it("transpose then reshape (copy path)", () => check((t) => T.reshape(T.transpose(t!), [-1]), [param([3, 4], 3)]));
  it("slice", () => check((t) => T.slice(t!, [1, 0], [3, -1]), [param([4, 5], 4)]));
  it("concat", () => check((a, b) => T.concat([a!, b!], 1), [param([2, 3], 5), param([2, 2], 6)]));
  it("broadcastTo", () => check((t) => T.broadcastTo(t!, [2, 3, 4]), [param([3, 1], 7)]));
  it("gather with repeated indices (scatter-add backward)", () => {
    const idx = T.tensor(new Int32Array([2, 0, 2, 2]), [2, 2]);
    check((t) => T.gather(t!, idx, 0), [param([3, 4], 8)]);
    check((t) => T.gather(t!, idx, 1), [param([2, 3], 9)]);
    idx.dispose();
  });
  it("cast f64 -> f32 -> f64 passes gradients", () => check((t) => T.cast(T.cast(t!, "f32"), "f64"), [param([5], 10)], { atol: 1e-4, rtol: 1e-3, eps: 1e-3 }));
  it("a composite: softmax-cross-entropy-like expression", () =>
    check(
      (x, w) => {
        const logits = T.matmul(x!, w!);
        const m = T.max(logits, -1, true);
        const z = T.sub(logits, m);
        const lse = T.log(T.sum(T.exp(z), -1, true));
        return T.mean(T.sub(lse, T.slice(z, [0, 0], [undefined, 1])));
      },
      [param([4, 3], 11), param([3, 5], 12)],
    ));
});
