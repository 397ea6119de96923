import type { DType } from "./dtype.js";
import type { Tensor } from "./tensor.js";
import { registerBuiltinBackends } from "./builtin-backends.js";
import { DeviceTable, familyOf } from "./device-table.js";

/**
 * Where a tensor's storage lives: the name of a device, registered at run time by the backend
 * that owns it. A name is a backend family, optionally followed by `:` and an index: `cpu`,
 * `cuda`, `cuda:1`, `sim`. Which names exist is up to the registry ({@link registerBackend},
 * {@link setBackendRegistration}), not to this type; {@link parseDevice} splits a name.
 */
export type Device = string;

/** Byte counters a backend reports for its native allocator. */
export interface BackendMemory {
  bytes: number;
  peakBytes: number;
  scratchBytes: number;
}

/**
 * A backend's handle of one block of its memory: opaque to everything but the backend that made
 * it (host memory for `cpu`, a device allocation for `cuda`). Its bytes are reached only through
 * the backend's transfer methods and its kernels.
 */
export type StorageHandle = object;

/**
 * A backend: a small method table with capability queries, so callers can ask before they use.
 * Kernels are not methods here but entries of the op registry keyed by (op, backend). Memory is
 * opaque: {@link Backend.alloc} returns a handle, and bytes move between it and the host only
 * through {@link Backend.readSync}, {@link Backend.read} and {@link Backend.writeSync}.
 */
export interface Backend {
  /**
   * The device this backend serves (`cpu`, `cuda:1`). Kernels are looked up under this name
   * first, then under its family (`cuda`), so one set of kernels can serve a whole family.
   */
  readonly name: Device;
  /** Whether tensors of this dtype can live on this backend. */
  supportsDtype(dtype: DType): boolean;
  /** Whether a kernel for `op` is registered for this backend. */
  supportsOp(op: string): boolean;
  /**
   * New storage of `bytes` bytes with unspecified contents (kernels that need zeros write them;
   * `zeros()` is a fill kernel).
   */
  alloc(bytes: number): StorageHandle;
  /** Frees storage from {@link Backend.alloc} now. */
  release(handle: StorageHandle): void;
  /**
   * Copies `dst.byteLength` bytes of the storage, from `byteOffset`, into host memory (device →
   * host), after the work queued on the device that writes them. Blocks until the copy is done.
   */
  readSync(handle: StorageHandle, byteOffset: number, dst: Uint8Array): void;
  /** Like {@link Backend.readSync}, resolving when the copy is done instead of blocking. */
  read(handle: StorageHandle, byteOffset: number, dst: Uint8Array): Promise<void>;
  /** Copies the host bytes `src` into the storage at `byteOffset` (host → device). */
  writeSync(handle: StorageHandle, byteOffset: number, src: Uint8Array): void;
  /** Waits until all work queued on the device has finished (a no-op where kernels run synchronously). */
  synchronize(): void;
  /** Native allocator counters. */
  memory(): BackendMemory;
  /** Resets the native peak counter, where the backend keeps one. */
  resetPeak?(): void;
}

/** A kernel: computes an op's outputs on one backend. Inputs are validated by the op already. */
export type Kernel<A = unknown> = (inputs: readonly Tensor[], attrs: A) => Tensor[];

/** A device name split into its backend family and its index (`cuda:1` → `cuda`, 1; `cpu` → `cpu`, null). */
export interface ParsedDevice {
  readonly family: string;
  readonly index: number | null;
}

/** A registration function declared for a family, run once, the first time one of its devices is asked for. */
interface Registration {
  readonly register: () => void;
  ran: boolean;
  /** Why it failed, if it threw: every later lookup reports this. */
  failure?: string;
}

const backends = new Map<Device, Backend>();
const kernels = new DeviceTable<Kernel<any>>((op) => `registerKernel: a kernel for op '${op}'`);
const registrations = new Map<string, Registration>();

const FAMILY = /^[a-z][a-z0-9_]*$/;
const DEVICE = /^([a-z][a-z0-9_]*)(?::(0|[1-9][0-9]*))?$/;
const DEVICE_FORM = "a lowercase backend name with an optional index, like 'cpu', 'cuda' or 'cuda:1'";

/**
 * Splits a device name into family and index; a malformed name (`CUDA`, `cuda:`, `cuda:01`) is
 * an error that shows the expected form.
 */
export function parseDevice(device: Device): ParsedDevice {
  const m = typeof device === "string" ? DEVICE.exec(device) : null;
  if (!m) throw new TypeError(`device '${String(device)}' is not a device name: expected ${DEVICE_FORM}`);
  return { family: m[1]!, index: m[2] === undefined ? null : Number(m[2]) };
}

