// The conformance table: every case, in report order.
import { caseName, type ConformanceCase } from "../types.js";
import { COMPUTE_DTYPES } from "./common.js";
import { ATTENTION_CASES } from "./attention.js";
import { CREATION_CASES } from "./creation.js";
import { ELEMENTWISE_CASES } from "./elementwise.js";
import { LINALG_CASES } from "./linalg.js";
import { LOSS_CASES } from "./loss.js";
import { NN_CASES } from "./nn.js";
import { SHAPE_CASES } from "./shape.js";
import { QUANT_CASES } from "./quant.js";
import { OPTQ_CASES } from "./optq.js";

export { COMPUTE_DTYPES, NOT_AT_BF16 } from "./common.js";
export { AFFINE_CASE_BITS, CODEBOOK_CASE_BITS } from "./quant.js";

const BASE_CASES: readonly ConformanceCase[] = [...CREATION_CASES, ...ELEMENTWISE_CASES, ...LINALG_CASES, ...SHAPE_CASES, ...NN_CASES, ...ATTENTION_CASES, ...LOSS_CASES, ...QUANT_CASES, ...OPTQ_CASES];

/**
 * Cases run again on non-contiguous inputs (the transpose of a contiguous tensor), by name and
 * the inputs that get the strided layout: kernels must honour strides (or copy) on every backend.
 */
const STRIDED: readonly [string, readonly number[]][] = [
  ["exp {d} [3,33]", [0]],
  ["add {d} [3,1,33] [17,1]", [0]],
  ["sum {d} [5,7] axes=[0]", [0]],
  ["max {d} [17,33] axes=all", [0]],
  ["matmul {d} [17,33] [33,3]", [0, 1]],
  ["softmax {d} [3,33] axis=-1", [0]],
  ["logSoftmax {d} [3,33] axis=-1", [0]],
  ["rmsnorm {d} [3,17]", [0]],
  ["swiglu {d} [3,17]", [0, 1]],
  ["crossEntropy {d} [5,17] mean ignored 1/5", [0]],
  ["dropout {d} [3,33] p=0.1 seed=7 offset=0", [0]],
  ["gather {d} [17,5] axis=0 idx [3,4]", [0]],
  ["concat {d} [1,4] [2,4] axis=0", [0, 1]],
];

function strided(c: ConformanceCase, which: readonly number[]): ConformanceCase {
  return {
    ...c,
    label: `${c.label} strided`,
    inputs: (rng) => c.inputs(rng).map((inp, i) => (which.includes(i) ? { ...inp, layout: "transposed" as const } : inp)),
  };
}

const STRIDED_CASES: ConformanceCase[] = STRIDED.flatMap(([pattern, which]) =>
  (pattern.includes("{d}") ? COMPUTE_DTYPES.map((d) => pattern.replace("{d}", d)) : [pattern]).flatMap((name) => {
    const c = BASE_CASES.find((k) => caseName(k) === name);
    if (!c) throw new Error(`conformance table: no case '${name}' to run strided`);
    return [strided(c, which)];
  }),
);

/** Every case of the conformance table. */
export const CONFORMANCE_CASES: readonly ConformanceCase[] = [...BASE_CASES, ...STRIDED_CASES];

/**
 * Kernels that deliberately have no case of their own, with the reason. (None today: every
 * kernel registered for `cpu` is run by some case.)
 */
export const KERNELS_WITHOUT_CASE: Readonly<Record<string, string>> = {};

/**
 * Entries of the quantized format table (`format.forward`, `format.inputGrad`,
 * `format.dequantize`) that deliberately have no case, with the reason. (None today: every
 * format registered for `cpu` and `sim` has cases for all three.)
 */
export const QUANT_KERNELS_WITHOUT_CASE: Readonly<Record<string, string>> = {};
