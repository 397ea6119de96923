// The conformance table's row type, the per-dtype bounds and the per-case result.
import type { DType, Tensor } from "../index.js";

/** A seeded generator of test values (a small LCG, independent of the engine's Philox). */
export class CaseRng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (Math.imul(this.s, 1664525) + 1013904223) >>> 0;
    return (this.s >>> 8) / 16777216;
  }
  /** `n` uniform values in [lo, hi). */
  uniform(n: number, lo = -1, hi = 1): Float64Array {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.next();
    return out;
  }
  /** `n` values in ±[lo, hi): away from 0 (kinks of abs, relu, sign stay out of reach). */
  awayFromZero(n: number, lo = 0.1, hi = 1): Float64Array {
    const out = this.uniform(n, lo, hi);
    for (let i = 0; i < n; i++) if (this.next() < 0.5) out[i] = -out[i]!;
    return out;
  }
  /** `n` integers in [lo, hi). */
  ints(n: number, lo: number, hi: number): Float64Array {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + Math.floor((hi - lo) * this.next());
    return out;
  }
}

/** One input of a case: values as f64 (rounded to `dtype` by the runner before use). */
export interface CaseInput {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly data: Float64Array;
  /** Whether the backward check differentiates with respect to this input. */
  readonly grad?: boolean;
  /**
   * `"transposed"`: the op gets a non-contiguous view, the transpose of the last two axes of a
   * contiguous tensor (rank ≥ 2). Default: a contiguous tensor.
   */
  readonly layout?: "contiguous" | "transposed";
  /**
   * The input is given to the reference only: it is not uploaded, and the forward's tensor list
   * skips it (the unpacked codes a quantized case decodes Ŵ from, independently of the packing).
   */
  readonly referenceOnly?: boolean;
}

/**
 * One row of the conformance table: an op at one dtype and shape, with its float64 reference.
 *
 * The runner builds the inputs from a generator seeded by the case name, rounds them to their
 * dtypes, runs {@link ConformanceCase.forward} on the backend and
 * {@link ConformanceCase.reference} on the rounded values in f64, and compares. When an input has
 * `grad`, it also backpropagates `sum(y ⊙ w)` (fixed random `w`) and compares each gradient with
 * {@link ConformanceCase.referenceGrad} or, without one, with central finite differences of the
 * reference in f64.
 */
export interface ConformanceCase {
  /** The public op under test (`softmax`, `attention`...). */
  readonly op: string;
  /** The compute dtype of the case. */
  readonly dtype: DType;
  /** Shapes and options, for the report (`[3,4099] axis=-1`). */
  readonly label: string;
  /** Registry kernels this case runs on the backend, forward and backward (coverage check). */
  readonly kernels: readonly string[];
  /**
   * Entries of the quantized format table this case runs, as `format.entry` (`affine.forward`,
   * `affine.inputGrad`, `codebook.dequantize`): the coverage check of the format table.
   */
  readonly quantKernels?: readonly string[];
  /** The inputs, from a seeded generator. */
  inputs(rng: CaseRng): CaseInput[];
  /**
   * The op on the backend's tensors (in-place ops return the tensors they update); `device` is
   * the backend's device, for ops that create tensors there. The tensors are the inputs in order,
   * less the {@link CaseInput.referenceOnly} ones.
   */
  forward(xs: Tensor[], device: string): Tensor | Tensor[];
  /** The same computation in f64 on the rounded input values, one array per output. */
  reference(xs: Float64Array[]): Float64Array | Float64Array[];
  /** Analytic vector-Jacobian product of the reference: the gradient of `Σ y ⊙ w` per input (null where none). */
  referenceGrad?(xs: Float64Array[], w: Float64Array): (Float64Array | null)[];
  /**
   * The length over which rounding errors accumulate (a reduction or dot-product length); the
   * bound grows with its square root. Default 1.
   */
  readonly depth?: number;
  /** Same for the backward (default {@link ConformanceCase.depth}). */
  readonly gradDepth?: number;
  /** Multiplier of the unit roundoff in the bound (default 8; transcendental-heavy ops take more, say why). */
  readonly ulps?: number;
  /**
   * Step of the finite-difference reference gradient, relative to max(0.01, |x|) (default 1e-3).
   * Sharper functions need a smaller one.
   */
  readonly fdStep?: number;
  /** Same for the gradients (default {@link ConformanceCase.ulps}). */
  readonly gradUlps?: number;
  /** The outputs must match the reference bit for bit (copies, casts, masks). */
  readonly exact?: boolean;
  /** The gradients must match bit for bit (default {@link ConformanceCase.exact}). */
  readonly exactGrad?: boolean;
}

/** Unit roundoff per dtype: half an ulp of 1. */
export const UNIT_ROUNDOFF: Readonly<Partial<Record<DType, number>>> = {
  f64: 2 ** -53,
  f32: 2 ** -24,
  // Ready for the bf16 compute policy (issue 14, item 5): outputs rounded to bf16 or f16.
  bf16: 2 ** -8,
  f16: 2 ** -11,
};

/** Accuracy of the finite-difference reference gradient (5-point stencil in f64), added to gradient bounds. */
export const FINITE_DIFFERENCE_ERROR = 1e-9;

/**
 * The bound of a case at `dtype`: `ulps · u(dtype) · sqrt(depth)`, checked per element as
 * `|got − ref| ≤ bound · (|ref| + rms(ref))` (rms(ref) scales the errors of elements near zero).
 */
export function conformanceBound(dtype: DType, depth = 1, ulps = 8): number {
  const u = UNIT_ROUNDOFF[dtype] ?? 0; // integer outputs compare exactly
  return ulps * u * Math.sqrt(Math.max(1, depth));
}

/** What one check (one output or one gradient) measured. */
export interface ConformanceCheck {
  /** `out0`, `out1`..., or `grad0`... (the input index). */
  readonly what: string;
  readonly maxAbsError: number;
  /** Max of `|got − ref| / (|ref| + rms(ref))`. */
  readonly maxRelError: number;
  readonly bound: number;
  readonly passed: boolean;
  /** Why it failed (shape mismatch, NaN, the worst element). */
  readonly detail?: string;
}

/** The result of one case. */
export interface ConformanceResult {
  /** `op dtype label`. */
  readonly name: string;
  readonly op: string;
  readonly dtype: DType;
  readonly label: string;
  readonly passed: boolean;
  readonly checks: readonly ConformanceCheck[];
  /** The errors of the check closest to its bound, and that bound (0: compared exactly). */
  readonly maxRelError: number;
  readonly maxAbsError: number;
  readonly bound: number;
  /** An exception thrown by the backend, or a leak, when that is why the case failed. */
  readonly error?: string;
  readonly ms: number;
}

/** `op dtype label`: a case's unique name. */
export function caseName(c: Pick<ConformanceCase, "op" | "dtype" | "label">): string {
  return `${c.op} ${c.dtype} ${c.label}`;
}
