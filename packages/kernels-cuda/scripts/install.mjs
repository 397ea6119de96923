#!/usr/bin/env node
// The "install" hook of @modulora/kernels-cuda: builds @modulora/kernels' sources with the CUDA
// backend (MODULORA_CUDA=ON) into this package's build/Release, where @modulora/kernels finds it.
// Checks first for nvcc, cuBLAS, a C++ compiler, a build tool and CMake, and fails naming what is
// missing. In the monorepo checkout it does nothing (there is no CUDA toolkit in CI; the GPU
// host builds the addon with scripts/gpu/host.sh).
import { spawnSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// Checked before anything is imported: in the checkout, dist/ does not exist yet at `pnpm install`.
const workspace = !root.split(sep).includes("node_modules") && existsSync(join(root, "..", "..", "pnpm-workspace.yaml"));
if (workspace) {
  console.log("@modulora/kernels-cuda: workspace checkout, nothing to install (build the CUDA addon with MODULORA_CUDA=ON pnpm --filter @modulora/kernels build)");
  process.exit(0);
}

const { cmakeJsCli, findBuildTools, BUILD_TOOLS_HINT, isExecutableFile: isExecutable } = await import("@modulora/kernels/install");

const { cudaAddonPath, cudaMissingMessage, findCudaToolkit } = await import("../dist/index.js");

const env = process.env;
const probe = { env, platform: process.platform, arch: process.arch, exists: existsSync, isExecutable, realpath: realpathSync };
const toolkit = findCudaToolkit(probe);
const tools = findBuildTools(probe);
const missing = [...toolkit.missing, ...tools.missing];
if (missing.length > 0) {
  console.error(cudaMissingMessage(missing));
  if (tools.missing.length > 0) console.error(`For the C++ side, install ${BUILD_TOOLS_HINT}.`);
  process.exit(1);
}
console.log(`@modulora/kernels-cuda: building the CUDA addon with ${toolkit.nvcc} and cuBLAS from ${dirname(toolkit.cublas.library)}`);

const requireFromHere = createRequire(join(root, "package.json"));
const kernelsRoot = dirname(requireFromHere.resolve("@modulora/kernels/package.json"));
const cmakeJs = cmakeJsCli(kernelsRoot);
const args = [cmakeJs, "compile", "--directory", kernelsRoot, "--out", join(root, "build"), "--CDMODULORA_CUDA=ON", `--CDCMAKE_CUDA_COMPILER=${toolkit.nvcc}`];
if (env.MODULORA_CUBLAS_ROOT) args.push(`--CDMODULORA_CUBLAS_ROOT=${env.MODULORA_CUBLAS_ROOT}`);
if (env.MODULORA_CUDA_ARCHS) args.push(`--CDMODULORA_CUDA_ARCHS=${env.MODULORA_CUDA_ARCHS}`);
const r = spawnSync(process.execPath, args, { cwd: kernelsRoot, stdio: "inherit", env });
if (r.status !== 0) {
  console.error(`@modulora/kernels-cuda: the CUDA build failed (cmake-js exit ${r.status ?? r.signal}); the output above says why.`);
  process.exit(1);
}
// The addon must load (libcudart and cuBLAS found at run time) and have the CUDA backend; no GPU is needed.
const check = spawnSync(process.execPath, ["-e", `const m = require(${JSON.stringify(cudaAddonPath)}); if (!m.cuda) { console.error("no cuda export"); process.exit(3); }`], { encoding: "utf8" });
if (check.status !== 0) {
  console.error(`@modulora/kernels-cuda: built ${cudaAddonPath}, but it does not load with the CUDA backend: ${(check.stderr || "").trim()}`);
  process.exit(1);
}
console.log(`@modulora/kernels-cuda: built ${cudaAddonPath}; @modulora/kernels will load it`);
