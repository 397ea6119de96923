import { attentionBackward, attentionForward, copyStrided, type AttentionDims, type AttentionMaskView } from "@modulora/kernels";
import type { Device } from "../backend.js";
import type { AttentionAttrs } from "../ops/attention.js";
import { broadcastStrides, contiguousStrides } from "../shape.js";
import { Tensor } from "../tensor.js";
import { farr, outputOn, registerFloatKernel } from "./util.js";

function dimsOf(a: AttentionAttrs): AttentionDims {
  return { batch: a.batch, queryLen: a.queryLen, keyLen: a.keyLen, queryHeads: a.queryHeads, kvHeads: a.kvHeads, headDim: a.headDim };
}

/** The mask read in place as [B, Hq, T, S] through broadcast strides (no copy). */
function maskView(mask: Tensor | undefined, a: AttentionAttrs): AttentionMaskView | null {
  if (!mask) return null;
  const s = broadcastStrides(mask.shape, mask.strides, [a.batch, a.queryHeads, a.queryLen, a.keyLen]);
  return { data: farr(mask), strides: [s[0]!, s[1]!, s[2]!, s[3]!] };
}

/**
 * Runs `fn` on contiguous versions of `ts` (the kernels take packed [B, T, H, D] rows): tensors
 * that already are contiguous are used as they are, others are copied and the copies freed after.
 */
function withContiguous<R>(ts: readonly Tensor[], fn: (dense: Tensor[]) => R): R {
  const temps: Tensor[] = [];
  const dense = ts.map((t) => {
    if (t.isContiguous) return t;
    const c = Tensor.empty(t.shape, t.dtype, t.device);
    copyStrided(t.shape, farr(t), t.strides, farr(c), contiguousStrides(t.shape));
    temps.push(c);
    return c;
  });
  try {
    return fn(dense);
  } finally {
    for (const t of temps) t.dispose();
  }
}

/** Registers the fused attention kernels (forward: [out, lse]; backward: [dq, dk, dv]). */
export function registerCpuAttention(device: Device): void {
  const out = outputOn(device);
  registerFloatKernel<AttentionAttrs>("attention", device, ([q, k, v, mask], a) => {
    const y = out([a.batch, a.queryLen, a.queryHeads, a.headDim], q!.dtype);
    const lse = out([a.batch, a.queryHeads, a.queryLen], q!.dtype);
    withContiguous([q!, k!, v!], ([qc, kc, vc]) => {
      attentionForward(dimsOf(a), farr(qc!), farr(kc!), farr(vc!), farr(y), farr(lse), { scale: a.scale, causal: a.causal, mask: maskView(mask, a) });
    });
    return [y, lse];
  }, { f32Outputs: [1] }); // lse stays f32 for the backward

  registerFloatKernel<AttentionAttrs>("attentionBackward", device, ([q, k, v, o, lse, dOut, mask], a) => {
    const dq = out(q!.shape, q!.dtype);
    const dk = out(k!.shape, k!.dtype);
    const dv = out(v!.shape, v!.dtype);
    withContiguous([q!, k!, v!, o!, lse!, dOut!], ([qc, kc, vc, oc, lc, gc]) => {
      attentionBackward(dimsOf(a), farr(qc!), farr(kc!), farr(vc!), farr(oc!), farr(lc!), farr(gc!), farr(dq), farr(dk), farr(dv), {
        scale: a.scale,
        causal: a.causal,
        mask: maskView(mask, a),
      });
    });
    return [dq, dk, dv];
  });
}
