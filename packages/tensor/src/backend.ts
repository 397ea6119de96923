import type { DType } from "./dtype.js";
import type { Tensor } from "./tensor.js";
import { registerCpuBackend } from "./cpu/backend.js";

/** Where a tensor's storage lives. */
export type Device = "cpu" | "cuda";

/** Byte counters a backend reports for its native allocator. */
export interface BackendMemory {
  bytes: number;
  peakBytes: number;
  scratchBytes: number;
}

/**
 * A backend: a small method table with capability queries, so callers can ask before they use.
 * Kernels are not methods here but entries of the op registry keyed by (op, backend).
 */
export interface Backend {
  readonly name: Device;
  /** Whether tensors of this dtype can live on this backend. */
  supportsDtype(dtype: DType): boolean;
  /** Whether a kernel for `op` is registered for this backend. */
  supportsOp(op: string): boolean;
  /** New zero-filled storage of `bytes` bytes. */
  alloc(bytes: number): ArrayBuffer;
  /** Frees storage from {@link Backend.alloc} now. */
  release(buffer: ArrayBuffer): void;
  /** Native allocator counters. */
  memory(): BackendMemory;
  /** Resets the native peak counter, where the backend keeps one. */
  resetPeak?(): void;
}

/** A kernel: computes an op's outputs on one backend. Inputs are validated by the op already. */
export type Kernel<A = unknown> = (inputs: readonly Tensor[], attrs: A) => Tensor[];

const backends = new Map<Device, Backend>();
const kernels = new Map<string, Kernel<any>>();
const key = (op: string, backend: Device) => `${op}\u0000${backend}`;
/** Backends whose kernels are registered lazily, on first use, by an explicit registration function. */
const lazyRegistrations = new Map<Device, () => void>();

/** Registers a backend; a second backend with the same name is an error. */
export function registerBackend(backend: Backend): void {
  if (backends.has(backend.name)) throw new Error(`registerBackend: backend '${backend.name}' is already registered`);
  backends.set(backend.name, backend);
}

/** Registers `kernel` for (`op`, `backend`); registering the same pair twice is an error. */
export function registerKernel<A>(op: string, backend: Device, kernel: Kernel<A>): void {
  const k = key(op, backend);
  if (kernels.has(k)) throw new Error(`registerKernel: a kernel for op '${op}' on backend '${backend}' is already registered`);
  kernels.set(k, kernel as Kernel<any>);
}

/** Whether (`op`, `backend`) has a kernel. */
export function hasKernel(op: string, backend: Device): boolean {
  ensureBackend(backend);
  return kernels.has(key(op, backend));
}

/** Ops with a kernel on `backend`, sorted. */
export function listKernels(backend: Device): string[] {
  ensureBackend(backend);
  const out: string[] = [];
  for (const k of kernels.keys()) {
    const [op, b] = k.split("\u0000");
    if (b === backend) out.push(op!);
  }
  return out.sort();
}

/** The kernel for (`op`, `backend`); a missing one is an error naming both. */
export function getKernel<A>(op: string, backend: Device): Kernel<A> {
  ensureBackend(backend);
  const k = kernels.get(key(op, backend));
  if (!k) throw new Error(`${op}: no kernel is registered for backend '${backend}'`);
  return k as Kernel<A>;
}

/**
 * Declares the function that registers a backend and its kernels. It is called explicitly, once,
 * the first time the backend is asked for (never as an import side effect).
 */
export function setBackendRegistration(name: Device, register: () => void): void {
  lazyRegistrations.set(name, register);
}

function ensureBackend(name: Device): void {
  if (backends.has(name)) return;
  // The CPU backend is always available: registered by this explicit call on first use.
  if (name === "cpu") {
    registerCpuBackend();
    return;
  }
  const register = lazyRegistrations.get(name);
  if (register) {
    lazyRegistrations.delete(name);
    register();
  }
}

/** The backend named `name`; an unknown or unavailable backend is an error that says why. */
export function getBackend(name: Device): Backend {
  ensureBackend(name);
  const b = backends.get(name);
  if (!b) {
    if (name === "cuda") {
      throw new Error("device 'cuda' is not available: this version of @modulora/kernels has no CUDA backend (CPU only); use device 'cpu'");
    }
    throw new Error(`unknown device '${String(name)}'; available: ${[...backends.keys(), ...lazyRegistrations.keys()].join(", ")}`);
  }
  return b;
}

/** Names of registered backends. */
export function listBackends(): Device[] {
  for (const name of [...lazyRegistrations.keys()]) ensureBackend(name);
  return [...backends.keys()];
}
