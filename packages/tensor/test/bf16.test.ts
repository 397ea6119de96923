// The bf16 compute policy (issue 14, item 5): bf16 tensors compute in f32 and round their outputs
// to bf16; gradients attach to bf16 tensors; the loss is f32; trainable factors stay f32 and meet
// bf16 activations through explicit, differentiable casts. Finite differences are meaningless at
// bf16 precision, so a bf16 graph is checked against the same graph run in f32 on the same
// (bf16-representable) values.
import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";
import { rnd, size } from "./ref.js";
import { relL2 } from "../src/testing.js";

T.registerSimBackend();

/** bf16 unit roundoff (half an ulp of 1). */
const U = 2 ** -8;

/** Values rounded to bf16, as f64 (so the f32 run sees exactly what the bf16 run sees). */
function bf16Values(data: Float64Array): Float64Array {
  return T.tidy(() => T.tensor(data, [data.length], { dtype: "bf16" }).toFloat64Array());
}


const B = 2, S = 5, D = 16, F = 24, V = 11, R = 4;

/** The shapes and value ranges of the block's tensors; the LoRA factors are always f32. */
const SPEC = {
  x: { shape: [B, S, D], lo: -2, hi: 2 },
  g: { shape: [D], lo: 0.5, hi: 1.5 },
  wg: { shape: [D, F], lo: -0.5, hi: 0.5 },
  wu: { shape: [D, F], lo: -0.5, hi: 0.5 },
  wo: { shape: [F, D], lo: -0.5, hi: 0.5 },
  wv: { shape: [D, V], lo: -1, hi: 1 },
  a: { shape: [D, R], lo: -0.5, hi: 0.5 },
  b: { shape: [R, D], lo: -0.5, hi: 0.5 },
} as const;
type Name = keyof typeof SPEC;
const NAMES = Object.keys(SPEC) as Name[];
const LORA = new Set<Name>(["a", "b"]);

/** The same bf16-representable values for both runs, from a fixed seed per tensor. */
const VALUES: Record<Name, Float64Array> = Object.fromEntries(
  NAMES.map((n, i) => [n, bf16Values(rnd(size(SPEC[n].shape), 100 + i, SPEC[n].lo, SPEC[n].hi))]),
) as Record<Name, Float64Array>;
const TARGETS = Int32Array.from({ length: B * S }, (_, i) => (i * 7 + 3) % V);

/**
 * A LLaMA-like block, forward to an f32 loss: RMSNorm, a SwiGLU MLP of matmuls with an f32 LoRA
 * term on its input, a softmax mixing over positions, and cross-entropy.
 */
function block(p: Record<Name, T.Tensor>, dtype: "f32" | "bf16", targets: T.Tensor): T.Tensor {
  const h = T.rmsnorm(p.x, p.g); //                                          [B, S, D]
  const act = T.swiglu(T.matmul(h, p.wg), T.matmul(h, p.wu)); //             [B, S, F]
  // The LoRA factors are f32: the bf16 activations are cast up, the f32 product cast back down.
  const lora = T.cast(T.matmul(T.matmul(T.cast(h, "f32"), p.a), p.b), dtype); // [B, S, D]
  const y = T.add(T.matmul(act, p.wo), lora); //                             [B, S, D]
  const scores = T.scale(T.matmul(y, y, { transB: true }), 1 / Math.sqrt(D)); // [B, S, S]
  const mixed = T.matmul(T.softmax(scores), y); //                           [B, S, D]
  return T.crossEntropy(T.matmul(mixed, p.wv), targets); //                  [] f32
}

interface Run {
  loss: number;
  lossDType: T.DType;
  grads: Record<Name, { dtype: T.DType; values: Float64Array }>;
}

