// Runs the conformance table on one backend: inputs from a seeded generator, the op on the
// backend, the f64 reference on the host, errors against per-dtype bounds.
import { backward, getBackend, listKernels, listQuantFormats, dtypeInfo, memory, tidy, mul, tensor, sum, transpose, type DType, type Tensor } from "../index.js";
import { CONFORMANCE_CASES, KERNELS_WITHOUT_CASE, QUANT_KERNELS_WITHOUT_CASE } from "./cases/index.js";
import { bf16Bits, bitsToNumber16, f16Bits, numel, permuteRef } from "./reference.js";
import {
  CaseRng, FINITE_DIFFERENCE_ERROR, caseName, conformanceBound,
  type CaseInput, type ConformanceCase, type ConformanceCheck, type ConformanceResult,
} from "./types.js";

/** Options of {@link runBackendConformance}. */
export interface ConformanceOptions {
  /** A registered backend (device) name: `cpu`, `sim`, `cuda`... */
  readonly backend: string;
  /** Keeps the cases whose name (`op dtype label`) contains this string (or matches this RegExp). */
  readonly filter?: string | RegExp;
  /** Called after each case, in table order. */
  readonly onResult?: (result: ConformanceResult) => void;
  /** The table to run (default: every case, {@link CONFORMANCE_CASES}). */
  readonly cases?: readonly ConformanceCase[];
}

/** Cases whose name matches `filter`: contains the string, or any of the strings, or matches the RegExp (all cases without one). */
export function selectCases(filter?: string | RegExp | readonly string[], cases: readonly ConformanceCase[] = CONFORMANCE_CASES): ConformanceCase[] {
  const texts = typeof filter === "string" ? [filter] : Array.isArray(filter) ? filter.filter((f) => f !== "") : undefined;
  if (filter === undefined || texts?.length === 0) return [...cases];
  return cases.filter((c) => (texts ? texts.some((t) => caseName(c).includes(t)) : (filter as RegExp).test(caseName(c))));
}

/**
 * Runs the conformance table on `backend` and returns one result per case (a case that throws
 * is a failed result carrying the error, not an exception). An unknown backend is an error that
 * lists the registered ones.
 */
export async function runBackendConformance(options: ConformanceOptions): Promise<ConformanceResult[]> {
  getBackend(options.backend); // throws for an unknown backend, listing the known ones
  const results: ConformanceResult[] = [];
  for (const c of selectCases(options.filter, options.cases)) {
    const r = runConformanceCase(c, options.backend);
    results.push(r);
    options.onResult?.(r);
  }
  return results;
}

/**
 * Kernels registered for `backend` that no case of the table runs, less the deliberate
 * exceptions of {@link KERNELS_WITHOUT_CASE}: a new kernel without a case shows up here.
 */
export function kernelsWithoutCase(backend: string, cases: readonly ConformanceCase[] = CONFORMANCE_CASES): string[] {
  const covered = new Set(cases.flatMap((c) => c.kernels));
  return listKernels(backend).filter((k) => !covered.has(k) && !(k in KERNELS_WITHOUT_CASE));
}

/** The entries of one format in the quantized format table, as the cases name them. */
export const QUANT_FORMAT_ENTRIES = ["forward", "inputGrad", "dequantize"] as const;

/**
 * Entries of the quantized format table registered for `backend` (`format.forward`,
 * `format.inputGrad`, `format.dequantize` for each of its formats) that no case runs, less the
 * deliberate exceptions of {@link QUANT_KERNELS_WITHOUT_CASE}: a format registered for the
 * backend without cases shows up here, entry by entry.
 */
export function quantKernelsWithoutCase(backend: string, cases: readonly ConformanceCase[] = CONFORMANCE_CASES): string[] {
  const covered = new Set(cases.flatMap((c) => c.quantKernels ?? []));
  return listQuantFormats(backend)
    .flatMap((f) => QUANT_FORMAT_ENTRIES.map((e) => `${f}.${e}`))
    .filter((k) => !covered.has(k) && !(k in QUANT_KERNELS_WITHOUT_CASE));
}

/** Values of `data` rounded to `dtype` (what the backend's tensor will hold). */
export function roundToDType(data: Float64Array, dtype: DType): Float64Array {
  switch (dtype) {
    case "f64":
      return Float64Array.from(data);
    case "f32":
      return Float64Array.from(data, Math.fround);
    case "bf16":
      return Float64Array.from(data, (x) => bitsToNumber16(bf16Bits(x), "bf16"));
    case "f16":
      return Float64Array.from(data, (x) => bitsToNumber16(f16Bits(Math.fround(x)), "f16"));
    default:
      for (const v of data) if (!Number.isInteger(v)) throw new Error(`conformance: ${v} is not an integer for ${dtype}`);
      return Float64Array.from(data);
  }
}

