/**
 * `@modulora/tensor/conformance`: the backend conformance suite. One table of every op × dtype ×
 * representative shapes, forward and backward, each checked against a float64 reference written
 * plainly in TypeScript, with bounds per dtype. Run it for any registered backend by name:
 * {@link runBackendConformance}, or `node conformance-runner.mjs --backend NAME`.
 * @packageDocumentation
 */
export {
  CONFORMANCE_CASES, COMPUTE_DTYPES, NOT_AT_BF16, KERNELS_WITHOUT_CASE, QUANT_KERNELS_WITHOUT_CASE, AFFINE_CASE_BITS, CODEBOOK_CASE_BITS,
} from "./cases/index.js";
export {
  runBackendConformance, runConformanceCase, selectCases, kernelsWithoutCase, quantKernelsWithoutCase, QUANT_FORMAT_ENTRIES, compareArrays, finiteDifferenceGrad,
  formatResult, readHost, roundToDType, type ConformanceOptions,
} from "./run.js";
export {
  CaseRng, UNIT_ROUNDOFF, FINITE_DIFFERENCE_ERROR, conformanceBound, caseName,
  type CaseInput, type ConformanceCase, type ConformanceCheck, type ConformanceResult,
} from "./types.js";
export { runConformanceCli, type CliIO } from "./cli.js";
export { runMemoryCheck, type MemoryCheckResult } from "./memory.js";
