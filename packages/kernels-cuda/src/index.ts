/**
 * `@modulora/kernels-cuda`: the CUDA build of the ModuLoRA-TS native addon. Installing this
 * package builds `@modulora/kernels`' sources with `MODULORA_CUDA=ON` where a CUDA toolkit with
 * cuBLAS is found; `@modulora/kernels` then loads this addon in place of its CPU addon (the same
 * addon, with the `cuda` backend). Nothing here needs to be imported for that to happen.
 * @packageDocumentation
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export { cublasSearchDirs, cudaMissingMessage, findCudaToolkit, nvccCandidates, type CublasLocation, type CudaProbe, type CudaToolkit } from "./toolkit.js";

// src/ (under vitest) and dist/ (after tsup) are both one level below the package root.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Where the install builds the CUDA addon: `build/Release/modulora_kernels.node` of this package (the path @modulora/kernels loads). */
export const cudaAddonPath: string = join(packageRoot, "build", "Release", "modulora_kernels.node");

/** Whether the install built the CUDA addon (false where the toolkit was missing or the build failed). */
export function isCudaAddonBuilt(): boolean {
  return existsSync(cudaAddonPath);
}
