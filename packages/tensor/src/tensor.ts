import { getBackend, type Device } from "./backend.js";
import { bitsToNumber16, dtypeInfo, type AnyTypedArray, type ArrayFor, type DType } from "./dtype.js";
import { noGrad, retrackTensor, trackTensor, untrackTensor } from "./engine.js";
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

  /**
   * New contiguous tensor with unspecified contents (the backend does not clear its memory): for
   * outputs a kernel overwrites whole. Use `zeros()` for zeros.
   */
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
   * A copy of the elements on the host, row-major, in this dtype's typed array (bf16/f16 as raw
   * bits): one device → host transfer, after the work queued on the device. A non-contiguous view
   * is first made contiguous by a kernel on its device. Blocks the caller on a device backend;
   * prefer {@link Tensor.data} there.
   */
  dataSync(): ArrayFor<D> {
    return this.withContiguous("dataSync", (c, host) => {
      c.storage.backend.readSync(c.storage.handle, c.offset * host.BYTES_PER_ELEMENT, bytesOf(host));
      return host;
    });
  }

  /**
   * Like {@link Tensor.dataSync}, resolving with the copy once the transfer is done, without
   * blocking (tfjs's `data()`). The tensor must stay alive until the promise settles.
   */
  async data(): Promise<ArrayFor<D>> {
    const c = this.contiguousForRead("data");
    try {
      const host = this.newHostArray();
      if (host.length > 0) await c.storage.backend.read(c.storage.handle, c.offset * host.BYTES_PER_ELEMENT, bytesOf(host));
      return host;
    } finally {
      if (c !== this) c.dispose();
    }
  }

  /** The elements as f64 numbers, row-major: one transfer, then bf16/f16/ints converted on the host. */
  toFloat64Array(): Float64Array {
    const d = this.dataSync();
    if (d instanceof Float64Array) return d;
    if (this.dtype === "bf16" || this.dtype === "f16") {
      const dtype = this.dtype as "bf16" | "f16";
      return Float64Array.from(d as Uint16Array, (b) => bitsToNumber16(b, dtype));
    }
    return Float64Array.from(d as ArrayLike<number>);
  }

  /** The elements as a flat array of numbers. */
  toArray(): number[] {
    return Array.from(this.toFloat64Array());
  }

  /** The value of a one-element tensor (one device → host transfer: a synchronization). */
  item(): number {
    if (this.size !== 1) throw new OpError("item", `item() needs a tensor with one element, this one has ${this.size}`, [this]);
    return this.toFloat64Array()[0]!;
  }

  /**
   * This tensor on `device`: a copy through the host when the device differs (device → host, then
   * host → device), or a new handle on the same storage when it is the same device. The result
   * carries no gradient history (like {@link Tensor.detach}); dispose it like any handle.
   */
  to(device: Device): Tensor<D> {
    this.assertAlive("to");
    if (device === this.device) return this.detach();
    getBackend(device); // an unknown device fails before the copy out
    const host = this.dataSync();
    const t = Tensor.empty(this.shape, this.dtype, device);
    try {
      copyIn(t, host);
    } catch (err) {
      t.dispose();
      throw err;
    }
    return t;
  }

  private newHostArray(): ArrayFor<D> {
    return new (dtypeInfo(this.dtype).array)(this.size) as ArrayFor<D>;
  }

  /** This tensor if it is contiguous, else a contiguous copy made on its device (the caller disposes it). */
  private contiguousForRead(op: string): Tensor<D> {
    this.assertAlive(op);
    return this.isContiguous ? this : noGrad(() => ops.contiguous(this));
  }

  private withContiguous<R>(op: string, fn: (c: Tensor<D>, host: ArrayFor<D>) => R): R {
    const c = this.contiguousForRead(op);
    try {
      const host = this.newHostArray();
      return host.length > 0 ? fn(c, host) : (host as unknown as R);
    } finally {
      if (c !== this) c.dispose();
    }
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

/** The bytes of a host typed array. */
function bytesOf(a: AnyTypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * @internal Copies host data of `t`'s dtype and size into the contiguous tensor `t`: one host →
 * device transfer through its backend. Used by the creation functions and {@link Tensor.to}.
 */
export function copyIn(t: Tensor, host: AnyTypedArray): void {
  t.assertAlive("copyIn");
  const info = dtypeInfo(t.dtype);
  if (!(host instanceof info.array) || host.length !== t.size || !t.isContiguous) {
    throw new OpError("copyIn", `needs a contiguous destination and ${t.size} values in a ${info.array.name}, got ${host.length} in a ${host.constructor.name}`, [t]);
  }
  if (host.length > 0) t.storage.backend.writeSync(t.storage.handle, t.offset * info.size, bytesOf(host));
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
