/**
 * Test helpers shared by every package: finite-difference gradient checks and closeness checks.
 * Import from `@modulora/tensor/testing`.
 * @packageDocumentation
 */
import { backward } from "./autograd.js";
import { noGrad, tidy } from "./engine.js";
import { mul } from "./ops/binary.js";
import { randn, tensorFrom } from "./ops/creation.js";
import { assign } from "./ops/inplace.js";
import { sum } from "./ops/reduce.js";
import { formatShape } from "./shape.js";
import type { Tensor } from "./tensor.js";

/** Options of {@link gradcheck}. */
export interface GradcheckOptions {
  /** Central-difference step (default 1e-6). */
  eps?: number;
  /** Absolute tolerance (default 1e-6). */
  atol?: number;
  /** Relative tolerance (default 1e-4). */
  rtol?: number;
  /** Seed of the random output weights (default 1). */
  seed?: number;
  /** Check at most this many elements per input (spread evenly); default all. */
  maxElements?: number;
}

/** What {@link gradcheck} measured. */
export interface GradcheckResult {
  /** Elements checked over all inputs. */
  checked: number;
  /** Largest |analytic - numeric| seen. */
  maxAbsError: number;
  /** Largest error relative to the tolerance (≤ 1 passes). */
  worstRatio: number;
}

/**
 * Checks the gradients of `fn` at `inputs` against central finite differences in f64.
 *
 * The scalar checked is `sum(fn(...inputs) * w)` with fixed random weights `w`, which tests the
 * full vector-Jacobian product. Every input with `requiresGrad` must be a contiguous f64 tensor.
 * Throws an Error listing the worst elements when any |analytic − numeric| > atol + rtol·|numeric|.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: readonly Tensor[], options: GradcheckOptions = {}): GradcheckResult {
  const eps = options.eps ?? 1e-6;
  const atol = options.atol ?? 1e-6;
  const rtol = options.rtol ?? 1e-4;
  const checkedInputs = inputs.filter((t) => t.requiresGrad);
  if (checkedInputs.length === 0) throw new Error("gradcheck: no input has requiresGrad = true");
  for (const t of checkedInputs) {
    if (t.dtype !== "f64") throw new Error(`gradcheck: input ${formatShape(t.shape)} is ${t.dtype}; use f64 inputs for finite differences`);
    if (!t.isContiguous) throw new Error("gradcheck: inputs must be contiguous");
    t.zeroGrad();
  }
  const probe = noGrad(() => tidy(() => fn(...inputs)));
  const wShape = probe.shape;
  probe.dispose();
  const w = randn(wShape, { dtype: "f64", seed: options.seed ?? 1 });
  try {
    const objective = () => tidy(() => sum(mul(fn(...inputs), w)).item());
    tidy(() => backward(sum(mul(fn(...inputs), w))));
    let checked = 0;
    let maxAbsError = 0;
    let worstRatio = 0;
    const failures: string[] = [];
    checkedInputs.forEach((x) => {
      const analytic = x.grad ? x.grad.toFloat64Array() : new Float64Array(x.size);
      const data = x.dataSync() as Float64Array;
      const limit = options.maxElements ?? x.size;
      const stride = Math.max(1, Math.floor(x.size / limit));
      for (let j = 0; j < x.size; j += stride) {
        const orig = data[j]!;
        data[j] = orig + eps;
        overwrite(x, data);
        const plus = noGrad(objective);
        data[j] = orig - eps;
        overwrite(x, data);
        const minus = noGrad(objective);
        data[j] = orig;
        overwrite(x, data);
        const numeric = (plus - minus) / (2 * eps);
        const err = Math.abs(analytic[j]! - numeric);
        const ratio = err / (atol + rtol * Math.abs(numeric));
        checked++;
        maxAbsError = Math.max(maxAbsError, err);
        worstRatio = Math.max(worstRatio, ratio);
        if (!(ratio <= 1) && failures.length < 8) {
          failures.push(`input #${inputs.indexOf(x)} ${formatShape(x.shape)} element ${j}: analytic ${analytic[j]}, numeric ${numeric}`);
        }
      }
      x.zeroGrad();
    });
    if (failures.length > 0 || !Number.isFinite(worstRatio)) {
      throw new Error(`gradcheck failed (max abs error ${maxAbsError.toExponential(3)}, atol ${atol}, rtol ${rtol}):\n  ${failures.join("\n  ")}`);
    }
    return { checked, maxAbsError, worstRatio };
  } finally {
    w.dispose();
  }
}

/** Copies `data` into `x` on its device, through the transfer API (an in-place write). */
function overwrite(x: Tensor, data: Float64Array): void {
  const src = tensorFrom(data, { shape: x.shape, dtype: x.dtype, device: x.device });
  try {
    noGrad(() => assign(x, src));
  } finally {
    src.dispose();
  }
}

/** Largest absolute element-wise difference of two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: lengths differ (${a.length} vs ${b.length})`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d; // NaN propagates as the max
  }
  return m;
}

/** ‖a − b‖ / ‖b‖ over all elements, in f64 (a relative L2 error). */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relL2: lengths ${a.length} and ${b.length} differ`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/** Throws unless every |a[i] − b[i]| ≤ atol + rtol·|b[i]|; the message shows the worst element. */
export function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, atol = 1e-5, rtol = 1e-5, what = "values"): void {
  if (a.length !== b.length) throw new Error(`${what}: lengths differ (${a.length} vs ${b.length})`);
  let worst = -1;
  let worstRatio = 0;
  for (let i = 0; i < a.length; i++) {
    const r = Math.abs(a[i]! - b[i]!) / (atol + rtol * Math.abs(b[i]!));
    if (!(r <= worstRatio)) {
      worstRatio = r;
      worst = i;
    }
  }
  if (!(worstRatio <= 1)) throw new Error(`${what}: element ${worst} is ${a[worst]}, expected ${b[worst]} (atol ${atol}, rtol ${rtol})`);
}
