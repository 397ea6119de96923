// The device memory check of the conformance runner: a small transformer-shaped training step
// (embedding, RMSNorm, RoPE, grouped-query attention, SwiGLU, cross-entropy, backward, AdamW)
// inside `tidy`, after which the device's allocator must hold exactly the bytes it held before
// (every temporary, gradient and saved activation freed), and the engine the same tensor handles.
import { getBackend } from "../backend.js";
import { backward } from "../autograd.js";
import { memory, tidy, keep } from "../engine.js";
import { AdamW } from "../optim.js";
import { add, mul } from "../ops/binary.js";
import { matmul } from "../ops/matmul.js";
import { attention } from "../ops/attention.js";
import { crossEntropy, embedding } from "../ops/loss.js";
import { rmsnorm, rope, swiglu } from "../ops/nn.js";
import { cast } from "../ops/cast.js";
import { arange, ones, randn, tensorFrom } from "../ops/creation.js";
import type { DType } from "../dtype.js";
import type { Tensor } from "../tensor.js";

/** What {@link runMemoryCheck} saw. */
export interface MemoryCheckResult {
  readonly passed: boolean;
  /**
   * Native bytes in use on the device before and after the steps, kernel scratch excluded: the
   * per-thread packing blocks of the products grow to the largest block a worker thread has
   * needed, and which worker packs which block depends on scheduling, so they are not a leak.
   */
  readonly bytesBefore: number;
  readonly bytesAfter: number;
  readonly tensorsBefore: number;
  readonly tensorsAfter: number;
  /** The loss of each step (finite when the kernels work). */
  readonly losses: readonly number[];
  readonly detail: string;
}

/**
 * Runs `steps` training steps of a small model on `device` in `dtype` (each inside `tidy`) after
 * one warm-up step, and compares the allocator's bytes in use (kernel scratch excluded) and the
 * live tensor handles before and after.
 */
export function runMemoryCheck(device: string, dtype: DType = "f32", steps = 2): MemoryCheckResult {
  const B = 2, T = 16, V = 64, D = 32, H = 4, Hkv = 2, Dh = D / H, F = 48;
  const seed = (i: number) => ({ seed: 1234 + i, device });
  const param = (shape: number[], i: number) => keep(randn(shape, { ...seed(i), std: 0.2, requiresGrad: true }));
  const params = [param([D, D], 1), param([D, Hkv * Dh * 2], 2), param([D, D], 3), param([D, 2 * F], 4), param([F, D], 5), param([D, V], 6)];
  const emb = keep(randn([V, D], seed(7)));
  const norm = keep(ones([D], { device }));
  const positions = keep(cast(arange(0, T, 1, { device }), "i32"));
  const ids = keep(tensorFrom(Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % V), { shape: [B, T], device }));
  const targets = keep(tensorFrom(Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % V), { shape: [B * T], device }));
  const opt = new AdamW(params, { lr: 1e-2 });
  const c = (t: Tensor) => (dtype === "f32" ? t : cast(t, dtype));
  const step = (): number =>
    tidy(() => {
      const [wq, wkv, wo, wgu, wd, wh] = params as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
      const x = c(embedding(emb, ids)); // [B, T, D]
      const h = rmsnorm(x, c(norm));
      const q = rope(matmul(h, c(wq)).reshape([B, T, H, Dh]), positions);
      const kv = matmul(h, c(wkv)).reshape([B, T, 2, Hkv, Dh]);
      const k = rope(kv.slice([0, 0, 0, 0, 0], [B, T, 1, Hkv, Dh]).reshape([B, T, Hkv, Dh]), positions);
      const v = kv.slice([0, 0, 1, 0, 0], [B, T, 2, Hkv, Dh]).reshape([B, T, Hkv, Dh]);
      const a = attention(q, k, v, { causal: true }).reshape([B, T, D]);
      const x2 = add(x, matmul(a, c(wo)));
      const gu = matmul(rmsnorm(x2, c(norm)), c(wgu));
      const m = swiglu(gu.slice([0, 0, 0], [B, T, F]), gu.slice([0, 0, F], [B, T, 2 * F]));
      const x3 = add(x2, mul(matmul(m, c(wd)), 0.5));
      const logits = matmul(x3, c(wh)).reshape([B * T, V]);
      const loss = crossEntropy(logits, targets);
      backward(loss);
      const value = loss.item();
      opt.step();
      opt.zeroGrad();
      return value;
    });
  const backend = getBackend(device);
  const losses: number[] = [];
  try {
    losses.push(step()); // warm-up: caches, plans, lazily created state
    backend.synchronize();
    const storageBytes = () => {
      const m = backend.memory();
      return m.bytes - m.scratchBytes;
    };
    const bytesBefore = storageBytes();
    const tensorsBefore = memory(device).tensors;
    for (let i = 0; i < steps; i++) losses.push(step());
    backend.synchronize();
    const bytesAfter = storageBytes();
    const tensorsAfter = memory(device).tensors;
    const finite = losses.every(Number.isFinite);
    const passed = finite && bytesAfter === bytesBefore && tensorsAfter === tensorsBefore;
    const detail = `${dtype}: ${steps} steps inside tidy; device bytes in use (scratch excluded) ${bytesBefore} → ${bytesAfter}, tensor handles ${tensorsBefore} → ${tensorsAfter}; losses ${losses.map((l) => l.toFixed(4)).join(", ")}${finite ? "" : " (not finite)"}`;
    return { passed, bytesBefore, bytesAfter, tensorsBefore, tensorsAfter, losses, detail };
  } finally {
    opt.dispose();
    for (const t of [...params, emb, norm, positions, ids, targets]) t.dispose();
  }
}
