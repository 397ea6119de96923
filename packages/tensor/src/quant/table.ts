// The per-backend format table: for each (format, backend), the kernels that compute with a packed
// weight (ggml's per-backend type traits). The quantized ops look their kernels up here; a missing
// entry is an error naming the format, the device, and the devices that have one.
import { getBackend, type Device } from "../backend.js";
import { DeviceTable, familyOf } from "../device-table.js";
import type { Tensor } from "../tensor.js";
import type { PackedWeight } from "./weight.js";

/**
 * The kernels of one weight format on one backend. Inputs are contiguous 2-D tensors on the
 * weight's device, f32 — or bf16 too where {@link QuantFormatKernels.bf16} says the kernels take
 * it; outputs are new tensors there. None of them keeps Ŵ.
 */
export interface QuantFormatKernels {
  /**
   * Whether `forward` and `inputGrad` take bf16 inputs themselves (computing in f32, f32
   * accumulation, and returning bf16). Otherwise (the default) the ops give them an f32 cast of a
   * bf16 input and round their f32 result to bf16 once, which is the same policy.
   */
  readonly bf16?: boolean;
  /** `y [M, out] = x [M, in] · Ŵᵀ`, in x's dtype. */
  forward(x: Tensor, w: PackedWeight): Tensor;
  /** `dx [M, in] = dy [M, out] · Ŵ`, in dy's dtype. */
  inputGrad(dy: Tensor, w: PackedWeight): Tensor;
  /** Rows `[r0, r1)` of Ŵ as a new f32 tensor `[r1 − r0, in]` on the weight's device. */
  dequantize(w: PackedWeight, r0: number, r1: number): Tensor;
}

const table = new DeviceTable<QuantFormatKernels>((format) => `registerQuantFormatKernels: kernels for format '${format}'`);

/**
 * Registers the kernels of `format` for `device` (a device name, or a family serving all its
 * devices). Registering the same pair twice is an error.
 */
export function registerQuantFormatKernels(format: string, device: Device, kernels: QuantFormatKernels): void {
  table.set(format, device, kernels);
}

/** Whether `format` has kernels on `device` (registering the device's backend first if needed). */
export function hasQuantFormatKernels(format: string, device: Device): boolean {
  try {
    getBackend(device);
  } catch {
    return false;
  }
  return table.find(format, device) !== undefined;
}

/** Formats with kernels on `device`, sorted. */
export function listQuantFormats(device: Device): string[] {
  getBackend(device);
  return table.namesOn(device);
}

/** The kernels of `format` on `device`; a missing entry is an error that says where they exist and what to do. */
export function getQuantFormatKernels(format: string, device: Device, op = "quantMatmul"): QuantFormatKernels {
  getBackend(device);
  const k = table.find(format, device);
  if (k) return k;
  const elsewhere = table.devicesOf(format);
  const where = elsewhere.length ? ` (it has kernels on: ${elsewhere.join(", ")})` : "";
  throw new Error(
    `${op}: format '${format}' has no kernels on device '${device}'${where}; use the generic path (materialize + dense product), ` +
      `move the weight to a device that has them, or register them with registerQuantFormatKernels('${format}', '${familyOf(device)}', kernels)`,
  );
}
