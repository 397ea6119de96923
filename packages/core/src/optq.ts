// OPTQ's column solve for quantizer plugins: the `optqSolve` op of @modulora/tensor's kernel
// registry, run on the weight's device where that device has the kernel, else on a host copy.
import { getKernel, hasKernel, OPTQ_SOLVE_OP, type OptqSolveAttrs, type Tensor } from "@modulora/tensor";

/**
 * Options of {@link optqSolve}: the `optqSolve` op's attributes (see `OptqSolveAttrs`), all but
 * `bits` and `groupSize` optional, with defaults symmetric false, actOrder false, staticGroups
 * false, percdamp 0.01, blockSize 128, hessianScale 1.
 */
export type OptqSolveOptions = Pick<OptqSolveAttrs, "bits" | "groupSize"> & Partial<Omit<OptqSolveAttrs, "bits" | "groupSize" | "onDone">>;

/** What {@link optqSolve} returns: the unpacked parts of an `affine` weight (for `createAffineWeight`). */
export interface OptqSolution {
  /** u8 [out, in], original column order. */
  codes: Uint8Array;
  /** f32 [out, groups]. */
  scales: Float32Array;
  /** u8 [out, groups]. */
  zeros: Uint8Array;
  /** i32 [in]: the group of each input column (⌊i / groupSize⌋ without act-order). */
  gIdx: Int32Array;
}

/** The solve's inputs on a device with the kernel, and what to free afterwards. */
function solveInputs(weight: Tensor, hessian: Tensor, options: OptqSolveOptions) {
  for (const t of [weight, hessian]) t.assertAlive(OPTQ_SOLVE_OP);
  if (hessian.device !== weight.device) {
    throw new Error(`${OPTQ_SOLVE_OP}: W is on '${weight.device}' and H on '${hessian.device}'; put both on one device`);
  }
  // Host fallback: a device without the kernel gives one copy each of W and H to `cpu`.
  const device = hasKernel(OPTQ_SOLVE_OP, weight.device) ? weight.device : "cpu";
  const temporary: Tensor[] = [];
  const prepare = (t: Tensor) => {
    let u = device === t.device ? t : t.to(device);
    if (u !== t) temporary.push(u);
    if (!u.isContiguous) temporary.push((u = u.contiguous()));
    return u;
  };
  const inputs = [prepare(weight), prepare(hessian)];
  const attrs: OptqSolveAttrs = {
    bits: options.bits, groupSize: options.groupSize, symmetric: options.symmetric ?? false, actOrder: options.actOrder ?? false,
    staticGroups: options.staticGroups ?? false, percdamp: options.percdamp ?? 0.01, blockSize: options.blockSize ?? 128,
    hessianScale: options.hessianScale ?? 1,
  };
  return { kernel: getKernel<OptqSolveAttrs>(OPTQ_SOLVE_OP, device), inputs, attrs, temporary };
}

/** The outputs as host arrays (one copy out each), freeing them. */
function solution(outputs: Tensor[]): OptqSolution {
  try {
    const [codes, scales, zeros, gIdx] = outputs.map((t) => t.dataSync());
    return { codes: codes as Uint8Array, scales: scales as Float32Array, zeros: zeros as Uint8Array, gIdx: gIdx as Int32Array };
  } finally {
    for (const t of outputs) t.dispose();
  }
}

/**
 * OPTQ/GPTQ (Frantar et al., 2022) on one weight W [out, in] (f32) with its inputs' Hessian
 * (f64 [in, in], scaled by `hessianScale`; not modified): dead inputs (H[i,i] = 0) get
 * H[i,i] = 1 and W[:, i] = 0, H is damped by `percdamp · mean(diag H)`, and columns are quantized
 * in blocks of `blockSize` with GPTQ's min-max rule per group, each column's error fed forward
 * through the upper Cholesky factor of H⁻¹.
 *
 * It runs the `optqSolve` kernel of W's device (the op registry of @modulora/tensor; `cpu` runs
 * the native f64 solver). A device without one (`cuda`, `sim`) is served on the host: W and H are
 * copied to `cpu` once each. Errors name the op that failed (`optqQuantize: the Hessian is not
 * positive definite ...` from the native solver, with what to change).
 */
export function optqSolve(weight: Tensor, hessian: Tensor, options: OptqSolveOptions): OptqSolution {
  const { kernel, inputs, attrs, temporary } = solveInputs(weight, hessian, options);
  try {
    return solution(kernel(inputs, attrs));
  } finally {
    for (const t of temporary) t.dispose();
  }
}

/**
 * {@link optqSolve} off the calling thread where the kernel can (the CPU kernel runs on a libuv
 * worker), so the event loop stays free; the same result, bit for bit. `weight` and `hessian`
 * must stay alive and unmodified until the promise settles.
 */
export async function optqSolveAsync(weight: Tensor, hessian: Tensor, options: OptqSolveOptions): Promise<OptqSolution> {
  const { kernel, inputs, attrs, temporary } = solveInputs(weight, hessian, options);
  try {
    let outputs: Tensor[] = [];
    await new Promise<void>((resolve, reject) => {
      outputs = kernel(inputs, { ...attrs, onDone: (err) => (err ? reject(err) : resolve()) });
    }).catch((err: unknown) => {
      for (const t of outputs) t.dispose();
      throw err;
    });
    return solution(outputs);
  } finally {
    for (const t of temporary) t.dispose();
  }
}
