import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";
import { gradcheck } from "../src/testing.js";

describe("autograd tape", () => {
  it("accumulates gradients across backward calls and into shared inputs", () => {
    const x = T.tensor([1, 2, 3], [3], { dtype: "f64", requiresGrad: true });
    T.tidy(() => T.backward(T.sum(T.mul(x, x))));
    expect(x.grad!.toArray()).toEqual([2, 4, 6]);
    T.tidy(() => T.backward(T.sum(T.add(x, x))));
    expect(x.grad!.toArray()).toEqual([4, 6, 8]);
    x.zeroGrad();
    expect(x.grad).toBeNull();
    x.dispose();
  });
  it("noGrad records nothing; detach cuts the graph", () => {
    const x = T.tensor([1, 2], [2], { requiresGrad: true });
    T.tidy(() => {
      const y = T.noGrad(() => T.mul(x, 2));
      expect(y.requiresGrad).toBe(false);
      const z = T.mul(x.detach(), 2);
      expect(z.requiresGrad).toBe(false);
      expect(() => T.backward(T.sum(z))).toThrow(/backward: this tensor does not require grad/);
    });
    x.dispose();
  });
  it("a second backward through freed saved tensors fails unless retainGraph", () => {
    const x = T.tensor([1, 2], [2], { dtype: "f64", requiresGrad: true });
    T.tidy(() => {
      const l = T.sum(T.mul(x, x));
      T.backward(l, { retainGraph: true });
      T.backward(l);
      expect(x.grad!.toArray()).toEqual([4, 8]);
      expect(() => T.backward(l)).toThrow(/already freed/);
    });
    x.dispose();
  });
  it("detects a saved tensor modified in place", () => {
    const x = T.tensor([1, 2], [2], { dtype: "f64", requiresGrad: true });
    T.tidy(() => {
      const y = T.mul(x, x);
      T.noGrad(() => T.scaleInPlace(x, 2));
      expect(() => T.backward(T.sum(y))).toThrow(/modified in place/);
    });
    x.dispose();
  });
  it("non-scalar outputs need an explicit grad", () => {
    const x = T.tensor([1, 2], [2], { dtype: "f64", requiresGrad: true });
    T.tidy(() => {
      const y = T.scale(x, 3);
      expect(() => T.backward(y)).toThrow(/pass \{ grad \}/);
      T.backward(y, { grad: T.tensor([1, 10], [2], { dtype: "f64" }) });
    });
    expect(x.grad!.toArray()).toEqual([3, 30]);
    x.dispose();
  });
  it("in-place updates of parameters are refused outside noGrad", () => {
    const p = T.zeros([2], { requiresGrad: true });
    expect(() => T.addInPlace(p, T.ones([2]))).toThrow(/addInPlace: in-place update of a tensor that requires grad/);
    T.noGrad(() => T.tidy(() => T.addInPlace(p, T.ones([2]), 0.5)));
    expect(p.toArray()).toEqual([0.5, 0.5]);
    p.dispose();
  });
  it("onLeafReady reports each leaf once, as soon as its gradient is final, last layer first", () => {
    // A 3-layer chain h = tanh(h·w_k): the last layer's weight gets its whole gradient first.
    const ws = [0.5, -0.3, 0.8].map((v, k) => T.tensor([v, v + 0.1, v - 0.2, v * 2], [2, 2], { dtype: "f64", requiresGrad: true }));
    const x = T.tensor([1, -2, 0.5, 3], [2, 2], { dtype: "f64" });
    // w1 also feeds the loss directly, through a branch the backward reaches early: it is final only after layer 1's matmul.
    const seen: { k: number; grad: number[] }[] = [];
    T.tidy(() => {
      let h = x;
      for (const w of ws) h = T.tanh(T.matmul(h, w));
      const loss = T.add(T.sum(T.mul(h, h)), T.sum(T.mul(ws[0]!, ws[0]!)));
      T.backward(loss, { onLeafReady: (leaf) => seen.push({ k: ws.indexOf(leaf), grad: Array.from(leaf.grad!.toFloat64Array()) }) });
    });
    expect(seen.map((s) => s.k)).toEqual([2, 1, 0]);
    // What each callback saw is the gradient the whole backward ends with (nothing was added later).
    for (const s of seen) expect(s.grad).toEqual(Array.from(ws[s.k]!.grad!.toFloat64Array()));
    // Against a second backward without the callback (same graph, fresh gradients).
    const ref = ws.map((w) => Array.from(w.grad!.toFloat64Array()));
    ws.forEach((w) => w.zeroGrad());
    T.tidy(() => {
      let h = x;
      for (const w of ws) h = T.tanh(T.matmul(h, w));
      T.backward(T.add(T.sum(T.mul(h, h)), T.sum(T.mul(ws[0]!, ws[0]!))));
    });
    expect(ws.map((w) => Array.from(w.grad!.toFloat64Array()))).toEqual(ref);
    // A leaf that is the root itself, and a leaf the loss does not reach, are handled.
    const lone = T.tensor([2], [1], { dtype: "f64", requiresGrad: true });
    const unused = T.tensor([1], [1], { dtype: "f64", requiresGrad: true });
    const got: T.Tensor[] = [];
    T.tidy(() => T.backward(T.sum(lone), { onLeafReady: (l) => got.push(l) }));
    expect(got).toEqual([lone]);
    expect(unused.grad).toBeNull();
    [...ws, x, lone, unused].forEach((t) => t.dispose());
  });
  it("graphs not used for backward are freed with their outputs (no leak in eval)", () => {
    const w = T.randn([8, 8], { seed: 1, requiresGrad: true });
    const before = T.memory();
    T.tidy(() => {
      let h = T.randn([4, 8], { seed: 2 });
      for (let i = 0; i < 5; i++) h = T.tanh(T.matmul(h, w));
      return h.sum().item();
    });
    const after = T.memory();
    expect(after.tensors).toBe(before.tensors);
    expect(after.bytes).toBe(before.bytes);
    w.dispose();
  });
});

