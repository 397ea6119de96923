// Gradient norm and clipping over all trainable parameters. Everything is reduced on the
// gradients' device into one small vector, read to the host once per call (not once per
// parameter): Σ‖g‖², a finiteness probe Σ(g − g) (0 when every element is finite, NaN when one
// is NaN or ±Inf), and optionally one more scalar of the caller's (the step's loss).
import { cast, concat, gradNormStats, noGrad, scaleInPlace, tidy, type Tensor } from "@modulora/tensor";

/**
 * [Σ‖g‖², Σ(g − g), extra?] as f64 numbers, in one device → host read (zeros when no parameter
 * has a gradient). The two sums come from the fused {@link gradNormStats} op (one kernel over all
 * gradients, accumulated in f64); `extra` joins them in the same transfer.
 */
function reduceGrads(params: readonly Tensor[], extra?: Tensor): number[] {
  return tidy(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
    const parts: Tensor[] = [];
    if (grads.length > 0) parts.push(gradNormStats(grads));
    if (extra) parts.push(cast(extra, "f64").reshape([1]));
    if (parts.length === 0) return [0, 0];
    const host = Array.from((parts.length === 1 ? parts[0]! : concat(parts)).toFloat64Array());
    return grads.length > 0 ? host : [0, 0, ...host];
  });
}

/** The global L2 norm of the gradients of `params` (parameters without a gradient count as 0). */
export function gradNorm(params: readonly Tensor[]): number {
  return Math.sqrt(reduceGrads(params)[0]!);
}

/** Whether any gradient holds NaN or ±Inf (one reduction on the device, one read). */
export function gradsNonFinite(params: readonly Tensor[]): boolean {
  return reduceGrads(params)[1] !== 0;
}

/**
 * The global gradient norm and whether every gradient is finite, from one reduction and one host
 * read. The squares are summed in f64, so f32 and bf16 gradients never overflow the norm; a
 * norm of Inf with finite gradients means f64 squares overflowed. `extra`: a one-element
 * tensor (the step's loss) read in the same transfer, returned as `value`.
 */
export function gradNormChecked(params: readonly Tensor[]): { norm: number; finite: boolean };
export function gradNormChecked(params: readonly Tensor[], extra: Tensor): { norm: number; finite: boolean; value: number };
export function gradNormChecked(params: readonly Tensor[], extra?: Tensor): { norm: number; finite: boolean; value?: number } {
  if (extra && extra.size !== 1) throw new RangeError(`gradNormChecked: extra must hold one value, got shape [${extra.shape}]`);
  const [sq, probe, value] = reduceGrads(params, extra);
  const out = { norm: Math.sqrt(sq!), finite: probe === 0 };
  return extra ? { ...out, value: value! } : out;
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
