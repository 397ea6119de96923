// The frozen quantized linear product Y = X·Ŵᵀ as an op whose backward gives dX = dY·Ŵ and
// nothing for Ŵ. The tape keeps no tensor for it at all: only a reference to the packed weight
// (in the op's attributes). Ŵ is re-materialized tile by tile in backward, never stored.
import { allocScratch, gemm, releaseScratch } from "@modulora/kernels";
import { OpError, Tensor, checkFloat, registerKernel, reshape, runOp1, hasKernel, type OpDef } from "@modulora/tensor";
import { formatTraits } from "./formats/traits.js";
import type { QuantizedWeight } from "./formats/types.js";
import { fusedKernelFor } from "./fused.js";

/** Which implementation computes with the packed weight. */
export type QuantPath = "auto" | "fused" | "generic";

/** Attributes of the quantized linear op. */
export interface QuantLinearAttrs {
  readonly weight: QuantizedWeight;
  /** Rows of Ŵ materialized at once on the generic path. */
  readonly rowBlock: number;
  /** Resolved path: `fused` (native dequantize-matmul) or `generic` (materialize + dense GEMM). */
  readonly path: "fused" | "generic";
}

/** Y = X·Ŵᵀ; backward: dX = dY·Ŵ. Saves nothing. */
export const quantLinearDef: OpDef<QuantLinearAttrs> = {
  name: "quantLinear",
  backward: ([dy], ctx) => [runOp1(quantLinearInputGradDef, [dy!], ctx.attrs)],
};

/** dX = dY·Ŵ (not differentiable). */
export const quantLinearInputGradDef: OpDef<QuantLinearAttrs> = { name: "quantLinearInputGrad" };

/** Default rows of Ŵ per block on the generic path. */
export const DEFAULT_ROW_BLOCK = 64;

/** Resolves `auto` to the fused path where the format has a native kernel. */
export function resolvePath(weight: QuantizedWeight, path: QuantPath = "auto"): "fused" | "generic" {
  const fused = formatTraits(weight).fused && fusedKernelFor(weight) !== null;
  if (path === "fused" && !fused) {
    throw new Error(`quantLinear: the ${weight.format} format has no fused kernel; use path "generic" (or "auto")`);
  }
  return path === "generic" ? "generic" : fused ? "fused" : "generic";
}

/**
 * `x [..., in] · Ŵᵀ → [..., out]` for a frozen quantized weight. Differentiable with respect to
 * `x` only. `rowBlock` bounds the generic path's extra memory to rowBlock × in f32 values.
 */
export function quantLinear(x: Tensor, weight: QuantizedWeight, options: { path?: QuantPath; rowBlock?: number } = {}): Tensor {
  x.assertAlive("quantLinear");
  checkFloat("quantLinear", [x]);
  ensureQuantKernels();
  if (x.rank < 1 || x.shape[x.rank - 1] !== weight.inFeatures) {
    throw new OpError("quantLinear", `input's last dimension must be in = ${weight.inFeatures} (weight [${weight.outFeatures}, ${weight.inFeatures}])`, [x]);
  }
  const rowBlock = options.rowBlock ?? DEFAULT_ROW_BLOCK;
  if (!Number.isInteger(rowBlock) || rowBlock < 1) throw new OpError("quantLinear", `rowBlock must be a positive integer, got ${rowBlock}`, [x]);
  const path = resolvePath(weight, options.path);
  if (path === "fused" && x.dtype !== "f32") throw new OpError("quantLinear", "the fused path computes in f32; use path \"generic\" for f64", [x]);
  const lead = x.shape.slice(0, -1);
  const x2 = reshape(x, [-1, weight.inFeatures]);
  const y2 = runOp1(quantLinearDef, [x2], { weight, rowBlock, path });
  const y = reshape(y2, [...lead, weight.outFeatures]);
  x2.dispose();
  y2.dispose();
  return y;
}