describe("AdamW", () => {
  it("matches a hand-computed step sequence", () => {
    const p = T.tensor([1, -2], [2], { dtype: "f64", requiresGrad: true });
    const opt = new T.AdamW([p], { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01 });
    // reference in plain numbers
    let ref = [1, -2];
    const m = [0, 0], v = [0, 0];
    for (let t = 1; t <= 3; t++) {
      T.tidy(() => T.backward(T.sum(T.mul(T.mul(p, p), 0.5)))); // grad = p
      const g = [...ref];
      opt.step();
      opt.zeroGrad();
      ref = ref.map((x, i) => {
        x = x - 0.1 * 0.01 * x;
        m[i] = 0.9 * m[i]! + 0.1 * g[i]!;
        v[i] = 0.99 * v[i]! + 0.01 * g[i]! ** 2;
        const mh = m[i]! / (1 - 0.9 ** t), vh = v[i]! / (1 - 0.99 ** t);
        return x - (0.1 * mh) / (Math.sqrt(vh) + 1e-8);
      });
      const got = p.toArray();
      expect(Math.abs(got[0]! - ref[0]!)).toBeLessThan(1e-12);
      expect(Math.abs(got[1]! - ref[1]!)).toBeLessThan(1e-12);
    }
    opt.dispose();
    p.dispose();
  });
});

describe("composite ops", () => {
  it("record one node with their own backward, not the graph of their parts", () => {
    // y = x·x computed from two ops, recorded as one op whose backward is 2·x·dy.
    const def: T.OpDef<null> = {
      name: "square",
      save: (inputs) => inputs,
      backward: ([dy], ctx) => [T.mul(T.mul(ctx.saved[0]!, 2), dy!)],
    };
    T.tidy(() => {
      const x = T.tensorFrom([1, -2, 3]).requireGrad();
      const [y] = T.runComposite(def, [x], null, ([a]) => [T.mul(T.add(a!, 0), a!)]);
      expect(y!.gradFn!.op).toBe("square");
      T.backward(T.sum(y!));
      expect(x.grad!.toArray()).toEqual([2, -4, 6]);
      expect(gradcheck((a) => T.runComposite(def, [a], null, ([b]) => [T.mul(b!, b!)])[0]!, [T.tensorFrom([0.5, 2], { dtype: "f64" }).requireGrad()]).checked).toBe(2);
    });
  });
});
