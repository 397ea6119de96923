import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";

describe("memory scopes and counters", () => {
  it("tidy disposes what it made and did not return; returned tensors survive", () => {
    const before = T.memory();
    const kept = T.tidy(() => {
      const a = T.ones([100]);
      const b = T.mul(a, 2);
      T.add(b, 1);
      return { result: T.sum(b), list: [T.zeros([3])] };
    });
    expect(kept.result.item()).toBe(200);
    const mid = T.memory();
    expect(mid.tensors).toBe(before.tensors + 2);
    T.dispose(kept);
    const after = T.memory();
    expect(after.tensors).toBe(before.tensors);
    expect(after.bytes).toBe(before.bytes);
    expect(after.storages).toBe(before.storages);
  });
  it("nested tidy moves returned tensors to the enclosing scope; keep() exempts", () => {
    const before = T.memory().tensors;
    let kept: T.Tensor | undefined;
    T.tidy(() => {
      const inner = T.tidy(() => T.ones([4]));
      kept = T.keep(T.mul(inner, 3));
    });
    expect(T.memory().tensors).toBe(before + 1);
    expect(kept!.toArray()).toEqual([3, 3, 3, 3]);
    kept!.dispose();
    expect(T.memory().tensors).toBe(before);
  });
  it("tidy cleans up when the function throws, and refuses async functions", () => {
    const before = T.memory().tensors;
    expect(() =>
      T.tidy(() => {
        T.ones([10]);
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(T.memory().tensors).toBe(before);
    expect(() => T.tidy(async () => T.ones([1]))).toThrow(/returned a Promise/);
    expect(T.memory().tensors).toBe(before);
  });
  it("views share storage and keep it alive until the last handle goes", () => {
    const before = T.memory();
    const x = T.ones([4, 4]);
    const v = T.transpose(x);
    expect(T.memory().storages).toBe(before.storages + 1);
    x.dispose();
    expect(v.toArray().length).toBe(16);
    expect(T.memory().bytes).toBe(before.bytes + 64);
    v.dispose();
    expect(T.memory().bytes).toBe(before.bytes);
    expect(T.memory().nativeBytes - T.memory().scratchBytes).toBe(before.nativeBytes - before.scratchBytes);
  });
  it("a forward, backward and optimizer update inside tidy leave memory where it started", () => {
    const w = T.randn([16, 8], { seed: 1, requiresGrad: true });
    const b = T.zeros([8], { requiresGrad: true });
    const opt = new T.AdamW([w, b], { lr: 1e-2 });
    const before = T.memory();
    let scratchAfterFirst = 0;
    for (let step = 0; step < 3; step++) {
      T.tidy(() => {
        const x = T.randn([4, 16], { seed: 10 + step });
        const y = T.tanh(T.add(T.matmul(x, w), b));
        const loss = T.mean(T.square(y));
        T.backward(loss);
        opt.step();
        opt.zeroGrad();
      });
      const now = T.memory();
      expect(now.tensors).toBe(before.tensors);
      expect(now.bytes).toBe(before.bytes);
      // Native storage is back where it was; kernel scratch (GEMM packing buffers kept per
      // thread) may be allocated by the first step but must not grow after it.
      expect(now.nativeBytes - now.scratchBytes).toBe(before.nativeBytes - before.scratchBytes);
      if (step === 0) scratchAfterFirst = now.scratchBytes;
      else expect(now.scratchBytes).toBe(scratchAfterFirst);
    }
    opt.dispose();
    T.dispose([w, b]);
  });
  it("peak bytes are tracked and can be reset", () => {
    T.resetPeakMemory();
    const base = T.memory();
    T.tidy(() => T.zeros([1024]));
    const m = T.memory();
    expect(m.peakBytes).toBeGreaterThanOrEqual(base.bytes + 4096);
    expect(m.nativePeakBytes).toBeGreaterThanOrEqual(base.nativeBytes + 4096);
    T.resetPeakMemory();
    expect(T.memory().peakBytes).toBe(T.memory().bytes);
  });
  it("disposed tensors are refused by every op with the op name", () => {
    const x = T.ones([2, 3]);
    x.dispose();
    expect(() => T.add(x, x)).toThrow(/^add: tensor #\d+ \[2,3\] f32 was disposed/);
    expect(() => T.matmul(x, x)).toThrow(/matmul: .*disposed/);
    expect(() => x.toArray()).toThrow(/disposed/);
    x.dispose(); // idempotent
  });
});
