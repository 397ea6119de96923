// The fused attention kernels of the CUDA backend (FlashAttention-2 style; kernels/src/cuda/
// attention_fwd.cu and attention_bwd.cu). Same contract as the CPU kernels (../cpu/attention.ts):
//   "attention"          inputs [q, k, v, mask?]                  → [out [B, T, Hq, D], lse [B, Hq, T]]
//   "attentionBackward"  inputs [q, k, v, out, lse, dOut, mask?]  → [dq, dk, dv]
// q, k, v, out and dOut are made contiguous (copies where they are not); the mask is read in place
// as [B, Hq, T, S] through broadcast strides. lse is f32 for f32 and bf16 inputs, f64 for f64.
import { getKernel, registerKernel } from "../backend.js";
import type { DType } from "../dtype.js";
import type { AttentionAttrs } from "../ops/attention.js";
import type { CastAttrs } from "../ops/cast.js";
import { broadcastStrides } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { code, cudaFn, deviceIndex, empty, launch, ptr, withDense } from "./util.js";

/** The dtype of the saved row statistics (lse) for inputs of `dtype`. */
function statDType(dtype: DType): DType {
  return dtype === "f64" ? "f64" : "f32";
}

/** The dims tail of the native calls: B, T, S, Hq, Hkv, D, scale, causal. */
function dimsArgs(a: AttentionAttrs): (number | boolean)[] {
  return [a.batch, a.queryLen, a.keyLen, a.queryHeads, a.kvHeads, a.headDim, a.scale, a.causal];
}

/** The mask's address and its [B, Hq, T, S] element strides (0 along broadcast dims), or none. */
function maskArgs(mask: Tensor | undefined, a: AttentionAttrs): [number, number[] | null] {
  if (!mask) return [0, null];
  const s = broadcastStrides(mask.shape, mask.strides, [a.batch, a.queryHeads, a.queryLen, a.keyLen]);
  return [ptr(mask), [s[0]!, s[1]!, s[2]!, s[3]!]];
}

/**
 * Runs `fn` with `ts` converted to `dtypes` (by the device's `cast` kernel where they differ),
 * disposing the converted copies afterwards.
 */
function withDTypes<R>(ts: readonly Tensor[], dtypes: readonly DType[], fn: (xs: Tensor[]) => R): R {
  const temps: Tensor[] = [];
  const xs = ts.map((t, i) => {
    if (t.dtype === dtypes[i]) return t;
    const c = getKernel<CastAttrs>("cast", t.device)([t], { dtype: dtypes[i]! })[0]!;
    temps.push(c);
    return c;
  });
  try {
    return fn(xs);
  } finally {
    for (const t of temps) t.dispose();
  }
}

/** Disposes `outs` if `fn` throws (so a failed launch leaks no output). */
function guarded<R>(outs: readonly Tensor[], fn: () => R): R {
  try {
    return fn();
  } catch (err) {
    for (const t of outs) t.dispose();
    throw err;
  }
}

/**
 * Registers the CUDA attention kernels for `family` (`cuda` serves `cuda`, `cuda:0`, ...):
 * `attention` (forward: out and lse) and `attentionBackward` (dq, dk, dv), deterministic (no
 * atomics), for f32, f64 and bf16 and head dims up to 256.
 */
export function registerCudaAttention(family: string): void {
  registerKernel<AttentionAttrs>("attention", family, (inputs, a) =>
    launch("attention", inputs, () => {
      const [q, k, v, mask] = inputs as [Tensor, Tensor, Tensor, Tensor | undefined];
      const dev = q.device;
      const dtype = q.dtype;
      const out = empty([a.batch, a.queryLen, a.queryHeads, a.headDim], dtype, dev);
      const lse = empty([a.batch, a.queryHeads, a.queryLen], statDType(dtype), dev);
      if (out.size === 0) return [out, lse];
      guarded([out, lse], () =>
        withDTypes(mask ? [k, v, mask] : [k, v], [dtype, dtype, dtype], ([kt, vt, mt]) =>
          withDense([q, kt!, vt!], ([qc, kc, vc]) => {
            const [mp, ms] = maskArgs(mt, a);
            cudaFn("attentionForward")(deviceIndex(dev), code(dtype), ptr(qc!), ptr(kc!), ptr(vc!), ptr(out), ptr(lse), mp, ms, ...dimsArgs(a));
          }),
        ),
      );
      return [out, lse];
    }),
  );

  registerKernel<AttentionAttrs>("attentionBackward", family, (inputs, a) =>
    launch("attentionBackward", inputs, () => {
      const [q, k, v, o, lse, dOut, mask] = inputs as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | undefined];
      const dev = q.device;
      const dtype = q.dtype;
      const dq = empty(q.shape, dtype, dev);
      const dk = empty(k.shape, dtype, dev);
      const dv = empty(v.shape, dtype, dev);
      if (dq.size === 0 && dk.size === 0) return [dq, dk, dv];
      const rest = [k, v, o, lse, dOut, ...(mask ? [mask] : [])];
      const want: DType[] = [dtype, dtype, dtype, statDType(dtype), dtype, dtype];
      guarded([dq, dk, dv], () =>
        withDTypes(rest, want, ([kt, vt, ot, lt, gt, mt]) =>
          withDense([q, kt!, vt!, ot!, lt!, gt!], ([qc, kc, vc, oc, lc, gc]) => {
            const [mp, ms] = maskArgs(mt, a);
            cudaFn("attentionBackward")(
              deviceIndex(dev), code(dtype),
              ptr(qc!), ptr(kc!), ptr(vc!), ptr(oc!), ptr(lc!), ptr(gc!), ptr(dq), ptr(dk), ptr(dv),
              mp, ms, ...dimsArgs(a),
            );
          }),
        ),
      );
      return [dq, dk, dv];
    }),
  );
}
