// Creating tensors: from host data (a copy in through the backend's transfer API), and constants,
// ranges and seeded random values computed by kernels on the target device.
import { getKernel, type Device } from "../backend.js";
import { dtypeInfo, type AnyTypedArray, type DType } from "../dtype.js";
import { checkShape, formatShape, shapeSize, type Shape } from "../shape.js";
import { Tensor, copyIn, typedArrayDType } from "../tensor.js";
import { seedToKey } from "../random.js";
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
  /**
   * Where in the seed's stream to start, in Philox blocks of 4 values (default 0): a tensor drawn
   * at offset k·⌈n/4⌉ continues the one of n values drawn at offset (k−1)·⌈n/4⌉.
   */
  offset?: number;
}

/** Attributes of the `fill` kernel: every element of its (single, contiguous) input becomes `value`. */
export interface FillAttrs {
  readonly value: number;
}

/** Attributes of the `arange` kernel: element i of its input becomes `start + i·step`. */
export interface ArangeAttrs {
  readonly start: number;
  readonly step: number;
}

/**
 * Attributes of the `random` kernel (f32/f64 input, filled in place from Philox4×32-10 keyed by
 * `seed`, starting at block `offset`): uniform `a + (b − a)·u` with u in [0, 1), or normal `a + b·z`.
 */
export interface RandomAttrs {
  readonly distribution: "uniform" | "normal";
  readonly seed: number;
  readonly offset: number;
  readonly a: number;
  readonly b: number;
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

/** Runs a creation kernel that writes `t` in place on its device. */
function runCreation<A>(op: string, t: Tensor, attrs: A): void {
  if (t.size > 0) getKernel<A>(op, t.device)([t], attrs);
}

/** Options of {@link tensorFrom}. */
export interface TensorFromOptions extends CreateOptions {
  /** The shape (default: one dimension of the data's length). */
  shape?: Shape;
}

/**
 * A new tensor on `device` holding a copy of host data: one host → device transfer. The dtype
 * defaults to the typed array's (a `Uint16Array` holds bf16 or f16 bits and needs `dtype`); plain
 * numbers default to f32. Numbers are converted to the dtype on the host, except for bf16/f16,
 * which are copied in as f32 and rounded by the device's cast kernel.
 */
export function tensorFrom(data: AnyTypedArray | readonly number[], opts: TensorFromOptions = {}): Tensor {
  const typed = ArrayBuffer.isView(data);
  if (typed && data instanceof Uint16Array && !opts.dtype) throw new TypeError("tensorFrom: a Uint16Array holds bf16 or f16 bits; say which with { dtype }");
  const dtype = opts.dtype ?? (typed ? typedArrayDType(data as AnyTypedArray) : "f32");
  const shape = opts.shape ? [...opts.shape] : [data.length];
  checkShape(shape);
  if (shapeSize(shape) !== data.length) throw new TypeError(`tensorFrom: ${data.length} values do not fill shape ${formatShape(shape)}`);
  const info = dtypeInfo(dtype);
  const device = opts.device ?? "cpu";
  if ((dtype === "bf16" || dtype === "f16") && !(data instanceof Uint16Array)) {
    const f = tensorFrom(data, { shape, device });
    try {
      return finish(cast(f, dtype), opts);
    } finally {
      f.dispose();
    }
  }
  if (!info.isFloat) {
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      if (!Number.isInteger(v)) throw new TypeError(`tensorFrom: value ${v} at index ${i} is not an integer, as dtype ${dtype} needs`);
    }
  }
  const host = data instanceof info.array ? (data as AnyTypedArray) : (info.array as unknown as { from(a: ArrayLike<number>): AnyTypedArray }).from(data);
  const t = Tensor.empty(shape, dtype, device);
  try {
    copyIn(t, host);
  } catch (err) {
    t.dispose();
    throw err;
  }
  return finish(t, opts);
}

/**
 * A tensor from data: a typed array (its type gives the default dtype), a flat number array with a
 * `shape`, or nested arrays (shape inferred). Number data defaults to f32. The data is copied
 * (see {@link tensorFrom}).
 */
export function tensor(data: AnyTypedArray | Nested, shape?: Shape, opts: CreateOptions = {}): Tensor {
  if (ArrayBuffer.isView(data)) return tensorFrom(data as AnyTypedArray, { ...opts, shape: shape ?? [(data as AnyTypedArray).length] });
  const flat: number[] = [];
  const inferred: number[] = [];
  flatten(data as Nested, inferred, flat, 0);
  return tensorFrom(flat, { ...opts, shape: shape ?? inferred });
}

/** A tensor of `shape` with every element `value`, filled by a kernel on the target device. */
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
  if (!dtypeInfo(dtype).isFloat && !Number.isInteger(value)) throw new TypeError(`full: value ${value} is not an integer, as dtype ${dtype} needs`);
  const t = Tensor.empty(shape, dtype, opts.device ?? "cpu");
  runCreation<FillAttrs>("fill", t, { value });
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

/**
 * `[start, start + step, ...]` below `end` (like `range`); `arange(n)` is `[0 .. n-1]`. Computed
 * by a kernel on the target device (in f64, then stored in the dtype).
 */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  if (step === 0 || !Number.isFinite(step)) throw new RangeError(`arange: step must be a non-zero finite number, got ${step}`);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const dtype = opts.dtype ?? "f32";
  if (dtype === "bf16" || dtype === "f16") {
    const f = arange(start, end, step, { device: opts.device });
    try {
      return finish(cast(f, dtype), opts);
    } finally {
      f.dispose();
    }
  }
  if (!dtypeInfo(dtype).isFloat && (!Number.isInteger(start) || !Number.isInteger(step))) {
    throw new TypeError(`arange: start ${start} and step ${step} must be integers for dtype ${dtype}`);
  }
  const t = Tensor.empty([n], dtype, opts.device ?? "cpu");
  runCreation<ArangeAttrs>("arange", t, { start, step });
  return finish(t, opts);
}

function random(shape: Shape, opts: RandomOptions, distribution: RandomAttrs["distribution"], a: number, b: number): Tensor {
  checkShape(shape);
  const offset = opts.offset ?? 0;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`random: offset must be a non-negative integer, got ${offset}`);
  seedToKey(opts.seed); // validates the seed before anything is allocated
  const dtype = opts.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "f64") {
    if (!dtypeInfo(dtype).isFloat) throw new TypeError(`random: dtype ${dtype} is not a float dtype; draw f32 and cast`);
    const f = random(shape, { ...opts, dtype: "f32", requiresGrad: false }, distribution, a, b);
    try {
      return finish(cast(f, dtype), opts);
    } finally {
      f.dispose();
    }
  }
  const t = Tensor.empty(shape, dtype, opts.device ?? "cpu");
  try {
    runCreation<RandomAttrs>("random", t, { distribution, seed: opts.seed, offset, a, b });
  } catch (err) {
    t.dispose();
    throw err;
  }
  return finish(t, opts);
}

/** Uniform samples in [low, high) from the seeded counter-based generator. */
export function rand(shape: Shape, opts: RandomOptions & { low?: number; high?: number }): Tensor {
  return random(shape, opts, "uniform", opts.low ?? 0, opts.high ?? 1);
}

/** Normal samples with mean `mean` and standard deviation `std` from the seeded generator. */
export function randn(shape: Shape, opts: RandomOptions & { mean?: number; std?: number }): Tensor {
  return random(shape, opts, "normal", opts.mean ?? 0, opts.std ?? 1);
}
