// A whole LLaMA-style block built from the fused ops: RMSNorm → q/k/v projections → RoPE →
// causal GQA attention → o projection → residual → RMSNorm → SwiGLU MLP → residual.
import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";
import { gradcheck } from "../src/testing.js";
import { rnd, size } from "./ref.js";

interface BlockWeights {
  attnNorm: T.Tensor; q: T.Tensor; k: T.Tensor; v: T.Tensor; o: T.Tensor;
  mlpNorm: T.Tensor; gate: T.Tensor; up: T.Tensor; down: T.Tensor;
}

const cfg = { d: 16, hq: 4, hkv: 2, dh: 4, mlp: 24 };

function weights(dtype: "f32" | "f64", seed: number): BlockWeights {
  const p = (shape: number[], s: number, lo = -0.4, hi = 0.4) => T.tensor(rnd(size(shape), seed + s, lo, hi), shape, { dtype, requiresGrad: true });
  return {
    attnNorm: p([cfg.d], 1, 0.8, 1.2),
    q: p([cfg.hq * cfg.dh, cfg.d], 2),
    k: p([cfg.hkv * cfg.dh, cfg.d], 3),
    v: p([cfg.hkv * cfg.dh, cfg.d], 4),
    o: p([cfg.d, cfg.hq * cfg.dh], 5),
    mlpNorm: p([cfg.d], 6, 0.8, 1.2),
    gate: p([cfg.mlp, cfg.d], 7),
    up: p([cfg.mlp, cfg.d], 8),
    down: p([cfg.d, cfg.mlp], 9),
  };
}

function block(x: T.Tensor, w: BlockWeights, positions: T.Tensor): T.Tensor {
  const [b, t] = x.shape as [number, number, number];
  const h = T.rmsnorm(x, w.attnNorm, 1e-5);
  const q = T.reshape(T.matmul(h, w.q, { transB: true }), [b, t, cfg.hq, cfg.dh]);
  const k = T.reshape(T.matmul(h, w.k, { transB: true }), [b, t, cfg.hkv, cfg.dh]);
  const v = T.reshape(T.matmul(h, w.v, { transB: true }), [b, t, cfg.hkv, cfg.dh]);
  const a = T.attention(T.rope(q, positions, { theta: 10000 }), T.rope(k, positions, { theta: 10000 }), v, { causal: true });
  const x2 = T.add(x, T.matmul(T.reshape(a, [b, t, cfg.hq * cfg.dh]), w.o, { transB: true }));
  const h2 = T.rmsnorm(x2, w.mlpNorm, 1e-5);
  const m = T.swiglu(T.matmul(h2, w.gate, { transB: true }), T.matmul(h2, w.up, { transB: true }));
  return T.add(x2, T.matmul(m, w.down, { transB: true }));
}

describe("a LLaMA-style block from the fused ops", () => {
  it("passes gradcheck end to end (f64): input and all nine weights", () => {
    const w = weights("f64", 10);
    const x = T.tensor(rnd(2 * 5 * cfg.d, 99), [2, 5, cfg.d], { dtype: "f64", requiresGrad: true });
    const pos = T.tensor(new Int32Array([0, 1, 2, 3, 4]), [5]);
    const names = Object.keys(w) as (keyof BlockWeights)[];
    const r = gradcheck(
      (xx, ...ws) => {
        const ww = Object.fromEntries(names.map((n, i) => [n, ws[i]!])) as unknown as BlockWeights;
        return block(xx!, ww, pos);
      },
      [x, ...names.map((n) => w[n])],
      { atol: 1e-6, rtol: 1e-4 },
    );
    expect(r.checked).toBeGreaterThan(1000);
    T.dispose([x, pos, ...Object.values(w)]);
  });
  it("matches the block built from unfused reference ops (f32)", () => {
    const w = weights("f32", 20);
    T.tidy(() => {
      const x = T.tensor(rnd(1 * 7 * cfg.d, 5), [1, 7, cfg.d], { dtype: "f32" });
      const pos = T.tensor(new Int32Array([0, 1, 2, 3, 4, 5, 6]), [7]);
      const fused = block(x, w, pos).toArray();
      const [b, t] = [1, 7];
      // reference: RMSNorm and SwiGLU from small ops, attention from attentionReference
      const rms = (h: T.Tensor, g: T.Tensor) => T.mul(T.mul(h, T.rsqrt(T.add(T.mean(T.square(h), -1, true), 1e-5))), g);
      const hh = rms(x, w.attnNorm);
      const q = T.reshape(T.matmul(hh, w.q, { transB: true }), [b, t, cfg.hq, cfg.dh]);
      const k = T.reshape(T.matmul(hh, w.k, { transB: true }), [b, t, cfg.hkv, cfg.dh]);
      const v = T.reshape(T.matmul(hh, w.v, { transB: true }), [b, t, cfg.hkv, cfg.dh]);
      const a = T.attentionReference(T.rope(q, pos), T.rope(k, pos), v, { causal: true });
      const x2 = T.add(x, T.matmul(T.reshape(a, [b, t, cfg.hq * cfg.dh]), w.o, { transB: true }));
      const h2 = rms(x2, w.mlpNorm);
      const m = T.mul(T.silu(T.matmul(h2, w.gate, { transB: true })), T.matmul(h2, w.up, { transB: true }));
      const ref = T.add(x2, T.matmul(m, w.down, { transB: true })).toArray();
      const err = Math.max(...fused.map((f, i) => Math.abs(f - ref[i]!)));
      expect(err).toBeLessThan(1e-5);
    });
    T.dispose(Object.values(w));
  });
  it("checkpointed blocks give bit-identical gradients to plain blocks, and keep less", () => {
    const run = (ckpt: boolean) => {
      const w = weights("f32", 30);
      const x = T.tensor(rnd(2 * 9 * cfg.d, 7), [2, 9, cfg.d], { dtype: "f32", requiresGrad: true });
      const pos = T.arange(9, undefined, 1, { dtype: "i32" });
      let held = 0;
      T.tidy(() => {
        const before = T.memory().bytes;
        const y = T.tidy(() => {
          let h = x;
          for (let i = 0; i < 3; i++) h = ckpt ? T.checkpoint((inp) => block(inp!, w, pos), [h]) : block(h, w, pos);
          return h;
        });
        held = T.memory().bytes - before;
        T.backward(T.sum(T.square(y)));
      });
      const grads = [x.grad!.toArray(), ...Object.values(w).map((p) => p.grad!.toArray())];
      T.dispose([x, pos, ...Object.values(w)]);
      return { grads, held };
    };
    const plain = run(false);
    const ck = run(true);
    expect(ck.grads).toEqual(plain.grads);
    expect(ck.held).toBeLessThan(plain.held / 3);
  });
});
