// How a matmul operand is handed to a backend's strided-batched GEMM: the layout of its last two
// axes (row- or column-major, and the leading dimension) and one stride walking its broadcast
// batch; operands that fit neither are copied once by the backend. Shared by the CPU and CUDA
// matmul kernels.
import { broadcastStrides, shapeSize } from "./shape.js";
import type { Tensor } from "./tensor.js";

/** One operand as GEMM sees it. */
export interface GemmOperand {
  t: Tensor;
  /** Whether the storage holds the transpose of the logical matrix. */
  flipped: boolean;
  ld: number;
  batchStride: number;
  /** A temporary copy to dispose after the call. */
  temp: Tensor | null;
}

/** Matrix layout of the last two dims, or null if neither row- nor column-major. */
export function matrixLayout(t: Tensor): { flipped: boolean; ld: number } | null {
  const r = t.shape[t.rank - 2]!;
  const c = t.shape[t.rank - 1]!;
  const s0 = t.strides[t.rank - 2]!;
  const s1 = t.strides[t.rank - 1]!;
  if ((s1 === 1 || c === 1) && (s0 >= c || r === 1)) return { flipped: false, ld: Math.max(r === 1 ? c : s0, c, 1) };
  if ((s0 === 1 || r === 1) && (s1 >= r || c === 1)) return { flipped: true, ld: Math.max(c === 1 ? r : s1, r, 1) };
  return null;
}

/** One stride that walks the broadcast batch, or null if the batch dims do not collapse. */
export function batchStride(t: Tensor, batch: readonly number[]): number | null {
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

/**
 * `t` as a GEMM operand over `batch`: as it is when its layout fits, else `copy(t, shape)` — a new
 * contiguous `[...batch, R, C]` tensor holding `t` broadcast to that shape, made by the backend.
 */
export function gemmOperand(t: Tensor, batch: readonly number[], copy: (t: Tensor, shape: number[]) => Tensor): GemmOperand {
  const layout = matrixLayout(t);
  const bs = batchStride(t, batch);
  if (layout && bs !== null) return { t, flipped: layout.flipped, ld: layout.ld, batchStride: bs, temp: null };
  const temp = copy(t, [...batch, ...t.shape.slice(-2)]);
  const rc = t.shape[t.rank - 2]! * t.shape[t.rank - 1]!;
  return { t: temp, flipped: false, ld: Math.max(t.shape[t.rank - 1]!, 1), batchStride: shapeSize(batch) > 1 ? rc : 0, temp };
}