function hostArray(data: Float64Array, dtype: DType): ArrayBufferView {
  if (dtype === "bf16") return Uint16Array.from(data, bf16Bits);
  if (dtype === "f16") return Uint16Array.from(data, (x) => f16Bits(Math.fround(x)));
  return new (dtypeInfo(dtype).array)(data) as unknown as ArrayBufferView;
}

/** The shape's last two axes swapped, and the permutation that does it. */
function swapLast(shape: readonly number[]): { shape: number[]; perm: number[] } {
  const perm = shape.map((_, i) => i);
  const r = shape.length;
  [perm[r - 2], perm[r - 1]] = [perm[r - 1]!, perm[r - 2]!];
  return { shape: perm.map((p) => shape[p]!), perm };
}

/** The leaf tensor (holding the gradient) and the tensor the op gets (a view for `transposed`). */
function toBackend(input: CaseInput, values: Float64Array, device: string): { leaf: Tensor; arg: Tensor } {
  const opts = { dtype: input.dtype, device, requiresGrad: input.grad ?? false };
  if (input.layout !== "transposed") {
    const leaf = tensor(hostArray(values, input.dtype) as Float32Array, [...input.shape], opts);
    return { leaf, arg: leaf };
  }
  if (input.shape.length < 2) throw new Error("conformance: a transposed layout needs rank ≥ 2");
  const { shape, perm } = swapLast(input.shape);
  const leaf = tensor(hostArray(permuteRef(values, input.shape, perm), input.dtype) as Float32Array, shape, opts);
  return { leaf, arg: transpose(leaf) };
}

/** The leaf's gradient in the input's logical layout. */
function gradOf(input: CaseInput, leaf: Tensor): Float64Array {
  const g = leaf.grad;
  if (!g) return new Float64Array(numel(input.shape));
  const data = readHost(g);
  if (input.layout !== "transposed") return data;
  const { shape, perm } = swapLast(input.shape);
  return permuteRef(data, shape, perm);
}

/**
 * A tensor's elements copied to the host as f64 (16-bit floats decoded here, not by a cast
 * kernel), through the synchronous transfer `dataSync()`.
 */
export function readHost(t: Tensor): Float64Array {
  const d = t.dataSync();
  if (t.dtype === "bf16" || t.dtype === "f16") return Float64Array.from(d as Uint16Array, (b) => bitsToNumber16(b, t.dtype as "bf16"));
  return Float64Array.from(d as ArrayLike<number>);
}

/** Compares `got` with `ref` element by element; see {@link conformanceBound} for the measure. */
export function compareArrays(what: string, got: Float64Array, ref: Float64Array, bound: number, exact = false): ConformanceCheck {
  if (got.length !== ref.length) {
    return { what, maxAbsError: Infinity, maxRelError: Infinity, bound, passed: false, detail: `${got.length} elements, expected ${ref.length}` };
  }
  let ss = 0;
  let finite = 0;
  for (const r of ref) if (Number.isFinite(r)) (ss += r * r), finite++;
  const rms = finite ? Math.sqrt(ss / finite) : 0;
  const floor = rms > 0 ? rms : 1;
  let maxAbs = 0;
  let maxRel = 0;
  let worst = -1;
  for (let i = 0; i < ref.length; i++) {
    const g = got[i]!;
    const r = ref[i]!;
    if (g === r || (Number.isNaN(g) && Number.isNaN(r))) continue; // equal values, infinities included
    const abs = Math.abs(g - r);
    const rel = exact ? Infinity : Number.isFinite(abs) ? abs / (Math.abs(r) + floor) : Infinity;
    if (!(abs <= maxAbs)) maxAbs = abs;
    if (!(rel <= maxRel)) {
      maxRel = rel;
      worst = i;
    }
  }
  const passed = exact ? worst < 0 : maxRel <= bound;
  const detail = passed ? undefined : `element ${worst} is ${got[worst]}, expected ${ref[worst]}`;
  return { what, maxAbsError: maxAbs, maxRelError: exact && worst < 0 ? 0 : maxRel, bound: exact ? 0 : bound, passed, detail };
}

function asList<T>(x: T | T[]): T[] {
  return Array.isArray(x) ? x : [x];
}

/** Central differences (5-point stencil) of `Σ reference(xs)[0] ⊙ w` with respect to `xs[i]`, in f64. */
export function finiteDifferenceGrad(c: ConformanceCase, xs: Float64Array[], i: number, w: Float64Array): Float64Array {
  const objective = () => {
    const y = asList(c.reference(xs))[0]!;
    let s = 0;
    for (let j = 0; j < y.length; j++) if (w[j] !== 0) s += y[j]! * w[j]!;
    return s;
  };
  const x = xs[i]!;
  const g = new Float64Array(x.length);
  for (let j = 0; j < x.length; j++) {
    const orig = x[j]!;
    const h = (c.fdStep ?? 1e-3) * Math.max(1e-2, Math.abs(orig));
    const at = (d: number) => {
      x[j] = orig + d;
      return objective();
    };
    g[j] = (at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h);
    x[j] = orig;
  }
  return g;
}

