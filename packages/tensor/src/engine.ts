import { getBackend, type Device } from "./backend.js";
import { memoryCounters, type Storage } from "./storage.js";
import type { Tensor } from "./tensor.js";
import type { Node } from "./autograd.js";

/** Memory scope: the tensors created while it was the innermost one. */
interface Scope {
  readonly name: string;
  readonly tensors: Set<Tensor>;
}

const scopes: Scope[] = [];
const liveHandles = new Map<Device, number>();
let gradEnabled = true;
let leakWarnings = 0;

interface Held {
  storage: Storage;
  node: Node | null;
  device: Device;
}

// Safety net only: a handle dropped without dispose() still frees its storage when collected.
const finalizer = new FinalizationRegistry<Held>((held) => {
  liveHandles.set(held.device, (liveHandles.get(held.device) ?? 1) - 1);
  held.node?.unref();
  held.storage.releaseRef();
  if (process.env.MODULORA_WARN_LEAKS && leakWarnings++ < 5) {
    process.emitWarning("a tensor was garbage-collected without dispose(); wrap work in tidy() or call dispose()", "ModuloraLeakWarning");
  }
});

/** @internal Called by every new tensor handle. `scoped` handles join the innermost tidy scope. */
export function trackTensor(t: Tensor, scoped: boolean): void {
  liveHandles.set(t.device, (liveHandles.get(t.device) ?? 0) + 1);
  finalizer.register(t, { storage: t.storage, node: t.gradFn, device: t.device }, t);
  if (scoped && scopes.length > 0) scopes[scopes.length - 1]!.tensors.add(t);
}

/** @internal Called once by `Tensor.dispose()`. */
export function untrackTensor(t: Tensor): void {
  liveHandles.set(t.device, (liveHandles.get(t.device) ?? 1) - 1);
  finalizer.unregister(t);
  for (let i = scopes.length - 1; i >= 0; i--) if (scopes[i]!.tensors.delete(t)) break;
}

/** @internal Re-registers the finalizer payload after a handle's grad node changes. */
export function retrackTensor(t: Tensor): void {
  finalizer.unregister(t);
  finalizer.register(t, { storage: t.storage, node: t.gradFn, device: t.device }, t);
}

function collectTensors(value: unknown, out: Set<Tensor>, depth = 0): void {
  if (value === null || typeof value !== "object" || depth > 8) return;
  if (isTensor(value)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, out, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collectTensors(v, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, out, depth + 1);
  }
}

function isTensor(x: unknown): x is Tensor {
  return typeof x === "object" && x !== null && (x as { __isTensor?: boolean }).__isTensor === true;
}

/**
 * Runs `fn` in a memory scope: every tensor created inside and not returned (directly, or inside
 * arrays, plain objects or Maps) and not {@link keep}-ed is disposed when `fn` returns or throws.
 * Returned tensors move to the enclosing scope. `fn` must be synchronous.
 */
export function tidy<T>(fn: () => T): T;
/** Same, with a scope name that shows in errors. */
export function tidy<T>(name: string, fn: () => T): T;
export function tidy<T>(nameOrFn: string | (() => T), maybeFn?: () => T): T {
  const name = typeof nameOrFn === "string" ? nameOrFn : "tidy";
  const fn = typeof nameOrFn === "function" ? nameOrFn : maybeFn;
  if (typeof fn !== "function") throw new TypeError("tidy: expected a function");
  const scope: Scope = { name, tensors: new Set() };
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    scopes.pop();
    for (const t of scope.tensors) t.dispose();
    throw err;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope.tensors) t.dispose();
    throw new TypeError(`${name}: the function passed to tidy() returned a Promise; tidy only supports synchronous functions`);
  }
  const returned = new Set<Tensor>();
  collectTensors(result, returned);
  const parent = scopes[scopes.length - 1];
  for (const t of scope.tensors) {
    if (returned.has(t)) parent?.tensors.add(t);
    else t.dispose();
  }
  return result;
}

/** Exempts `t` from disposal by the enclosing tidy scopes; dispose it yourself. Returns `t`. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.tensors.delete(t);
  return t;
}

/** Disposes every tensor found in `value` (a tensor, or arrays/objects/Maps of tensors). */
export function dispose(value: unknown): void {
  const found = new Set<Tensor>();
  collectTensors(value, found);
  for (const t of found) t.dispose();
}

/** Memory counters of one device. */
export interface MemoryInfo {
  device: Device;
  /** Tensor handles alive (views count separately from the tensor they view). */
  tensors: number;
  /** Distinct storage blocks alive. */
  storages: number;
  /** Bytes of tensor storage alive. */
  bytes: number;
  /** High-water mark of `bytes` since the last {@link resetPeakMemory}. */
  peakBytes: number;
  /** What the native allocator holds now: tensor storage plus kernel scratch. */
  nativeBytes: number;
  /** Native high-water mark (storage plus scratch) since the last {@link resetPeakMemory}. */
  nativePeakBytes: number;
  /** Kernel scratch held right now (e.g. a re-materialized weight block). */
  scratchBytes: number;
}

/** Memory counters for `device` (default `cpu`). */
export function memory(device: Device = "cpu"): MemoryInfo {
  const c = memoryCounters.get(device);
  const native = getBackend(device).memory();
  return {
    device,
    tensors: liveHandles.get(device) ?? 0,
    storages: c.storages,
    bytes: c.bytes,
    peakBytes: c.peakBytes,
    nativeBytes: native.bytes,
    nativePeakBytes: native.peakBytes,
    scratchBytes: native.scratchBytes,
  };
}

/** Resets the peak counters of `device` to the current values. */
export function resetPeakMemory(device: Device = "cpu"): void {
  const c = memoryCounters.get(device);
  c.peakBytes = c.bytes;
  getBackend(device).resetPeak?.();
}

/** Whether ops record on the autograd tape right now. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording ops for autograd (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Runs `fn` with recording on, even inside {@link noGrad}. */
export function enableGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}
