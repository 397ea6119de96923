// The conformance table: every case, in report order.
import type { ConformanceCase } from "../types.js";
import { ATTENTION_CASES } from "./attention.js";
import { ELEMENTWISE_CASES } from "./elementwise.js";
import { LINALG_CASES } from "./linalg.js";
import { LOSS_CASES } from "./loss.js";
import { NN_CASES } from "./nn.js";
import { SHAPE_CASES } from "./shape.js";

export { COMPUTE_DTYPES } from "./common.js";

/** Every case of the conformance table. */
export const CONFORMANCE_CASES: readonly ConformanceCase[] = [
  ...ELEMENTWISE_CASES,
  ...LINALG_CASES,
  ...SHAPE_CASES,
  ...NN_CASES,
  ...ATTENTION_CASES,
  ...LOSS_CASES,
];

/**
 * Kernels that deliberately have no case of their own, with the reason. (None today: every
 * kernel registered for `cpu` is run by some case.)
 */
export const KERNELS_WITHOUT_CASE: Readonly<Record<string, string>> = {};
