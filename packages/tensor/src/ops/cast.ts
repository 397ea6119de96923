// dtype conversion. bf16/f16 are storage types: cast to f32 to compute.
import { dtypeInfo, type DType } from "../dtype.js";
import { runOp1, type OpDef } from "../op.js";
import type { Tensor } from "../tensor.js";

/** Attributes of cast. */
export interface CastAttrs {
  readonly dtype: DType;
}

export const castDef: OpDef<CastAttrs> = {
  name: "cast",
  backward: ([dy], ctx) => {
    const from = ctx.inputs[0]!.dtype;
    return [dtypeInfo(from).isFloat ? cast(dy!, from === "bf16" || from === "f16" ? "f32" : from) : null];
  },
};

/**
 * Converts to `dtype` (a new tensor, also when the dtype is unchanged). Floats round to nearest
 * even into bf16/f16; floats to integers truncate toward zero, and NaN or out-of-range values are
 * an error.
 */
export function cast<T extends DType>(x: Tensor, dtype: T): Tensor<T> {
  x.assertAlive("cast");
  dtypeInfo(dtype);
  return runOp1(castDef, [x], { dtype }) as Tensor<T>;
}
