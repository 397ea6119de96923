import { recordOp, type BackwardFn } from "./autograd.js";
import { getKernel, type Device } from "./backend.js";
import { noGrad } from "./engine.js";
import type { DType } from "./dtype.js";
import { OpError } from "./errors.js";
import type { Tensor } from "./tensor.js";

/**
 * An op's definition: its name, its backward (beside the forward in the same file), and what the
 * backward needs saved. Kernels (the forward computation per backend) live in the op registry.
 */
export interface OpDef<A> {
  readonly name: string;
  readonly backward?: BackwardFn<A>;
  /** Tensors the backward needs, from the inputs and outputs. Default: nothing. */
  readonly save?: (inputs: readonly Tensor[], outputs: readonly Tensor[], attrs: A) => readonly Tensor[];
}

/** Checks that all inputs are alive and on one device; returns that device. */
export function checkInputs(op: string, inputs: readonly Tensor[], fallback: Device = "cpu"): Device {
  for (const t of inputs) t.assertAlive(op);
  const device = inputs[0]?.device ?? fallback;
  for (const t of inputs) {
    if (t.device !== device) {
      const devices = inputs.map((x) => `'${x.device}'`).join(", ");
      throw new OpError(op, `inputs are on different devices (${devices}); an op runs on one device: create or copy all its inputs on the same device`, inputs);
    }
  }
  return device;
}

/** Runs the kernel of `def` for the inputs' device and records the op for autograd. */
export function runOp<A>(def: OpDef<A>, inputs: readonly Tensor[], attrs: A, device?: Device): Tensor[] {
  const dev = device ?? checkInputs(def.name, inputs);
  const outputs = getKernel<A>(def.name, dev)(inputs, attrs);
  if (def.backward) recordOp(def.name, inputs, outputs, attrs, def.backward, def.save ? () => def.save!(inputs, outputs, attrs) : undefined);
  return outputs;
}

/**
 * Runs a composite op: `forward` computes the outputs from other ops (so it runs on any device
 * whose kernels it uses), without recording them, and the op is recorded once for autograd with
 * `def.backward`. For ops whose natural backward keeps less than the graph of their parts would
 * (the generic quantized product re-materializes its weight instead of saving it).
 */
export function runComposite<A>(def: OpDef<A>, inputs: readonly Tensor[], attrs: A, forward: (inputs: readonly Tensor[], attrs: A) => Tensor[]): Tensor[] {
  checkInputs(def.name, inputs);
  const outputs = noGrad(() => forward(inputs, attrs));
  if (def.backward) recordOp(def.name, inputs, outputs, attrs, def.backward, def.save ? () => def.save!(inputs, outputs, attrs) : undefined);
  return outputs;
}

/** Like {@link runOp} for single-output ops. */
export function runOp1<A>(def: OpDef<A>, inputs: readonly Tensor[], attrs: A, device?: Device): Tensor {
  return runOp(def, inputs, attrs, device)[0]!;
}

/**
 * Requires float inputs of one compute dtype and returns it: f32, f64, or bf16 (computed in f32,
 * rounded to bf16 on output). Inputs of
 * different dtypes are an error with a hint to cast: the bf16 policy mixes dtypes only through
 * explicit, differentiable casts (`x.cast("f32")` before an f32 LoRA factor). f16 is a storage
 * type and must be cast first.
 */
export function checkFloat(op: string, inputs: readonly Tensor[]): "f32" | "f64" | "bf16" {
  let dtype: DType | undefined;
  for (const t of inputs) {
    if (t.dtype !== "f32" && t.dtype !== "f64" && t.dtype !== "bf16") {
      const hint = t.dtype === "f16" ? '; f16 is a storage type only, cast it with .cast("f32") (or .cast("bf16")) first' : "";
      throw new OpError(op, `expects f32, f64 or bf16 tensors, got ${t.dtype}${hint}`, inputs);
    }
    if (dtype && t.dtype !== dtype) {
      throw new OpError(op, `inputs have different dtypes (${inputs.map((x) => x.dtype).join(", ")}); cast one of them with .cast(dtype) (the cast is differentiable)`, inputs);
    }
    dtype = t.dtype;
  }
  return (dtype ?? "f32") as "f32" | "f64" | "bf16";
}
