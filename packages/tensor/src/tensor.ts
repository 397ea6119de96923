import { getBackend, type Device } from "./backend.js";
import { dtypeInfo, type AnyTypedArray, type ArrayFor, type DType } from "./dtype.js";
import { retrackTensor, trackTensor, untrackTensor } from "./engine.js";
import { OpError } from "./errors.js";
import { checkShape, contiguousStrides, formatShape, shapeSize, type Shape } from "./shape.js";
import { Storage } from "./storage.js";
import type { Node } from "./autograd.js";
import * as ops from "./ops/index.js";

let nextId = 1;

/** Options for creating a tensor. */
export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  /** Track gradients for this (leaf) tensor. */
  requiresGrad?: boolean;
}

/**
 * An n-dimensional array on native storage. Handles are cheap: views (reshape of contiguous data,
 * transpose, slice) share storage with the tensor they view; the storage is freed when the last
 * handle is disposed. Every handle must be disposed, by {@link Tensor.dispose} or by an enclosing
 * `tidy()`.
 */
export class Tensor<D extends DType = DType> {
  /** @internal Brand used by scope bookkeeping. */
  readonly __isTensor = true;
  /** Unique id of this handle. */
  readonly id: number;
  readonly shape: readonly number[];
  /** Element strides of this view into its storage. */
  readonly strides: readonly number[];
  /** Element offset of this view into its storage. */
  readonly offset: number;
  readonly dtype: D;
  readonly device: Device;
  /** @internal */
  readonly storage: Storage;
  /** Gradient accumulated by `backward()` (leaf tensors that require grad). */
  grad: Tensor | null = null;
  /** @internal The autograd node that produced this tensor, if recorded. */
  gradFn: Node | null = null;
  /** @internal Which output of `gradFn` this is. */
  gradOutput = 0;
  private _requiresGrad = false;
  private _disposed = false;

  /** @internal Use the creation functions (`tensor`, `zeros`, `Tensor.empty`...) instead. */
  constructor(storage: Storage, shape: Shape, strides: readonly number[], offset: number, dtype: D, scoped = true) {
    this.id = nextId++;
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze([...strides]);
    this.offset = offset;
    this.dtype = dtype;
    this.device = storage.device;
    storage.retain();
    trackTensor(this as Tensor, scoped);
  }

  /** New contiguous, zero-filled tensor. */
  static empty<D extends DType = "f32">(shape: Shape, dtype: D = "f32" as D, device: Device = "cpu"): Tensor<D> {
    checkShape(shape);
    const info = dtypeInfo(dtype);
    const backend = getBackend(device);
    if (!backend.supportsDtype(dtype)) throw new TypeError(`dtype ${dtype} is not supported on device '${device}'`);
    const storage = new Storage(backend, shapeSize(shape) * info.size);
    return new Tensor(storage, shape, contiguousStrides(shape), 0, dtype);
  }

  /** @internal A new handle on the same storage with another shape/strides/offset (a view). */
  viewAs(shape: Shape, strides: readonly number[], offset: number, scoped = true): Tensor<D> {
    return new Tensor(this.storage, shape, strides, offset, this.dtype, scoped);
  }

