// Tensor-level safetensors I/O on top of the byte-level reader and writer.
import { Tensor } from "../tensor.js";
import { SafetensorsReader, type SafetensorsOpenOptions } from "./reader.js";
import { writeSafetensors, type SafetensorsTensorData, type WriteSafetensorsOptions } from "./writer.js";

/** Options of {@link loadSafetensors}. */
export interface LoadSafetensorsOptions extends SafetensorsOpenOptions {
  /** Load only these tensors (all of them by default). A name not in the file is an error. */
  names?: readonly string[];
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
      const t = Tensor.empty(e.shape, e.dtype);
      out.set(e.name, t);
      reader.readInto(e.name, t.bytes());
    }
    return out;
  } catch (err) {
    for (const t of out.values()) t.dispose();
    throw err;
  } finally {
    reader.close();
  }
}

/**
 * Saves tensors to a safetensors file (atomically, see {@link writeSafetensors}). Non-contiguous
 * tensors are copied to contiguous ones first and the copies disposed afterwards. Order in the
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
  const copies: Tensor[] = [];
  try {
    const data: SafetensorsTensorData[] = pairs.map(([name, t]) => {
      const c = t.contiguous();
      if (c !== t) copies.push(c);
      return { name, dtype: c.dtype, shape: c.shape, data: c.bytes() };
    });
    writeSafetensors(path, data, metadata, options);
  } finally {
    for (const c of copies) c.dispose();
  }
}
