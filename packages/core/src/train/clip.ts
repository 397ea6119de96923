import { countNonFinite } from "@modulora/kernels";
import { noGrad, scaleInPlace, tidy, square, sum, type Tensor } from "@modulora/tensor";

/** The global L2 norm of the gradients of `params` (parameters without a gradient count as 0). */
export function gradNorm(params: readonly Tensor[]): number {
  let total = 0;
  tidy(() => {
    for (const p of params) if (p.grad) total += sum(square(p.grad)).item();
  });
  return Math.sqrt(total);
}

/** Whether any gradient holds NaN or ±Inf. */
export function gradsNonFinite(params: readonly Tensor[]): boolean {
  for (const p of params) {
    const g = p.grad;
    if (g && (g.dtype === "f32" || g.dtype === "f64") && countNonFinite(g.view() as Float32Array) > 0) return true;
  }
  return false;
}

/**
 * Scales all gradients so that their global norm is at most `maxNorm` (as
 * torch.nn.utils.clip_grad_norm_). Returns the norm before clipping.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  const norm = gradNorm(params);
  if (Number.isFinite(norm) && norm > maxNorm && maxNorm > 0) {
    const factor = maxNorm / (norm + 1e-6);
    noGrad(() => {
      for (const p of params) if (p.grad) scaleInPlace(p.grad, factor);
    });
  }
  return norm;
}
