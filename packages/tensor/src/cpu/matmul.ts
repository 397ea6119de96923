import { copyStrided, gemm } from "@modulora/kernels";
import type { Device } from "../backend.js";
import type { MatmulAttrs } from "../ops/matmul.js";
import { broadcastStrides, contiguousStrides, shapeSize } from "../shape.js";
import { Tensor } from "../tensor.js";
import { gemmOperand, type GemmOperand } from "../matmul-layout.js";
import { farr, outputOn, registerFloatKernel } from "./util.js";
import { hostView } from "./host.js";

/** `t` as a GEMM operand, copied to a contiguous [...batch, R, C] stack when its layout does not fit. */
function prepare(t: Tensor, batch: readonly number[]): GemmOperand {
  return gemmOperand(t, batch, (src, shape) => {
    const temp = Tensor.empty(shape, src.dtype, src.device);
    copyStrided(shape, farr(src), broadcastStrides(src.shape, src.strides, shape), farr(temp), contiguousStrides(shape));
    return temp;
  });
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
