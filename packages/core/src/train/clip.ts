// Gradient norm and clipping over all trainable parameters. The norm is one reduction on the
// gradients' device and one read to the host per call (not one per parameter).
import { countNonFinite } from "@modulora/kernels";
import { cast, concat, noGrad, scaleInPlace, square, sum, tidy, type Tensor } from "@modulora/tensor";

/** Σ‖g‖² over the gradients of `params`, read to the host once (0 when none has a gradient). */
function squaredNorm(params: readonly Tensor[]): number {
  return tidy(() => {
    // Each gradient's sum of squares in its own dtype, then added in f64, as a scalar on the device.
    const parts = params.filter((p) => p.grad).map((p) => cast(sum(square(p.grad!)), "f64").reshape([1]));
    return parts.length === 0 ? 0 : sum(concat(parts)).item();
  });
}

/** The global L2 norm of the gradients of `params` (parameters without a gradient count as 0). */
export function gradNorm(params: readonly Tensor[]): number {
  return Math.sqrt(squaredNorm(params));
}

/** Whether any gradient holds NaN or ±Inf (reads every gradient: use {@link gradNormChecked} per step). */
export function gradsNonFinite(params: readonly Tensor[]): boolean {
  for (const p of params) {
    const g = p.grad;
    if (g && (g.dtype === "f32" || g.dtype === "f64") && countNonFinite(g.view() as Float32Array) > 0) return true;
  }
  return false;
}

/**
 * The global gradient norm and whether every gradient is finite, with one host read when they
 * are: a NaN or ±Inf anywhere makes the norm non-finite, so only a non-finite norm (or squares
 * that overflowed) looks at the gradients one by one.
 */
export function gradNormChecked(params: readonly Tensor[]): { norm: number; finite: boolean } {
  const norm = gradNorm(params);
  return { norm, finite: Number.isFinite(norm) || !gradsNonFinite(params) };
}

/**
 * Scales all gradients so that their global norm is at most `maxNorm` (as
 * torch.nn.utils.clip_grad_norm_). Returns the norm before clipping. `norm`: the norm when the
 * caller has it already (from {@link gradNormChecked}).
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number, norm = gradNorm(params)): number {
  if (Number.isFinite(norm) && norm > maxNorm && maxNorm > 0) {
    const factor = maxNorm / (norm + 1e-6);
    noGrad(() => {
      for (const p of params) if (p.grad) scaleInPlace(p.grad, factor);
    });
  }
  return norm;
}