/** Runs the block at `dtype` on `device` (the LoRA factors in f32 either way) and backpropagates. */
function run(dtype: "f32" | "bf16", device = "cpu"): Run {
  return T.tidy(() => {
    const p = Object.fromEntries(
      NAMES.map((n) => [n, T.tensor(VALUES[n], [...SPEC[n].shape], { dtype: LORA.has(n) ? "f32" : dtype, device, requiresGrad: true })]),
    ) as Record<Name, T.Tensor>;
    const loss = block(p, dtype, T.tensor(TARGETS, [B, S], { device }));
    T.backward(loss);
    const grads = Object.fromEntries(NAMES.map((n) => [n, { dtype: p[n].grad!.dtype, values: p[n].grad!.toFloat64Array() }])) as Run["grads"];
    const out = { loss: loss.item(), lossDType: loss.dtype, grads };
    return out;
  });
}

describe("bf16 compute policy: a block tracks its f32 run", () => {
  it("the loss is f32 and within bf16 tolerance of the f32 loss", () => {
    const before = T.memory().tensors;
    const f = run("f32");
    const h = run("bf16");
    expect(T.memory().tensors).toBe(before);
    expect(f.lossDType).toBe("f32");
    expect(h.lossDType).toBe("f32");
    // About ten bf16 roundings lie between the inputs and the logits, each of at most u relative;
    // cross-entropy is 1-Lipschitz in the logits and the mean over rows averages their errors
    // (measured: 0.05 u).
    expect(Math.abs(h.loss - f.loss)).toBeLessThanOrEqual(4 * U * Math.abs(f.loss));
    expect(h.loss).not.toBe(f.loss); // the bf16 run really rounds
  });

  it("gradients of bf16 leaves are bf16, of the f32 LoRA factors f32, and both track the f32 run", () => {
    const f = run("f32");
    const h = run("bf16");
    for (const n of NAMES) {
      expect(f.grads[n].dtype, n).toBe("f32");
      expect(h.grads[n].dtype, n).toBe(LORA.has(n) ? "f32" : "bf16");
      // The backward goes through as many bf16 roundings as the forward, again, and gradients
      // are not averaged (norm-wise; measured: 1.1 to 3.5 u).
      const err = relL2(h.grads[n].values, f.grads[n].values);
      expect(err, n).toBeLessThanOrEqual(16 * U);
      expect(err, n).toBeGreaterThan(0);
    }
  });

  it("sim runs the same bf16 kernels: losses and gradients are bit-identical to cpu", () => {
    const c = run("bf16", "cpu");
    const s = run("bf16", "sim");
    expect(s.loss).toBe(c.loss);
    for (const n of NAMES) expect(Array.from(s.grads[n].values), n).toEqual(Array.from(c.grads[n].values));
  });
});

describe("bf16 compute policy: attention and RoPE", () => {
  it("bf16 attention of rotated q, k tracks f32, with bf16 gradients", () => {
    const shapeQ = [1, 7, 4, 8];
    const shapeKV = [1, 7, 2, 8];
    const vals = [bf16Values(rnd(size(shapeQ), 1)), bf16Values(rnd(size(shapeKV), 2)), bf16Values(rnd(size(shapeKV), 3))];
    const w = bf16Values(rnd(size(shapeQ), 4));
    const once = (dtype: "f32" | "bf16") =>
      T.tidy(() => {
        const [q, k, v] = [shapeQ, shapeKV, shapeKV].map((s, i) => T.tensor(vals[i]!, s, { dtype, requiresGrad: true }));
        const pos = T.tensor(new Int32Array([0, 1, 2, 3, 4, 5, 6]));
        const o = T.attention(T.rope(q!, pos), T.rope(k!, pos), v!);
        expect(o.dtype).toBe(dtype);
        const loss = T.sum(T.mul(o, T.tensor(w, shapeQ, { dtype })));
        T.backward(loss);
        return { out: o.toFloat64Array(), grads: [q!, k!, v!].map((t) => ({ dtype: t.grad!.dtype, values: t.grad!.toFloat64Array() })) };
      });
    const f = once("f32");
    const h = once("bf16");
    expect(relL2(h.out, f.out)).toBeLessThanOrEqual(8 * U);
    h.grads.forEach((g, i) => {
      expect(g.dtype).toBe("bf16");
      expect(relL2(g.values, f.grads[i]!.values)).toBeLessThanOrEqual(16 * U);
    });
  });
});

