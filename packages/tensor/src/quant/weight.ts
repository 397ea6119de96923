// A format-neutral description of a frozen packed (quantized) weight W [outFeatures, inFeatures]:
// which format it is in, its named tensors on one device, and its scalar parameters. The engine
// does not interpret the tensors; the kernels registered for (format, backend) do.
import type { Device } from "../backend.js";
import { OpError } from "../errors.js";
import type { Tensor } from "../tensor.js";

/**
 * A packed weight as the quantized ops see it. `tensors` hold the stored arrays (codes, scales,
 * zero points, tables, indices), all on `device`; an absent optional array is `null`. `params`
 * hold the format's numbers and names (group size, zero kind...). The tensors belong to whoever
 * built the weight: the ops never dispose them.
 */
export interface PackedWeight {
  /** The format name the kernels are registered under (`affine`, `codebook`, or a plugin's own). */
  readonly format: string;
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** Bits per code. */
  readonly bits: number;
  /** The device every tensor of the weight lives on. */
  readonly device: Device;
  readonly tensors: Readonly<Record<string, Tensor | null>>;
  readonly params: Readonly<Record<string, number | string>>;
}

/** Builds a {@link PackedWeight}, checking that its tensors are alive and on one device (the device of the weight). */
export function packedWeight(p: Omit<PackedWeight, "device"> & { device?: Device }): PackedWeight {
  const present = Object.entries(p.tensors).filter((e): e is [string, Tensor] => e[1] !== null && e[1] !== undefined);
  const device = p.device ?? present[0]?.[1].device;
  if (device === undefined) throw new OpError("packedWeight", `a ${p.format} weight needs at least one tensor (or an explicit device)`);
  for (const [name, t] of present) {
    t.assertAlive(`packedWeight(${p.format}).${name}`);
    if (t.device !== device) {
      throw new OpError("packedWeight", `tensor '${name}' of the ${p.format} weight is on '${t.device}', the others on '${device}': upload all of a weight's tensors to one device`, [t]);
    }
  }
  for (const [k, v] of [["outFeatures", p.outFeatures], ["inFeatures", p.inFeatures], ["bits", p.bits]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new OpError("packedWeight", `${k} must be a positive integer, got ${v}`);
  }
  return Object.freeze({ ...p, device, tensors: Object.freeze({ ...p.tensors }), params: Object.freeze({ ...p.params }) });
}

/** Tensor `name` of `w`; a missing one is an error naming the format and the tensor. */
export function packedTensor(w: PackedWeight, name: string): Tensor {
  const t = w.tensors[name];
  if (!t) throw new OpError("packedTensor", `the ${w.format} weight has no tensor '${name}' (has: ${Object.keys(w.tensors).filter((k) => w.tensors[k]).join(", ") || "none"})`);
  return t;
}

/** Numeric parameter `name` of `w`. */
export function packedNumber(w: PackedWeight, name: string): number {
  const v = w.params[name];
  if (typeof v !== "number") throw new OpError("packedNumber", `the ${w.format} weight's parameter '${name}' must be a number, got ${JSON.stringify(v)}`);
  return v;
}