  /** Number of elements. */
  get size(): number {
    return shapeSize(this.shape);
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** Whether this view's elements are laid out row-major without gaps. */
  get isContiguous(): boolean {
    let s = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== s) return false;
      s *= this.shape[i]!;
    }
    return true;
  }

  /** Whether {@link Tensor.dispose} was called. */
  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Whether gradients flow to or through this tensor. */
  get requiresGrad(): boolean {
    return this._requiresGrad;
  }

  /** Marks a leaf tensor as a parameter whose gradient `backward()` accumulates into `.grad`. */
  set requiresGrad(value: boolean) {
    if (this.gradFn && !value) throw new Error("requiresGrad: cannot turn off gradients of a non-leaf tensor; use detach()");
    if (value && !dtypeInfo(this.dtype).isFloat) throw new TypeError(`requiresGrad: only float tensors can require gradients, this one is ${this.dtype}`);
    this._requiresGrad = value;
  }

  /** Sets {@link Tensor.requiresGrad} and returns this tensor. */
  requireGrad(value = true): this {
    this.requiresGrad = value;
    return this;
  }

  /** @internal Attaches the autograd node that produced this tensor. */
  setGradFn(node: Node, output: number): void {
    this.gradFn = node;
    this.gradOutput = output;
    this._requiresGrad = true;
    node.ref();
    retrackTensor(this as Tensor);
  }

  /** Throws an OpError naming `op` if this tensor was disposed. */
  assertAlive(op: string): void {
    if (this._disposed || this.storage.released) {
      throw new OpError(op, `tensor #${this.id} ${formatShape(this.shape)} ${this.dtype} was disposed and cannot be used`);
    }
  }

  /**
   * Typed array over this view's storage from its first element to the end of the storage
   * (no copy). Kernels index it with {@link Tensor.strides}.
   */
  storageArray(): ArrayFor<D> {
    this.assertAlive("storageArray");
    const info = dtypeInfo(this.dtype);
    const n = this.storage.byteLength / info.size - this.offset;
    return new info.array(this.storage.buffer, this.offset * info.size, n) as ArrayFor<D>;
  }

  /** Zero-copy typed array of a contiguous tensor's elements. Valid until the tensor is disposed. */
  view(): ArrayFor<D> {
    this.assertAlive("view");
    if (!this.isContiguous) throw new OpError("view", "tensor is not contiguous; call contiguous() first", [this]);
    const info = dtypeInfo(this.dtype);
    return new info.array(this.storage.buffer, this.offset * info.size, this.size) as ArrayFor<D>;
  }

  /** Zero-copy bytes of a contiguous tensor. */
  bytes(): Uint8Array {
    const v = this.view();
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }

  /** A copy of the elements, row-major, in this dtype's typed array (bf16/f16 as raw bits). */
  data(): ArrayFor<D> {
    if (this.isContiguous) return this.view().slice() as ArrayFor<D>;
    const c = ops.contiguous(this);
    try {
      return c.view().slice() as ArrayFor<D>;
    } finally {
      c.dispose();
    }
  }

  /** The elements as f64 numbers (converting bf16/f16/ints), row-major. */
  toFloat64Array(): Float64Array {
    if (this.dtype === "f64") return this.data() as Float64Array;
    const c = ops.cast(this, "f64");
    try {
      return c.view() .slice() as Float64Array;
    } finally {
      c.dispose();
    }
  }

  /** The elements as a flat array of numbers. */
  toArray(): number[] {
    return Array.from(this.toFloat64Array());
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new OpError("item", `item() needs a tensor with one element, this one has ${this.size}`, [this]);
    return this.toFloat64Array()[0]!;
  }

  /** A new handle on the same storage that does not carry gradients. */
  detach(): Tensor<D> {
    this.assertAlive("detach");
    return this.viewAs(this.shape, this.strides, this.offset);
  }

  /** Frees this handle (and its `.grad`); the storage goes when its last handle goes. Idempotent. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    untrackTensor(this as Tensor);
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
    if (this.gradFn) {
      this.gradFn.unref();
      this.gradFn = null;
    }
    this.storage.releaseRef();
  }

  /** Disposes `.grad`. */
  zeroGrad(): void {
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }

  toString(): string {
    return `Tensor(${formatShape(this.shape)}, ${this.dtype}, ${this.device}${this._disposed ? ", disposed" : ""})`;
  }

  // ---- op shortcuts (the functions in ./ops are the primary API) ----
  add(other: Tensor | number): Tensor { return ops.add(this, other); }
  sub(other: Tensor | number): Tensor { return ops.sub(this, other); }
  mul(other: Tensor | number): Tensor { return ops.mul(this, other); }
  div(other: Tensor | number): Tensor { return ops.div(this, other); }
  matmul(other: Tensor, options?: ops.MatmulOptions): Tensor { return ops.matmul(this, other, options); }
  scale(alpha: number, beta = 0): Tensor { return ops.scale(this, alpha, beta); }
  neg(): Tensor { return ops.neg(this); }
  exp(): Tensor { return ops.exp(this); }
  log(): Tensor { return ops.log(this); }
  sum(axes?: number | readonly number[], keepDims = false): Tensor { return ops.sum(this, axes, keepDims); }
  mean(axes?: number | readonly number[], keepDims = false): Tensor { return ops.mean(this, axes, keepDims); }
  max(axes?: number | readonly number[], keepDims = false): Tensor { return ops.max(this, axes, keepDims); }
  reshape(shape: readonly number[]): Tensor<D> { return ops.reshape(this, shape); }
  transpose(dim0 = -2, dim1 = -1): Tensor<D> { return ops.transpose(this, dim0, dim1); }
  permute(perm: readonly number[]): Tensor<D> { return ops.permute(this, perm); }
  slice(starts: readonly number[], ends?: readonly (number | undefined)[]): Tensor<D> { return ops.slice(this, starts, ends); }
  contiguous(): Tensor<D> { return ops.contiguous(this); }
  clone(): Tensor<D> { return ops.clone(this); }
  cast<T extends DType>(dtype: T): Tensor<T> { return ops.cast(this, dtype); }
}

/** Whether `x` is a Tensor handle. */
export function isTensor(x: unknown): x is Tensor {
  return typeof x === "object" && x !== null && (x as { __isTensor?: boolean }).__isTensor === true;
}

/** @internal Typed-array constructor check used by creation functions. */
export function typedArrayDType(a: AnyTypedArray): DType {
  if (a instanceof Float32Array) return "f32";
  if (a instanceof Float64Array) return "f64";
  if (a instanceof Int32Array) return "i32";
  if (a instanceof Int8Array) return "i8";
  if (a instanceof Uint8Array) return "u8";
  if (a instanceof Uint32Array) return "u32";
  return "bf16";
}
