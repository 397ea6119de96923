// The CUDA matmul kernel: one strided-batched cuBLASLt product (the raw export `matmul`, row-major
// semantics), f32 in strict f32, f64 in f64, bf16 operands with f32 accumulation. Operands whose
// last two axes are row- or column-major and whose batch axes collapse to one stride are passed
// as they are (a transposed view costs nothing); others are copied once by the device.
import { getKernel, registerKernel, type Device } from "../backend.js";
import type { MatmulAttrs } from "../ops/matmul.js";
import type { BroadcastAttrs } from "../ops/shape.js";
import type { FillAttrs } from "../ops/creation.js";
import { shapeSize } from "../shape.js";
import { gemmOperand, type GemmOperand } from "../matmul-layout.js";
import type { Tensor } from "../tensor.js";
import { code, cudaFn, deviceIndex, empty, launch, ptr } from "./util.js";

/** `t` as a GEMM operand, broadcast into a contiguous copy by the device when its layout does not fit. */
function prepare(t: Tensor, batch: readonly number[]): GemmOperand {
  return gemmOperand(t, batch, (src, shape) => getKernel<BroadcastAttrs>("broadcastTo", src.device)([src], { shape })[0]!);
}

/** Registers the matmul kernel of the CUDA backend for `family`. */
export function registerCudaMatmul(family: Device): void {
  registerKernel<MatmulAttrs>("matmul", family, (inputs, { transA, transB, batch, m, n, k }) => {
    const [a, b] = inputs as [Tensor, Tensor];
    const y = empty([...batch, m, n], a.dtype, a.device);
    const count = shapeSize(batch);
    if (y.size === 0) return [y];
    if (k === 0) {
      getKernel<FillAttrs>("fill", y.device)([y], { value: 0 }); // a sum over no terms
      return [y];
    }
    return launch("matmul", inputs, () => {
      const A = prepare(a, batch);
      const B = prepare(b, batch);
      try {
        const ta = transA !== A.flipped;
        const tb = transB !== B.flipped;
        const t = code(a.dtype);
        const mm = cudaFn("matmul");
        const dev = deviceIndex(a.device);
        if (count > 1 && B.batchStride === 0 && !ta && A.batchStride === m * A.ld) {
          // A linear layer over [batch..., M, K] with a shared B: one [batch·M, K] product.
          mm(dev, t, t, false, tb, count * m, n, k, 1, ptr(A.t), A.ld, 0, ptr(B.t), B.ld, 0, 0, ptr(y), n, 0, 1);
        } else {
          mm(dev, t, t, ta, tb, m, n, k, 1, ptr(A.t), A.ld, A.batchStride, ptr(B.t), B.ld, B.batchStride, 0, ptr(y), n, m * n, count);
        }
      } finally {
        A.temp?.dispose();
        B.temp?.dispose();
      }
      return [y];
    });
  });
}
