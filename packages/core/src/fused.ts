// Bridges the known formats to the fused native dequantize-matmul kernels of @modulora/kernels:
// Ŵ is decoded tile by tile from the packed codes inside the GEMM, never stored whole.
import {
  affineDequantize, affineMatmul, affineMatmulInputGrad, codebookDequantize, codebookMatmul, codebookMatmulInputGrad,
  type AffineArrays, type CodebookArrays,
} from "@modulora/kernels";
import { Tensor } from "@modulora/tensor";
import type { AffineWeight, CodebookWeight, QuantizedWeight } from "./formats/types.js";

/** A fused kernel set for one weight, on contiguous 2-D f32 tensors. */
export interface FusedKernel {
  /** Y = X·Ŵᵀ: x [M, in] → [M, out]. */
  forward(x: Tensor): Tensor;
  /** dX = dY·Ŵ: dy [M, out] → [M, in]. */
  inputGrad(dy: Tensor): Tensor;
  /** Rows [r0, r1) of Ŵ into `out` (native, fast). */
  dequantize(r0: number, r1: number, out: Float32Array): void;
}

function affineArrays(w: AffineWeight): AffineArrays {
  return {
    outFeatures: w.outFeatures, inFeatures: w.inFeatures, bits: w.bits, groupSize: w.groupSize, groups: w.groups,
    qweight: w.qweight.view() as Int32Array, scales: w.scales.view() as Uint16Array, zeroKind: w.zeroKind,
    zeros: w.zeros.view() as Uint8Array | Uint16Array, gIdx: w.gIdx ? (w.gIdx.view() as Int32Array) : null,
  };
}

function codebookArrays(w: CodebookWeight): CodebookArrays {
  const v = <T>(t: Tensor | null) => (t ? (t.view() as unknown as T) : null);
  return {
    outFeatures: w.outFeatures, inFeatures: w.inFeatures, bits: w.bits, blockSize: w.blockSize,
    codes: w.codes.view() as Uint8Array, levels: w.levels.view() as Float32Array,
    absmax: v<Float32Array>(w.absmax), absmaxCodes: v<Uint8Array>(w.absmaxCodes), absmaxScale: v<Float32Array>(w.absmaxScale), absmaxOffset: v<Float32Array>(w.absmaxOffset),
  };
}

type Kernels<A> = {
  arrays: (w: any) => A;
  matmul: (a: A, x: Float32Array, m: number, y: Float32Array) => void;
  inputGrad: (a: A, dy: Float32Array, m: number, dx: Float32Array) => void;
  dequantize: (a: A, r0: number, r1: number, out: Float32Array) => void;
};

// One row per known format: the only place that maps a format to its native kernels.
const FUSED: Partial<Record<QuantizedWeight["format"], Kernels<any>>> = {
  affine: { arrays: affineArrays, matmul: affineMatmul, inputGrad: affineMatmulInputGrad, dequantize: affineDequantize } satisfies Kernels<AffineArrays>,
  codebook: { arrays: codebookArrays, matmul: codebookMatmul, inputGrad: codebookMatmulInputGrad, dequantize: codebookDequantize } satisfies Kernels<CodebookArrays>,
};

/** The fused kernels for `w`, or null where the format has none (then the generic path runs). */
export function fusedKernelFor(w: QuantizedWeight): FusedKernel | null {
  const k = FUSED[w.format];
  if (!k) return null;
  return {
    forward(x) {
      const m = x.shape[0]!;
      const y = Tensor.empty([m, w.outFeatures], "f32");
      if (m > 0) k.matmul(k.arrays(w), x.view() as Float32Array, m, y.view() as Float32Array);
      return y;
    },
    inputGrad(dy) {
      const m = dy.shape[0]!;
      const dx = Tensor.empty([m, w.inFeatures], "f32");
      if (m > 0) k.inputGrad(k.arrays(w), dy.view() as Float32Array, m, dx.view() as Float32Array);
      return dx;
    },
    dequantize(r0, r1, out) {
      if (r1 > r0) k.dequantize(k.arrays(w), r0, r1, out);
    },
  };
}
