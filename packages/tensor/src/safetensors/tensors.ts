// Tensor-level safetensors I/O on top of the byte-level reader and writer.
import type { Device } from "../backend.js";
import { dtypeInfo } from "../dtype.js";
import { Tensor, copyIn } from "../tensor.js";
import { SafetensorsReader, type SafetensorsOpenOptions } from "./reader.js";
import { writeSafetensors, type SafetensorsTensorData, type WriteSafetensorsOptions } from "./writer.js";

/** Options of {@link loadSafetensors}. */
export interface LoadSafetensorsOptions extends SafetensorsOpenOptions {
  /** Load only these tensors (all of them by default). A name not in the file is an error. */
  names?: readonly string[];
  /** The device to load onto (default `cpu`): each tensor is copied in as it is read, one at a time. */
  device?: Device;
}

/**
 * Loads tensors from a safetensors file into new native storage, in file order (or the order of
 * `options.names`). Every requested name is checked before anything is allocated; on failure the
 * tensors created so far are disposed. The caller owns (and disposes) the returned tensors.
 *
 * @throws {@link SafetensorsError} for an invalid file or a missing name (`not-found`).
 */
export function loadSafetensors(path: string, options: LoadSafetensorsOptions = {}): Map<string, Tensor> {
  const reader = SafetensorsReader.open(path, options);
  const out = new Map<string, Tensor>();
  try {
    const names = options.names ?? reader.names();
    const entries = names.map((n) => reader.entry(n));
    for (const e of entries) {
      if (out.has(e.name)) continue;
      const t = Tensor.empty(e.shape, e.dtype, options.device ?? "cpu");
      out.set(e.name, t);
      copyBytesIn(t, reader.mode === "mmap" ? reader.view(e.name) : reader.read(e.name));
    }
    return out;
  } catch (err) {
    for (const t of out.values()) t.dispose();
    throw err;
  } finally {
    reader.close();
  }
}

/** Copies a tensor's file bytes (little-endian, as the host) into `t` through its backend. */
function copyBytesIn(t: Tensor, bytes: Uint8Array): void {
  const info = dtypeInfo(t.dtype);
  if (bytes.byteOffset % info.size === 0) copyIn(t, new info.array(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength / info.size));
  else copyIn(t, new info.array(bytes.slice().buffer as ArrayBuffer));
}

/**
 * Saves tensors to a safetensors file (atomically, see {@link writeSafetensors}). Each tensor is
 * copied to the host first ({@link Tensor.dataSync}), from any device, views included. Order in the
 * file is the iteration order of `tensors`; pass a `Map` to control it (a plain object lists
 * integer-like keys first).
 */
export function saveSafetensors(
  path: string,
  tensors: Readonly<Record<string, Tensor>> | ReadonlyMap<string, Tensor>,
  metadata?: Readonly<Record<string, string>>,
  options?: WriteSafetensorsOptions,
): void {
  const pairs: [string, Tensor][] = tensors instanceof Map ? [...(tensors as ReadonlyMap<string, Tensor>)] : Object.entries(tensors as Record<string, Tensor>);
  const data: SafetensorsTensorData[] = pairs.map(([name, t]) => {
    const host = t.dataSync();
    return { name, dtype: t.dtype, shape: t.shape, data: new Uint8Array(host.buffer, host.byteOffset, host.byteLength) };
  });
  writeSafetensors(path, data, metadata, options);
}
