// The CUDA matmul kernel: one strided-batched cuBLASLt product (the raw export `matmul`, row-major
// semantics), f32 in strict f32, f64 in f64, bf16 operands with f32 accumulation. Operands whose
// last two axes are row- or column-major and whose batch axes collapse to one stride are passed
// as they are (a transposed view costs nothing); others are copied once by the device.
import { getKernel, registerKernel, type Device } from "../backend.js";
import type { MatmulAttrs } from "../ops/matmul.js";
import type { BroadcastAttrs } from "../ops/shape.js";
import type { FillAttrs } from "../ops/creation.js";
import { broadcastStrides, shapeSize } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { code, cudaFn, deviceIndex, empty, launch, ptr } from "./util.js";

interface Operand {
  t: Tensor;
  flipped: boolean;
  ld: number;
  batchStride: number;
  temp: Tensor | null;
}

/** Layout of the last two dims: row-major (`flipped` false) or column-major, or null. */
function matrixLayout(t: Tensor): { flipped: boolean; ld: number } | null {
  const r = t.shape[t.rank - 2]!;
  const c = t.shape[t.rank - 1]!;
  const s0 = t.strides[t.rank - 2]!;
  const s1 = t.strides[t.rank - 1]!;
  if ((s1 === 1 || c === 1) && (s0 >= c || r === 1)) return { flipped: false, ld: Math.max(r === 1 ? c : s0, c, 1) };
  if ((s0 === 1 || r === 1) && (s1 >= r || c === 1)) return { flipped: true, ld: Math.max(c === 1 ? r : s1, r, 1) };
  return null;
}

/** One stride walking the broadcast batch, or null when the batch axes do not collapse. */
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
  const shape = [...batch, ...t.shape.slice(-2)];
  const temp = getKernel<BroadcastAttrs>("broadcastTo", t.device)([t], { shape })[0]!;
  const rc = t.shape[t.rank - 2]! * t.shape[t.rank - 1]!;
  return { t: temp, flipped: false, ld: Math.max(t.shape[t.rank - 1]!, 1), batchStride: shapeSize(batch) > 1 ? rc : 0, temp };
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
