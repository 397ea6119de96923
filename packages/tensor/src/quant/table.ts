// The per-backend format table: for each (format, backend), the kernels that compute with a packed
// weight (ggml's per-backend type traits). The quantized ops look their kernels up here; a missing
// entry is an error naming the format, the device, and the devices that have one.
import { getBackend, type Device } from "../backend.js";
import type { Tensor } from "../tensor.js";
import type { PackedWeight } from "./weight.js";

/**
 * The kernels of one weight format on one backend. Inputs are contiguous 2-D f32 tensors on the
 * weight's device; outputs are new tensors there. None of them keeps Ŵ.
 */
export interface QuantFormatKernels {
  /** `y [M, out] = x [M, in] · Ŵᵀ`. */
  forward(x: Tensor, w: PackedWeight): Tensor;
  /** `dx [M, in] = dy [M, out] · Ŵ`. */
  inputGrad(dy: Tensor, w: PackedWeight): Tensor;
  /** Rows `[r0, r1)` of Ŵ as a new f32 tensor `[r1 − r0, in]` on the weight's device. */
  dequantize(w: PackedWeight, r0: number, r1: number): Tensor;
}

const table = new Map<string, QuantFormatKernels>();
const key = (format: string, device: string) => `${format}\u0000${device}`;

function familyOf(device: string): string {
  const colon = device.indexOf(":");
  return colon < 0 ? device : device.slice(0, colon);
}

/**
 * Registers the kernels of `format` for `device` (a device name, or a family serving all its
 * devices). Registering the same pair twice is an error.
 */
export function registerQuantFormatKernels(format: string, device: Device, kernels: QuantFormatKernels): void {
  const k = key(format, device);
  if (table.has(k)) throw new Error(`registerQuantFormatKernels: kernels for format '${format}' on backend '${device}' are already registered`);
  table.set(k, kernels);
}

function find(format: string, device: Device): QuantFormatKernels | undefined {
  return table.get(key(format, device)) ?? table.get(key(format, familyOf(device)));
}

/** Whether `format` has kernels on `device` (registering the device's backend first if needed). */
export function hasQuantFormatKernels(format: string, device: Device): boolean {
  try {
    getBackend(device);
  } catch {
    return false;
  }
  return find(format, device) !== undefined;
}

/** Formats with kernels on `device`, sorted. */
export function listQuantFormats(device: Device): string[] {
  getBackend(device);
  const fam = familyOf(device);
  const out = new Set<string>();
  for (const k of table.keys()) {
    const [format, d] = k.split("\u0000");
    if (d === device || d === fam) out.add(format!);
  }
  return [...out].sort();
}

/** The kernels of `format` on `device`; a missing entry is an error that says where they exist and what to do. */
export function getQuantFormatKernels(format: string, device: Device, op = "quantMatmul"): QuantFormatKernels {
  getBackend(device);
  const k = find(format, device);
  if (k) return k;
  const elsewhere = [...table.keys()].map((x) => x.split("\u0000")).filter(([f]) => f === format).map(([, d]) => d);
  const where = elsewhere.length ? ` (it has kernels on: ${elsewhere.join(", ")})` : "";
  throw new Error(
    `${op}: format '${format}' has no kernels on device '${device}'${where}; use the generic path (materialize + dense product), ` +
      `move the weight to a device that has them, or register them with registerQuantFormatKernels('${format}', '${familyOf(device)}', kernels)`,
  );
}