/** Runs one case on `backend`. */
export function runConformanceCase(c: ConformanceCase, backend: string): ConformanceResult {
  const name = caseName(c);
  const t0 = performance.now();
  const rng = new CaseRng(hashString(name));
  const checks: ConformanceCheck[] = [];
  let error: string | undefined;
  const before = memory(backend).tensors;
  try {
    const inputs = c.inputs(rng);
    const values = inputs.map((inp) => roundToDType(inp.data, inp.dtype));
    const refOut = asList(c.reference(values.map((v) => Float64Array.from(v))));
    const wantsGrad = inputs.some((inp) => inp.grad);
    // Weights of the backward's objective Σ y ⊙ w, rounded to y's dtype once it is known.
    const wRaw = wantsGrad ? rng.uniform(refOut[0]!.length) : undefined;
    let w: Float64Array | undefined;
    const bound = conformanceBound(c.dtype, c.depth, c.ulps);
    const gradBound = conformanceBound(c.dtype, c.gradDepth ?? c.depth, c.gradUlps ?? c.ulps);
    tidy(() => {
      const placed = inputs.map((inp, i) => {
        if (!inp.referenceOnly) return toBackend(inp, values[i]!, backend);
        if (inp.grad) throw new Error(`input ${i} is reference-only and cannot take a gradient`);
        return null;
      });
      const outs = asList(c.forward(placed.flatMap((p) => (p ? [p.arg] : [])), backend));
      if (outs.length !== refOut.length) throw new Error(`the case returned ${outs.length} outputs, its reference ${refOut.length}`);
      outs.forEach((o, k) => checks.push(compareArrays(`out${k}`, readHost(o), refOut[k]!, bound, c.exact)));
      if (!wantsGrad) return;
      const y = outs[0]!;
      w = roundToDType(wRaw!, y.dtype);
      backward(sum(mul(y, tensor(hostArray(w, y.dtype) as Float32Array, [...y.shape], { dtype: y.dtype, device: backend }))));
      const analytic = c.referenceGrad?.(values.map((v) => Float64Array.from(v)), w!);
      inputs.forEach((inp, i) => {
        if (!inp.grad) return;
        const ref = analytic ? analytic[i]! : finiteDifferenceGrad(c, values.map((v) => Float64Array.from(v)), i, w!);
        const got = gradOf(inp, placed[i]!.leaf);
        checks.push(compareArrays(`grad${i}`, got, ref, analytic ? gradBound : gradBound + FINITE_DIFFERENCE_ERROR, (c.exactGrad ?? c.exact) === true && !!analytic));
      });
    });
    const after = memory(backend).tensors;
    if (after !== before) error = `leaked ${after - before} tensor handle(s)`;
  } catch (err) {
    error = (err as Error).message ?? String(err);
  }
  const failed = checks.filter((k) => !k.passed);
  // The check closest to its bound (exact checks count by their error alone) is the one reported.
  const ratio = (k: ConformanceCheck) => (k.bound > 0 ? k.maxRelError / k.bound : k.passed ? 0 : Infinity);
  const worst = checks.reduce<ConformanceCheck | undefined>((a, k) => (!a || ratio(k) > ratio(a) ? k : a), undefined);
  return {
    name, op: c.op, dtype: c.dtype, label: c.label,
    passed: !error && failed.length === 0,
    checks,
    maxRelError: worst?.maxRelError ?? 0,
    maxAbsError: worst?.maxAbsError ?? 0,
    bound: worst?.bound ?? 0,
    error: error ?? (failed.length ? failed.map((k) => `${k.what}: ${k.detail} (error ${k.maxRelError.toExponential(2)} > bound ${k.bound.toExponential(2)})`).join("; ") : undefined),
    ms: performance.now() - t0,
  };
}

/** FNV-1a of a string: each case's generator seed. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** One report line: `ok   softmax f32 [3,4099] axis=-1  err 1.2e-7 ≤ 3.1e-6 (abs 4.0e-9)`. */
export function formatResult(r: ConformanceResult): string {
  const status = r.passed ? "ok  " : "FAIL";
  const err = `err ${r.maxRelError.toExponential(2)} ≤ ${r.bound.toExponential(2)} (abs ${r.maxAbsError.toExponential(2)})`;
  return `${status} ${r.name}  ${r.error && !r.passed ? r.error : err}  ${r.ms.toFixed(0)} ms`;
}