/** Runs fn with a scratch block of `rows × in` values of the weight, freed afterwards. */
function withRowBlocks(w: QuantizedWeight, rowBlock: number, f64: boolean, fn: (r0: number, r1: number, block: Float32Array | Float64Array) => void): void {
  const rows = Math.min(rowBlock, w.outFeatures);
  const f32Buf = allocScratch(rows * w.inFeatures * 4);
  const f64Buf = f64 ? allocScratch(rows * w.inFeatures * 8) : null;
  try {
    const f32 = new Float32Array(f32Buf);
    const wide = f64Buf ? new Float64Array(f64Buf) : null;
    for (let r0 = 0; r0 < w.outFeatures; r0 += rows) {
      const r1 = Math.min(w.outFeatures, r0 + rows);
      const n = (r1 - r0) * w.inFeatures;
      formatTraits(w).dequantize(w, r0, r1, f32);
      if (wide) for (let i = 0; i < n; i++) wide[i] = f32[i]!;
      fn(r0, r1, wide ?? f32);
    }
  } finally {
    releaseScratch(f32Buf);
    if (f64Buf) releaseScratch(f64Buf);
  }
}

/** Generic path, forward: Y[:, r0:r1] = X · Ŵ[r0:r1, :]ᵀ, one row block at a time. */
export function genericForward(x: Tensor, w: QuantizedWeight, rowBlock: number): Tensor {
  const m = x.shape[0]!;
  const y = Tensor.empty([m, w.outFeatures], x.dtype as "f32" | "f64");
  const xs = x.isContiguous ? x : x.contiguous();
  const xa = xs.view() as Float32Array;
  const ya = y.view() as Float32Array;
  if (m > 0) {
    withRowBlocks(w, rowBlock, x.dtype === "f64", (r0, r1, block) => {
      gemm(false, true, m, r1 - r0, w.inFeatures, 1, xa, w.inFeatures, 0, block as Float32Array, w.inFeatures, 0, 0, ya.subarray(r0) as Float32Array, w.outFeatures, 0, 1);
    });
  }
  if (xs !== x) xs.dispose();
  return y;
}

/** Generic path, input gradient: dX = Σ_blocks dY[:, r0:r1] · Ŵ[r0:r1, :]. */
export function genericInputGrad(dy: Tensor, w: QuantizedWeight, rowBlock: number): Tensor {
  const m = dy.shape[0]!;
  const dx = Tensor.empty([m, w.inFeatures], dy.dtype as "f32" | "f64");
  const ds = dy.isContiguous ? dy : dy.contiguous();
  const da = ds.view() as Float32Array;
  const xa = dx.view() as Float32Array;
  if (m > 0) {
    withRowBlocks(w, rowBlock, dy.dtype === "f64", (r0, r1, block) => {
      gemm(false, false, m, w.inFeatures, r1 - r0, 1, da.subarray(r0) as Float32Array, w.outFeatures, 0, block as Float32Array, w.inFeatures, 0, r0 === 0 ? 0 : 1, xa, w.inFeatures, 0, 1);
    });
  }
  if (ds !== dy) ds.dispose();
  return dx;
}

let registered = false;

/** Registers the CPU kernels of the quantized ops (explicit; called on first use). */
export function ensureQuantKernels(): void {
  if (registered || hasKernel("quantLinear", "cpu")) {
    registered = true;
    return;
  }
  registered = true;
  registerKernel<QuantLinearAttrs>("quantLinear", "cpu", ([x], { weight, rowBlock, path }) => {
    if (path === "fused") return [withContiguous(x!, (c) => fusedKernelFor(weight)!.forward(c))];
    return [genericForward(x!, weight, rowBlock)];
  });
  registerKernel<QuantLinearAttrs>("quantLinearInputGrad", "cpu", ([dy], { weight, rowBlock, path }) => {
    if (path === "fused") return [withContiguous(dy!, (c) => fusedKernelFor(weight)!.inputGrad(c))];
    return [genericInputGrad(dy!, weight, rowBlock)];
  });
}

function withContiguous(t: Tensor, fn: (c: Tensor) => Tensor): Tensor {
  const c = t.isContiguous ? t : t.contiguous();
  try {
    return fn(c);
  } finally {
    if (c !== t) c.dispose();
  }
}
