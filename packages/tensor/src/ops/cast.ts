// dtype conversion. Differentiable between float dtypes: the gradient is cast back to the input's
// dtype (bf16 → f32 gives a bf16 gradient, f32 → bf16 an f32 one), which is how the bf16 policy
// mixes dtypes (an f32 LoRA factor on bf16 activations: `matmul(x.cast("f32"), A)`).
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
    // f16 carries no gradient of its own (storage-only): its gradient stays f32.
    return [dtypeInfo(from).isFloat ? cast(dy!, from === "f16" ? "f32" : from) : null];
  },
};

/**
 * Converts to `dtype` (a new tensor, also when the dtype is unchanged). Floats round to nearest
 * even into bf16/f16; floats to integers truncate toward zero, and NaN or out-of-range values are
 * an error. Differentiable from float to float: the gradient has the input's dtype (f32 for an f16
 * input, which carries no gradient of its own).
 */
export function cast<T extends DType>(x: Tensor, dtype: T): Tensor<T> {
  x.assertAlive("cast");
  dtypeInfo(dtype);
  return runOp1(castDef, [x], { dtype }) as Tensor<T>;
}
