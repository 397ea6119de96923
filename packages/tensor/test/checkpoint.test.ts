import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";
import { gradcheck } from "../src/testing.js";
import { rnd, size } from "./ref.js";

function param(shape: number[], seed: number) {
  return T.tensor(rnd(size(shape), seed), shape, { dtype: "f64", requiresGrad: true });
}

// A small residual MLP block whose weights are closures, as model blocks are.
function makeBlock(w1: T.Tensor, w2: T.Tensor) {
  return (x: T.Tensor) => T.add(x, T.matmul(T.tanh(T.matmul(x, w1)), w2));
}

describe("activation checkpointing", () => {
  it("gives bit-identical gradients to the plain block, for inputs and closure parameters", () => {
    const w1 = param([6, 10], 1);
    const w2 = param([10, 6], 2);
    const block = makeBlock(w1, w2);
    const grads = (useCheckpoint: boolean) => {
      const x = param([4, 6], 3);
      T.tidy(() => {
        let h = x;
        for (let i = 0; i < 3; i++) h = useCheckpoint ? T.checkpoint(block, [h]) : block(h);
        T.backward(T.sum(T.square(h)));
      });
      const out = [x.grad!.toArray(), w1.grad!.toArray(), w2.grad!.toArray()];
      x.dispose();
      w1.zeroGrad();
      w2.zeroGrad();
      return out;
    };
    const plain = grads(false);
    const ckpt = grads(true);
    expect(ckpt).toEqual(plain);
    T.dispose([w1, w2]);
  });
  it("a bf16 block carries gradients through checkpoint() like the plain block, bit for bit", () => {
    const w = T.tensorFrom([0.5, -1.25, 2, 0.75], { shape: [2, 2], dtype: "bf16" });
    const block = (h: T.Tensor) => T.mul(T.matmul(h, w), h);
    const grads = (useCheckpoint: boolean) => {
      const x = T.tensorFrom([1, 2, -3, 0.5, 0.25, -1], { shape: [3, 2], dtype: "bf16" }).requireGrad();
      T.tidy(() => {
        const h = useCheckpoint ? T.checkpoint((inp) => block(inp!), [x]) : block(x);
        expect(h.requiresGrad).toBe(true);
        T.backward(T.sum(h));
      });
      expect(x.grad!.dtype).toBe("bf16");
      const g = Array.from(x.grad!.dataSync());
      x.dispose();
      return g;
    };
    expect(grads(true)).toEqual(grads(false));
    w.dispose();
  });
  it("keeps only the inputs: intermediate activations are not held by the tape", () => {
    const w1 = T.randn([64, 512], { seed: 1, requiresGrad: true });
    const w2 = T.randn([512, 64], { seed: 2, requiresGrad: true });
    const block = makeBlock(w1, w2);
    const held = (useCheckpoint: boolean) =>
      T.tidy(() => {
        const x = T.randn([128, 64], { seed: 3, requiresGrad: true });
        const before = T.memory().bytes;
        // what outlives the forward's own scope is what the tape keeps for backward
        const y = T.tidy(() => (useCheckpoint ? T.checkpoint(block, [x]) : block(x)));
        const loss = T.sum(y);
        const bytes = T.memory().bytes - before;
        T.backward(loss);
        return bytes;
      });
    const plain = held(false);
    const ckpt = held(true);
    // plain keeps tanh input/output ([128,512] f32 each); checkpoint keeps x and y only
    expect(plain - ckpt).toBeGreaterThanOrEqual(2 * 128 * 512 * 4);
    T.dispose([w1, w2]);
  });
  it("passes gradcheck and reaches parameters even when the input does not require grad", () => {
    const w1 = param([3, 5], 4);
    const w2 = param([5, 3], 5);
    const x = T.tensor(rnd(6, 6), [2, 3], { dtype: "f64" });
    gradcheck((a, b) => T.checkpoint(makeBlock(a!, b!), [x]), [w1, w2]);
    const y = param([2, 3], 7);
    gradcheck((inp) => T.checkpoint(makeBlock(w1, w2), [inp!]), [y]);
    T.dispose([w1, w2, x, y]);
  });
  it("is a plain call under noGrad and leaves memory where it started", () => {
    const w1 = param([3, 5], 4);
    const w2 = param([5, 3], 5);
    const before = T.memory();
    T.tidy(() => {
      const x = param([2, 3], 8);
      const out = T.noGrad(() => T.checkpoint(makeBlock(w1, w2), [x]));
      expect(out.requiresGrad).toBe(false);
      T.backward(T.sum(T.checkpoint(makeBlock(w1, w2), [x])));
      w1.zeroGrad();
      w2.zeroGrad();
    });
    expect(T.memory().tensors).toBe(before.tensors);
    expect(T.memory().bytes).toBe(before.bytes);
    T.dispose([w1, w2]);
  });
});
