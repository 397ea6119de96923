// The `optqSolve` op's contract: OPTQ's column solve (GPTQ's error-feedback loop) on one weight,
// dispatched by the op registry like any kernel, so that a quantizer reaches the numerics
// through @modulora/core and a backend can bring its own solver (registerKernel(OPTQ_SOLVE_OP,
// device, kernel)). The CPU kernel (cpu/optq.ts) runs the addon's f64 solver.

/** The op's name in the kernel registry. */
export const OPTQ_SOLVE_OP = "optqSolve";

/**
 * Attributes of the `optqSolve` op. Inputs: W f32 [out, in] and the calibration Hessian f64
 * [in, in] (`hessianScale` · Σ x xᵀ is the H the solve uses), contiguous, on the kernel's device.
 * Outputs, new tensors on that device: codes u8 [out, in] (original column order), scales f32
 * [out, groups], zeros u8 [out, groups], g_idx i32 [in] (⌊i / groupSize⌋ without act-order).
 */
export interface OptqSolveAttrs {
  /** 2, 3, 4 or 8. */
  readonly bits: number;
  /** Input columns per group (divides `in`); `in` for one group per row. */
  readonly groupSize: number;
  /** Symmetric grid (zero = 2^(b−1)). */
  readonly symmetric: boolean;
  /** Quantize columns by descending diag(H) and record them in g_idx (GPTQ's `desc_act`). */
  readonly actOrder: boolean;
  /** Group parameters computed up front from the original W (GPTQ's `static_groups`). */
  readonly staticGroups: boolean;
  /** Damping: H += percdamp · mean(diag H) · I. */
  readonly percdamp: number;
  /** Columns per lazy batch update. */
  readonly blockSize: number;
  /** H = hessianScale · the Hessian input (OPTQ's 2/n for a Σ xᵀx over n rows; 1 for an H already scaled). */
  readonly hessianScale: number;
  /**
   * Asks the kernel to finish off the calling thread: it returns its outputs at once and calls
   * `onDone(null)` once they are written, or `onDone(error)`. The inputs and outputs must stay
   * alive and untouched until then. Without it the kernel returns when the outputs are written.
   * A kernel that cannot work asynchronously computes synchronously and calls `onDone` before
   * returning.
   */
  readonly onDone?: (error: Error | null) => void;
}
