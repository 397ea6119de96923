import { copyStrided, gemm } from "@modulora/kernels";
import type { Device } from "../backend.js";
import type { MatmulAttrs } from "../ops/matmul.js";
import { broadcastStrides, contiguousStrides, shapeSize } from "../shape.js";
import { Tensor } from "../tensor.js";
import { farr, outputOn, registerFloatKernel } from "./util.js";
import { hostView } from "./host.js";

/** How one operand is handed to GEMM: a (possibly transposed) matrix layout and a batch stride. */
interface Operand {
  t: Tensor;
  /** Whether the storage holds the transpose of the logical matrix. */
  flipped: boolean;
  ld: number;
  batchStride: number;
  /** A temporary copy to dispose after the call. */
  temp: Tensor | null;
}

/** Matrix layout of the last two dims, or null if neither row- nor column-major. */
function matrixLayout(t: Tensor): { flipped: boolean; ld: number } | null {
  const r = t.shape[t.rank - 2]!;
  const c = t.shape[t.rank - 1]!;
  const s0 = t.strides[t.rank - 2]!;
  const s1 = t.strides[t.rank - 1]!;
  if ((s1 === 1 || c === 1) && (s0 >= c || r === 1)) return { flipped: false, ld: Math.max(r === 1 ? c : s0, c, 1) };
  if ((s0 === 1 || r === 1) && (s1 >= r || c === 1)) return { flipped: true, ld: Math.max(c === 1 ? r : s1, r, 1) };
  return null;
}

/** One stride that walks the broadcast batch, or null if the batch dims do not collapse. */
function batchStride(t: Tensor, batch: readonly number[]): number | null {
  const eff = broadcastStrides(t.shape.slice(0, -2), t.strides.slice(0, -2), batch);
  let stride: number | null = null;
  let expected = -1;
  for (let i = batch.length - 1; i >= 0; i--) {
    if (batch[i] === 1) continue;
    if (stride === null) {
      stride = eff[i]!;
      expected = stride * batch[i]!;
    } else {
      if (eff[i] !== expected) return null;
      expected = eff[i]! * batch[i]!;
    }
  }
  return stride ?? 0;
}

function prepare(t: Tensor, batch: readonly number[]): Operand {
  const layout = matrixLayout(t);
  const bs = batchStride(t, batch);
  if (layout && bs !== null) return { t, flipped: layout.flipped, ld: layout.ld, batchStride: bs, temp: null };
  // Copy to a contiguous [...batch, R, C] matrix stack.
  const shape = [...batch, ...t.shape.slice(-2)];
  const temp = Tensor.empty(shape, t.dtype, t.device);
  const src = broadcastStrides(t.shape, t.strides, shape);
  copyStrided(shape, farr(t), src, farr(temp), contiguousStrides(shape));
  const rc = t.shape[t.rank - 2]! * t.shape[t.rank - 1]!;
  return { t: temp, flipped: false, ld: Math.max(t.shape[t.rank - 1]!, 1), batchStride: shapeSize(batch) > 1 ? rc : 0, temp };
}

/** Registers the matmul kernel: one strided-batched GEMM (bf16 operands are converted to f32 and accumulate in f32). */
export function registerCpuMatmul(device: Device): void {
  const out = outputOn(device);
  registerFloatKernel<MatmulAttrs>("matmul", device, ([a, b], { transA, transB, batch, m, n, k }) => {
    const y = out([...batch, m, n], a!.dtype);
    const count = shapeSize(batch);
    if (count === 0 || m === 0 || n === 0 || k === 0) {
      hostView(y).fill(0); // a sum over k = 0 terms
      return [y];
    }
    const A = prepare(a!, batch);
    const B = prepare(b!, batch);
    try {
      const ta = transA !== A.flipped;
      // A linear layer on [batch..., M, K] with a shared B: the batch of row-major A matrices laid
      // end to end is one [batch·M, K] matrix, so one large GEMM replaces `count` small ones.
      if (count > 1 && B.batchStride === 0 && !ta && A.batchStride === m * A.ld) {
        gemm(false, transB !== B.flipped, count * m, n, k, 1, farr(A.t), A.ld, 0, farr(B.t), B.ld, 0, 0, farr(y), n, 0, 1);
        return [y];
      }
      gemm(ta, transB !== B.flipped, m, n, k, 1, farr(A.t), A.ld, A.batchStride, farr(B.t), B.ld, B.batchStride, 0, farr(y), n, m * n, count);
    } finally {
      A.temp?.dispose();
      B.temp?.dispose();
    }
    return [y];
  });
}