describe("bf16 compute policy: the kernel boundary", () => {
  it("a bf16 op is its f32 kernel on the widened inputs, rounded once to nearest even", () => {
    T.tidy(() => {
      const a = T.tensor(rnd(6 * 33, 5), [6, 33], { dtype: "bf16" });
      const b = T.tensor(rnd(33 * 5, 6), [33, 5], { dtype: "bf16" });
      const viaF32 = (fn: (x: T.Tensor, y: T.Tensor) => T.Tensor) => T.cast(fn(T.cast(a, "f32"), T.cast(b, "f32")), "bf16").dataSync();
      for (const fn of [(x: T.Tensor, y: T.Tensor) => T.matmul(x, y), (x: T.Tensor) => T.softmax(x), (x: T.Tensor) => T.sum(x, 1), (x: T.Tensor) => T.exp(x)]) {
        const y = fn(a, b);
        expect(y.dtype).toBe("bf16");
        expect(Array.from(y.dataSync())).toEqual(Array.from(viaF32(fn)));
      }
      // A transposed (strided) bf16 view goes through the boundary as its logical values.
      const y = T.matmul(T.transpose(b), T.transpose(a));
      expect(Array.from(y.dataSync())).toEqual(Array.from(T.cast(T.matmul(T.transpose(T.cast(b, "f32")), T.transpose(T.cast(a, "f32"))), "bf16").dataSync()));
    });
  });

  it("cross-entropy of bf16 logits: f32 loss (every reduction), bf16 logit gradient", () => {
    T.tidy(() => {
      const data = rnd(4 * 9, 7, -3, 3);
      const targets = T.tensor(new Int32Array([1, 8, -100, 0]));
      const h = T.tensor(data, [4, 9], { dtype: "bf16", requiresGrad: true });
      const f = T.tensor(h.toFloat64Array(), [4, 9], { dtype: "f32", requiresGrad: true });
      for (const reduction of ["mean", "sum", "none"] as const) {
        const lh = T.crossEntropy(h, targets, { reduction });
        const lf = T.crossEntropy(f, targets, { reduction });
        expect(lh.dtype).toBe("f32");
        // The bf16 logits are read exactly as f32: the losses agree to f32 rounding.
        expect(Array.from(lh.dataSync())).toEqual(Array.from(lf.dataSync()));
      }
      T.backward(T.crossEntropy(h, targets));
      T.backward(T.crossEntropy(f, targets));
      expect(h.grad!.dtype).toBe("bf16");
      // The f32 gradient rounded once to bf16.
      expect(Array.from(h.grad!.dataSync())).toEqual(Array.from(T.cast(f.grad!, "bf16").dataSync()));
    });
  });

  it("in-place updates of bf16 tensors compute in f32 and round once", () => {
    T.tidy(() => {
      const start = rnd(12, 8);
      const src = T.tensor(rnd(4, 9), [4], { dtype: "bf16" });
      const dst = T.tensor(start, [3, 4], { dtype: "bf16" });
      const ref = T.cast(dst, "f32");
      T.addInPlace(dst, src, 0.3);
      T.addInPlace(ref, T.cast(src, "f32"), 0.3);
      expect(Array.from(dst.dataSync())).toEqual(Array.from(T.cast(ref, "bf16").dataSync()));
      T.assign(ref, T.cast(T.cast(ref, "bf16"), "f32")); // the bf16 side is rounded after each update
      T.scaleInPlace(dst, 1.7, -0.2);
      T.scaleInPlace(ref, 1.7, -0.2);
      expect(Array.from(dst.dataSync())).toEqual(Array.from(T.cast(ref, "bf16").dataSync()));
      T.fillInPlace(dst, 1 + 2 ** -9); // rounds to 1 (ties to even)
      expect(Array.from(dst.toFloat64Array())).toEqual(new Array(12).fill(1));
    });
  });
});

