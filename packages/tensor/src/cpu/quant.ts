// Host kernels of the quantized ops for host-memory backends (`cpu`, and `sim`, which runs the
// same kernels on private storage): the `affine` and `codebook` formats, by the fused native
// dequantize-matmul kernels of the addon (Ŵ is decoded tile by tile inside the GEMM, never whole).
// They take f32 only (no `bf16` flag): quantMatmul gives them an f32 cast of a bf16 input and
// rounds their result to bf16 once (quant/ops.ts), the bf16 policy of every host kernel.
import {
  affineDequantize, affineMatmul, affineMatmulInputGrad, codebookDequantize, codebookMatmul, codebookMatmulInputGrad,
  type AffineArrays, type CodebookArrays,
} from "@modulora/kernels";
import type { Device } from "../backend.js";
import { Tensor } from "../tensor.js";
import { registerQuantFormatKernels, type QuantFormatKernels } from "../quant/table.js";
import { packedNumber, packedTensor, type PackedWeight } from "../quant/weight.js";
import { hostView } from "./host.js";

/** Host arrays of an `affine` weight (tensors qweight, scales, zeros, g_idx?; params groupSize, groups, zeroKind). */
function affineArrays(w: PackedWeight): AffineArrays {
  const zeroKind = w.params["zeroKind"];
  if (zeroKind !== "int" && zeroKind !== "real") throw new TypeError(`affine weight: zeroKind must be "int" or "real", got ${JSON.stringify(zeroKind)}`);
  const gIdx = w.tensors["gIdx"] ?? null;
  return {
    outFeatures: w.outFeatures, inFeatures: w.inFeatures, bits: w.bits,
    groupSize: packedNumber(w, "groupSize"), groups: packedNumber(w, "groups"), zeroKind,
    qweight: hostView(packedTensor(w, "qweight")) as Int32Array,
    scales: hostView(packedTensor(w, "scales")) as Uint16Array,
    zeros: hostView(packedTensor(w, "zeros")) as Uint8Array | Uint16Array,
    gIdx: gIdx ? (hostView(gIdx) as Int32Array) : null,
  };
}

/** Host arrays of a `codebook` weight (tensors codes, levels, absmax? or absmaxCodes/absmaxScale/absmaxOffset; param blockSize). */
function codebookArrays(w: PackedWeight): CodebookArrays {
  const opt = <T>(name: string) => {
    const t = w.tensors[name];
    return t ? (hostView(t) as unknown as T) : null;
  };
  return {
    outFeatures: w.outFeatures, inFeatures: w.inFeatures, bits: w.bits, blockSize: packedNumber(w, "blockSize"),
    codes: hostView(packedTensor(w, "codes")) as Uint8Array, levels: hostView(packedTensor(w, "levels")) as Float32Array,
    absmax: opt<Float32Array>("absmax"), absmaxCodes: opt<Uint8Array>("absmaxCodes"),
    absmaxScale: opt<Float32Array>("absmaxScale"), absmaxOffset: opt<Float32Array>("absmaxOffset"),
  };
}

interface NativeSet<A> {
  arrays: (w: PackedWeight) => A;
  matmul: (a: A, x: Float32Array, m: number, y: Float32Array) => void;
  inputGrad: (a: A, dy: Float32Array, m: number, dx: Float32Array) => void;
  dequantize: (a: A, r0: number, r1: number, out: Float32Array) => void;
}

/** The format-table entry of one format on `device`, from its native kernels. */
function hostFormatKernels<A>(device: Device, k: NativeSet<A>): QuantFormatKernels {
  return {
    forward(x, w) {
      const m = x.shape[0]!;
      const y = Tensor.empty([m, w.outFeatures], "f32", device);
      if (m > 0) k.matmul(k.arrays(w), hostView(x) as Float32Array, m, hostView(y) as Float32Array);
      return y;
    },
    inputGrad(dy, w) {
      const m = dy.shape[0]!;
      const dx = Tensor.empty([m, w.inFeatures], "f32", device);
      if (m > 0) k.inputGrad(k.arrays(w), hostView(dy) as Float32Array, m, hostView(dx) as Float32Array);
      return dx;
    },
    dequantize(w, r0, r1) {
      const out = Tensor.empty([r1 - r0, w.inFeatures], "f32", device);
      if (r1 > r0) k.dequantize(k.arrays(w), r0, r1, hostView(out) as Float32Array);
      return out;
    },
  };
}

/** Registers the `affine` and `codebook` format kernels of the quantized ops for the host-memory device `device`. */
export function registerCpuQuant(device: Device): void {
  registerQuantFormatKernels("affine", device, hostFormatKernels<AffineArrays>(device, {
    arrays: affineArrays, matmul: affineMatmul, inputGrad: affineMatmulInputGrad, dequantize: affineDequantize,
  }));
  registerQuantFormatKernels("codebook", device, hostFormatKernels<CodebookArrays>(device, {
    arrays: codebookArrays, matmul: codebookMatmul, inputGrad: codebookMatmulInputGrad, dequantize: codebookDequantize,
  }));
}
