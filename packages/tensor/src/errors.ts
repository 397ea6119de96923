import type { DType } from "./dtype.js";
import { formatShape, type Shape } from "./shape.js";

/** Something an op error can describe: a tensor's shape and dtype. */
export interface Described {
  readonly shape: Shape;
  readonly dtype: DType;
}

/** `[2,3] f32, [3] f32` — the inputs of an op, for error messages. */
export function describeInputs(inputs: readonly Described[]): string {
  return inputs.map((t) => `${formatShape(t.shape)} ${t.dtype}`).join(", ");
}

/**
 * An op was called with inputs it cannot take (shape mismatch, wrong dtype, disposed tensor...).
 * The message starts with the op name and ends with the shapes and dtypes of the inputs.
 */
export class OpError extends TypeError {
  /** The op that refused its inputs. */
  readonly op: string;
  constructor(op: string, problem: string, inputs: readonly Described[] = []) {
    super(`${op}: ${problem}${inputs.length ? ` (inputs: ${describeInputs(inputs)})` : ""}`);
    this.name = "OpError";
    this.op = op;
  }
}