describe("bf16 compute policy: mixing dtypes and what stays f32", () => {
  it("ops refuse mixed dtypes with a hint to cast; cast is differentiable both ways with the input's dtype", () => {
    T.tidy(() => {
      const xb = T.tensor(rnd(6, 12), [2, 3], { dtype: "bf16", requiresGrad: true });
      const af = T.tensor(rnd(6, 13), [3, 2], { dtype: "f32", requiresGrad: true });
      expect(() => T.matmul(xb, af)).toThrow(/matmul: inputs have different dtypes \(bf16, f32\); cast one of them with \.cast\(dtype\)/);
      // up: bf16 → f32 (the LoRA path), gradient bf16; down: f32 → bf16, gradient f32.
      const y = T.cast(T.matmul(T.cast(xb, "f32"), af), "bf16");
      expect(y.dtype).toBe("bf16");
      T.backward(T.sum(y));
      expect(xb.grad!.dtype).toBe("bf16");
      expect(af.grad!.dtype).toBe("f32");
      // d sum(x·A)/dx = rowsums of A, rounded to bf16; d/dA = column sums of x, in f32.
      const a = af.toFloat64Array();
      const x = xb.toFloat64Array();
      const rowSums = [0, 1, 2].map((k) => a[2 * k]! + a[2 * k + 1]!);
      const want = T.tensor([...rowSums, ...rowSums], [2, 3], { dtype: "bf16" }).toFloat64Array();
      expect(Array.from(xb.grad!.toFloat64Array())).toEqual(Array.from(want));
      const colSums = [0, 1, 2].flatMap((k) => [x[k]! + x[3 + k]!, x[k]! + x[3 + k]!]);
      Array.from(af.grad!.toFloat64Array()).forEach((g, i) => expect(g).toBeCloseTo(colSums[i]!, 6));
    });
  });

  it("f16 stays a storage type, and says so", () => {
    T.tidy(() => {
      const h = T.zeros([2], { dtype: "f16" });
      expect(() => T.exp(h)).toThrow(/exp: expects f32, f64 or bf16 tensors, got f16; f16 is a storage type only, cast it with \.cast\("f32"\)/);
    });
  });

  it("AdamW and adamwStep refuse bf16 parameters: master weights stay f32", () => {
    T.tidy(() => {
      const p = T.zeros([3], { dtype: "bf16", requiresGrad: true });
      expect(() => new T.AdamW([p], { lr: 1e-3 })).toThrow(/AdamW: parameters must be f32 or f64, got bf16: keep trainable parameters in f32 \(master weights/);
      const z = () => T.zeros([3], { dtype: "bf16" });
      expect(() => T.noGrad(() => T.adamwStep(z(), z(), z(), z(), { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 }))).toThrow(
        /adamwStep: bf16 parameters are not updated in place: keep trainable parameters and optimizer state in f32/,
      );
    });
  });

  it("an f32 master weight trains through a bf16 copy: its gradient arrives in f32", () => {
    T.tidy(() => {
      const master = T.tensor(rnd(8, 14), [2, 4], { dtype: "f32", requiresGrad: true });
      const x = T.tensor(rnd(6, 15), [3, 2], { dtype: "bf16" });
      const opt = new T.AdamW([master], { lr: 0.1 });
      const loss = T.sum(T.square(T.matmul(x, T.cast(master, "bf16"))));
      expect(loss.dtype).toBe("bf16");
      T.backward(loss);
      expect(master.grad!.dtype).toBe("f32");
      const before = master.toFloat64Array();
      opt.step();
      expect(Array.from(master.toFloat64Array())).not.toEqual(Array.from(before));
      opt.zeroGrad();
    });
  });
});
