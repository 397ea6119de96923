// Creating tensors: from data, constants, ranges and seeded random values.
import type { Device } from "../backend.js";
import { dtypeInfo, type AnyTypedArray, type DType } from "../dtype.js";
import { normalFill, uniformFill } from "../random.js";
import { checkShape, formatShape, shapeSize, type Shape } from "../shape.js";
import { Tensor, typedArrayDType } from "../tensor.js";
import { fillArray } from "@modulora/kernels";
import { cast } from "./cast.js";

/** dtype and device of a new tensor. */
export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

/** Options of the random creation functions. */
export interface RandomOptions extends CreateOptions {
  /** Seed of the counter-based generator (required: results are reproducible by design). */
  seed: number;
}

/** Nested arrays of numbers (a scalar, a list, a list of lists...). */
export type Nested = number | readonly Nested[];

function flatten(data: Nested, shape: number[], out: number[], depth: number): void {
  if (typeof data === "number") {
    if (depth !== shape.length) throw new TypeError("tensor: nested array is ragged");
    out.push(data);
    return;
  }
  if (depth === shape.length) shape.push(data.length);
  else if (shape[depth] !== data.length) throw new TypeError(`tensor: nested array is ragged at depth ${depth}`);
  for (const d of data) flatten(d, shape, out, depth + 1);
}

function finish<D extends DType>(t: Tensor<D>, opts: CreateOptions): Tensor<D> {
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/**
 * A tensor from data: a typed array (its type gives the default dtype), a flat number array with a
 * `shape`, or nested arrays (shape inferred). Number data defaults to f32. The data is copied.
 */
export function tensor(data: AnyTypedArray | Nested, shape?: Shape, opts: CreateOptions = {}): Tensor {
  let flat: ArrayLike<number>;
  let inferred: number[];
  let srcDType: DType;
  if (ArrayBuffer.isView(data)) {
    flat = data as AnyTypedArray;
    inferred = [flat.length];
    srcDType = typedArrayDType(data as AnyTypedArray);
    if (data instanceof Uint16Array && !opts.dtype) throw new TypeError("tensor: a Uint16Array holds bf16 or f16 bits; say which with { dtype }");
    if (data instanceof Uint16Array) srcDType = opts.dtype!;
  } else {
    const out: number[] = [];
    inferred = [];
    flatten(data as Nested, inferred, out, 0);
    flat = out;
    srcDType = "f32";
  }
  const finalShape = shape ? [...shape] : inferred;
  checkShape(finalShape);
  if (shapeSize(finalShape) !== flat.length) throw new TypeError(`tensor: ${flat.length} values do not fill shape ${formatShape(finalShape)}`);
  const dtype = opts.dtype ?? srcDType;
  const info = dtypeInfo(dtype);
  if ((dtype === "bf16" || dtype === "f16") && !(data instanceof Uint16Array)) {
    const f = tensor(Float32Array.from(flat), finalShape, { device: opts.device });
    try {
      return finish(cast(f, dtype), opts);
    } finally {
      f.dispose();
    }
  }
  const t = Tensor.empty(finalShape, dtype, opts.device ?? "cpu");
  const view = t.view();
  if (!info.isFloat) {
    for (let i = 0; i < flat.length; i++) {
      const v = flat[i]!;
      if (!Number.isInteger(v)) {
        t.dispose();
        throw new TypeError(`tensor: value ${v} at index ${i} is not an integer, as dtype ${dtype} needs`);
      }
    }
  }
  (view as AnyTypedArray).set(flat as ArrayLike<number>);
  return finish(t, opts);
}

/** A tensor of `shape` with every element `value`. */
export function full(shape: Shape, value: number, opts: CreateOptions = {}): Tensor {
  const dtype = opts.dtype ?? "f32";
  if (dtype === "bf16" || dtype === "f16") {
    const f = full(shape, value, { device: opts.device });
    try {
      return finish(cast(f, dtype), opts);
    } finally {
      f.dispose();
    }
  }
  const t = Tensor.empty(shape, dtype, opts.device ?? "cpu");
  if (value !== 0) fillArray(t.view(), value);
  return finish(t, opts);
}

/** Zeros. */
export function zeros(shape: Shape, opts: CreateOptions = {}): Tensor {
  return full(shape, 0, opts);
}

/** Ones. */
export function ones(shape: Shape, opts: CreateOptions = {}): Tensor {
  return full(shape, 1, opts);
}

/** Zeros with the shape, dtype and device of `t`. */
export function zerosLike(t: Tensor): Tensor {
  return full(t.shape, 0, { dtype: t.dtype, device: t.device });
}

/** Ones with the shape, dtype and device of `t`. */
export function onesLike(t: Tensor): Tensor {
  return full(t.shape, 1, { dtype: t.dtype, device: t.device });
}

/** `[start, start + step, ...]` below `end` (like `range`); `arange(n)` is `[0 .. n-1]`. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  if (step === 0 || !Number.isFinite(step)) throw new RangeError(`arange: step must be a non-zero finite number, got ${step}`);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = start + i * step;
  return tensor(values, [n], { dtype: opts.dtype ?? "f32", device: opts.device, requiresGrad: opts.requiresGrad });
}

function random(shape: Shape, opts: RandomOptions, fill: (a: Float32Array | Float64Array, seed: number) => void): Tensor {
  checkShape(shape);
  const dtype = opts.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "f64") {
    const f = random(shape, { ...opts, dtype: "f32", requiresGrad: false }, fill);
    try {
      return finish(cast(f, dtype), opts);
    } finally {
      f.dispose();
    }
  }
  const t = Tensor.empty(shape, dtype, opts.device ?? "cpu");
  fill(t.view() as Float32Array | Float64Array, opts.seed);
  return finish(t, opts);
}

/** Uniform samples in [low, high) from the seeded counter-based generator. */
export function rand(shape: Shape, opts: RandomOptions & { low?: number; high?: number }): Tensor {
  const low = opts.low ?? 0;
  const high = opts.high ?? 1;
  return random(shape, opts, (a, seed) => {
    uniformFill(a, seed);
    if (low !== 0 || high !== 1) for (let i = 0; i < a.length; i++) a[i] = low + (high - low) * a[i]!;
  });
}

/** Normal samples with mean `mean` and standard deviation `std` from the seeded generator. */
export function randn(shape: Shape, opts: RandomOptions & { mean?: number; std?: number }): Tensor {
  const mean = opts.mean ?? 0;
  const std = opts.std ?? 1;
  return random(shape, opts, (a, seed) => {
    normalFill(a, seed);
    if (mean !== 0 || std !== 1) for (let i = 0; i < a.length; i++) a[i] = mean + std * a[i]!;
  });
}
