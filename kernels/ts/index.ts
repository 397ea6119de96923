/**
 * `@modulora/kernels`: the native kernels of ModuLoRA-TS behind a typed facade. Every function
 * checks its arguments in C++ and throws a `TypeError`/`RangeError` that names the op.
 * @packageDocumentation
 */
export { ADDON_ENV, ADDON_PATH_ENV, addonCandidates } from "./loader.js";
export { native, type RawAddon } from "./native.js";
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
