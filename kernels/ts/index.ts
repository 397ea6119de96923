/**
 * `@modulora/kernels`: the native kernels of ModuLoRA-TS behind a typed facade. Every function
 * checks its arguments in C++ and throws a `TypeError`/`RangeError` that names the op.
 * @packageDocumentation
 */
export {
  ADDON_ENV,
  ADDON_PATH_ENV,
  ADDON_FILE,
  CUDA_PACKAGE,
  addonCandidates,
  addonCandidatesFor,
  addonNotFoundMessage,
  currentAddonContext,
  loadFirstAddon,
  type AddonAttempt,
  type AddonCandidate,
  type AddonContext,
  type AddonIo,
  type AddonSource,
  type LoadedAddon,
} from "./loader.js";
export { currentPlatform, platformTriple, type Libc, type PlatformInfo } from "./platform.js";
export { BUILD_FROM_SOURCE_ENV } from "./install-plan.js";
export { native, addonLoadReport, type AddonLoadReport, type RawAddon } from "./native.js";
export * from "./storage.js";
export * from "./gemm.js";
export * from "./elementwise.js";
export * from "./io.js";
export * from "./attention.js";
export * from "./nn.js";
export * from "./loss.js";
export * from "./quant.js";
export * from "./optq.js";
export * from "./cuda.js";
export * from "./nccl.js";
