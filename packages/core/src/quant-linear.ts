// The frozen quantized linear product Y = X·Ŵᵀ, differentiable in X only (dX = dY·Ŵ, nothing
// for Ŵ). Two paths, neither of which stores Ŵ:
// - fused: the registry op `quantMatmul` of @modulora/tensor, whose kernel for the weight's
//   (format, backend) decodes Ŵ tile by tile inside the product;
// - generic: a composite op of registry ops that takes Ŵ one row block at a time — decoded on
//   the device by the format's `dequantize` kernel where there is one, otherwise materialized by
//   the weight itself into a host block and uploaded — then multiplies it densely. Its backward
//   re-materializes the blocks; the tape keeps nothing but the attributes.
import {
  OpError, cast, checkFloat, hasQuantFormatKernels, concat, matmul, noGrad, quantDequantize, quantMatmul, reshape, runComposite, slice, tensorFrom, addInPlace,
  type Device, type OpDef, type Tensor,
} from "@modulora/tensor";
import { formatTraits, packedWeightOf, weightDevice } from "./formats/traits.js";
import type { QuantizedWeight } from "./formats/types.js";

/** Which implementation computes with the packed weight. */
export type QuantPath = "auto" | "fused" | "generic";

/** Attributes of the generic quantized linear op. */
export interface QuantLinearAttrs {
  readonly weight: QuantizedWeight;
  /** Rows of Ŵ materialized at once on the generic path. */
  readonly rowBlock: number;
  /** Resolved path (the composite op is the generic path). */
  readonly path: "fused" | "generic";
}

/**
 * The generic path as one autograd node: forward {@link genericForward}, backward
 * {@link genericInputGrad} (Ŵ re-materialized block by block). Saves nothing.
 */
export const quantLinearDef: OpDef<QuantLinearAttrs> = {
  name: "quantLinear",
  backward: ([dy], ctx) => [noGrad(() => genericInputGrad(dy!, ctx.attrs.weight, ctx.attrs.rowBlock))],
};

/** Default rows of Ŵ per block on the generic path. */
export const DEFAULT_ROW_BLOCK = 64;

/**
 * Resolves `auto` to the fused path where the weight's format has kernels on `device` (default:
 * the device its tensors live on, `cpu` for a custom weight). Asking for `fused` where there are
 * none is an error that says what to use instead.
 */
export function resolvePath(weight: QuantizedWeight, path: QuantPath = "auto", device: Device | null = weightDevice(weight)): "fused" | "generic" {
  const fused = formatTraits(weight).fused && device !== null && packedWeightOf(weight) !== null && hasQuantFormatKernels(weight.format, device);
  if (path === "fused" && !fused) {
    const where = formatTraits(weight).fused ? ` on device '${device}'` : "";
    throw new Error(`quantLinear: the ${weight.format} format has no fused kernel${where}; use path "generic" (or "auto")`);
  }
  return path === "generic" ? "generic" : fused ? "fused" : "generic";
}


/**
 * `x [..., in] · Ŵᵀ → [..., out]` for a frozen quantized weight, on `x`'s device. Differentiable
 * with respect to `x` only. `rowBlock` bounds the generic path's extra memory to rowBlock × in
 * values (one block on the device, and one on the host when the weight materializes there).
 */
export function quantLinear(x: Tensor, weight: QuantizedWeight, options: { path?: QuantPath; rowBlock?: number } = {}): Tensor {
  x.assertAlive("quantLinear");
  checkFloat("quantLinear", [x]);
  if (x.rank < 1 || x.shape[x.rank - 1] !== weight.inFeatures) {
    throw new OpError("quantLinear", `input's last dimension must be in = ${weight.inFeatures} (weight [${weight.outFeatures}, ${weight.inFeatures}])`, [x]);
  }
  const rowBlock = options.rowBlock ?? DEFAULT_ROW_BLOCK;
  if (!Number.isInteger(rowBlock) || rowBlock < 1) throw new OpError("quantLinear", `rowBlock must be a positive integer, got ${rowBlock}`, [x]);
  const wDevice = weightDevice(weight);
  if (wDevice !== null && wDevice !== x.device) {
    throw new OpError("quantLinear", `the input is on '${x.device}' and the ${weight.format} weight on '${wDevice}': put the weight on the model's device when loading it`, [x]);
  }
  const path = resolvePath(weight, options.path, x.device);
  if (path === "fused" && x.dtype === "f64") throw new OpError("quantLinear", "the fused path computes in f32 (or bf16); use path \"generic\" for f64", [x]);
  if (x.dtype === "bf16" && path === "generic") {
    // bf16 activations on the generic path: the product runs in f32 (f32 accumulation) and is
    // stored back as bf16. (The fused path takes bf16 itself: quantMatmul computes it the same way,
    // in the format's kernels where they take bf16, around them by the same casts otherwise.)
    const x32 = cast(x, "f32");
    const y32 = quantLinear(x32, weight, { ...options, path });
    const y = cast(y32, "bf16");
    x32.dispose();
    y32.dispose();
    return y;
  }
  const lead = x.shape.slice(0, -1);
  const x2 = reshape(x, [-1, weight.inFeatures]);
  const y2 = path === "fused" ? quantMatmul(x2, packedWeightOf(weight)!) : runComposite(quantLinearDef, [x2], { weight, rowBlock, path }, ([a], attrs) => [genericForward(a!, attrs.weight, attrs.rowBlock)])[0]!;
  const y = reshape(y2, [...lead, weight.outFeatures]);
  x2.dispose();
  y2.dispose();
  return y;
}