/** Registers a backend under its device name; a second backend with the same name is an error. */
export function registerBackend(backend: Backend): void {
  parseDevice(backend.name);
  if (backends.has(backend.name)) throw new Error(`registerBackend: backend '${backend.name}' is already registered`);
  backends.set(backend.name, backend);
}

/**
 * Registers `kernel` for (`op`, `backend`), where `backend` is a device name (`cuda:1`) or a
 * family (`cuda`, serving every device of the family that has no kernel of its own); registering
 * the same pair twice is an error.
 */
export function registerKernel<A>(op: string, backend: Device, kernel: Kernel<A>): void {
  kernels.set(op, backend, kernel as Kernel<any>);
}

function findKernel(op: string, device: Device): Kernel<any> | undefined {
  return kernels.find(op, device);
}

/** Whether (`op`, `backend`) has a kernel; false for a device that is not available. */
export function hasKernel(op: string, backend: Device): boolean {
  ensureBackend(backend);
  return findKernel(op, backend) !== undefined;
}

/** Ops with a kernel on `backend` (its own and its family's), sorted. */
export function listKernels(backend: Device): string[] {
  ensureBackend(backend);
  return kernels.namesOn(backend);
}

/**
 * The kernel for (`op`, `backend`). An unavailable device, or a device without this kernel, is an
 * error naming the op, the device and what to do.
 */
export function getKernel<A>(op: string, backend: Device): Kernel<A> {
  requireBackend(backend, op);
  const k = findKernel(op, backend);
  if (!k) {
    const elsewhere = [...backends.keys()].filter((d) => d !== backend && findKernel(op, d));
    const where = elsewhere.length ? `; devices with one: ${elsewhere.join(", ")} — move the inputs to one of them, or` : " —";
    throw new Error(`${op}: no kernel is registered for device '${backend}'${where} register one with registerKernel('${op}', '${familyOf(backend)}', kernel)`);
  }
  return k as Kernel<A>;
}

/**
 * Declares the function that registers the backends of the family `name` (`cpu`; `cuda`, which
 * may register `cuda`, `cuda:0`, `cuda:1`...) and their kernels. It is called explicitly, once,
 * the first time a device of the family is asked for (never as an import side effect). Declaring
 * a family twice, or one whose backend is registered already, is an error.
 */
export function setBackendRegistration(name: string, register: () => void): void {
  registerBuiltinBackends();
  if (!FAMILY.test(name)) throw new TypeError(`setBackendRegistration: '${name}' is not a backend family name: expected a lowercase name without an index, like 'cpu' or 'cuda'`);
  if (registrations.has(name)) throw new Error(`setBackendRegistration: a registration for backend '${name}' is already declared`);
  const taken = [...backends.keys()].find((d) => familyOf(d) === name);
  if (taken !== undefined) throw new Error(`setBackendRegistration: backend '${taken}' is already registered`);
  registrations.set(name, { register, ran: false });
}

/** Runs the family's registration if it has not run yet; never throws (a failure is kept for the error). */
function ensureBackend(device: Device): Backend | undefined {
  registerBuiltinBackends();
  const known = backends.get(device);
  if (known) return known;
  const family = familyOf(device);
  const r = registrations.get(family);
  if (r && !r.ran) {
    r.ran = true;
    try {
      r.register();
    } catch (err) {
      r.failure = err instanceof Error ? err.message : String(err);
    }
  }
  return backends.get(device);
}

/** Devices that can be asked for: registered ones, and families whose registration has not run yet. */
function availableDevices(): string[] {
  const out = [...backends.keys()];
  for (const [family, r] of registrations) if (!r.ran && !out.includes(family)) out.push(family);
  return out;
}

function requireBackend(device: Device, op?: string): Backend {
  const b = ensureBackend(device);
  if (b) return b;
  const family = familyOf(String(device));
  const r = registrations.get(family);
  const available = availableDevices();
  const list = available.length ? available.join(", ") : "none";
  let why: string;
  if (r?.failure !== undefined) why = `registering backend '${family}' failed: ${r.failure}`;
  else if (r) why = `backend '${family}' registered no device of that name (available: ${list}); use one of the available devices`;
  else why = `no backend is registered for it (available: ${list}); use one of the available devices, or register a backend for '${family}' first (setBackendRegistration)`;
  throw new Error(`${op ? `${op}: ` : ""}device '${String(device)}' is not available: ${why}`);
}

/** The backend of device `name`; an unknown or unavailable device is an error that says why and lists the available ones. */
export function getBackend(name: Device): Backend {
  return requireBackend(name);
}

/** Names of registered devices (running every declared registration first). */
export function listBackends(): Device[] {
  registerBuiltinBackends();
  for (const family of [...registrations.keys()]) ensureBackend(family);
  return [...backends.keys()];
}