/**
 * Calls `fn(r0, r1, block)` for each row block of Ŵ, `block` [r1 − r0, in] in `dtype` on
 * `device` (freed after `fn`). A format with a dequantize kernel on `device` decodes on the
 * device; otherwise the weight materializes into one reused host block, uploaded per block.
 */
function forEachRowBlock(w: QuantizedWeight, rowBlock: number, device: Device, dtype: "f32" | "f64", fn: (r0: number, r1: number, block: Tensor) => void): void {
  const rows = Math.min(rowBlock, w.outFeatures);
  const packed = formatTraits(w).fused ? packedWeightOf(w) : null;
  const onDevice = packed !== null && packed.device === device && hasQuantFormatKernels(packed.format, device);
  const host = onDevice ? null : new Float32Array(rows * w.inFeatures);
  for (let r0 = 0; r0 < w.outFeatures; r0 += rows) {
    const r1 = Math.min(w.outFeatures, r0 + rows);
    let block: Tensor;
    if (onDevice) {
      block = quantDequantize(packed!, r0, r1);
    } else {
      const n = (r1 - r0) * w.inFeatures;
      const h = n === host!.length ? host! : host!.subarray(0, n);
      formatTraits(w).dequantize(w, r0, r1, h);
      block = tensorFrom(h, { shape: [r1 - r0, w.inFeatures], device });
    }
    if (dtype === "f64") {
      const wide = cast(block, "f64");
      block.dispose();
      block = wide;
    }
    try {
      fn(r0, r1, block);
    } finally {
      block.dispose();
    }
  }
}

/** Generic path, forward: Y[:, r0:r1] = X · Ŵ[r0:r1, :]ᵀ, one row block at a time (x [M, in] → [M, out]). */
export function genericForward(x: Tensor, w: QuantizedWeight, rowBlock: number): Tensor {
  const dtype = checkFloat("quantLinear", [x]) === "f64" ? "f64" : "f32";
  const parts: Tensor[] = [];
  try {
    forEachRowBlock(w, rowBlock, x.device, dtype, (_r0, _r1, block) => {
      parts.push(matmul(x, block, { transB: true })); // [M, r1 − r0]
    });
    return parts.length === 1 ? parts.pop()! : concat(parts, 1);
  } finally {
    for (const p of parts) p.dispose();
  }
}

/** Generic path, input gradient: dX = Σ_blocks dY[:, r0:r1] · Ŵ[r0:r1, :] (dy [M, out] → [M, in]). */
export function genericInputGrad(dy: Tensor, w: QuantizedWeight, rowBlock: number): Tensor {
  const dtype = checkFloat("quantLinearInputGrad", [dy]) === "f64" ? "f64" : "f32";
  const m = dy.shape[0]!;
  let dx: Tensor | null = null;
  try {
    forEachRowBlock(w, rowBlock, dy.device, dtype, (r0, r1, block) => {
      const part = slice(dy, [0, r0], [m, r1]); // [M, r1 − r0]
      const prod = matmul(part, block); // [M, in]
      part.dispose();
      if (dx === null) dx = prod;
      else {
        addInPlace(dx, prod);
        prod.dispose();
      }
    });
    return dx!;
  } catch (err) {
    (dx as Tensor | null)?.dispose();
    throw err;
  }
}
