import { fileURLToPath } from "node:url";
import { defineConfig } from "tsup";

// Self-contained files for the GPU host (plain `node`, no node_modules), every workspace and npm
// dependency inlined: dist/scaling.mjs (this benchmark), dist/nccl-check.mjs and
// dist/compare-adapters.mjs (../../scripts/gpu/'s NCCL check and adapter comparison, resolved
// against this package's node_modules). The native
// addon is not inlined: @modulora/kernels loads it from MODULORA_KERNELS_ADDON (or the tree's
// kernels/build/Release, which scaling.mjs points it at when the variable is unset).
export default defineConfig({
  entry: { scaling: "src/scaling.ts", "nccl-check": "../../scripts/gpu/nccl-check.mjs", "compare-adapters": "../../scripts/gpu/compare-adapters.mjs" },
  outDir: "dist",
  outExtension: () => ({ js: ".mjs" }),
  format: ["esm"],
  platform: "node",
  target: "node20",
  splitting: false,
  clean: true,
  sourcemap: false,
  dts: false,
  noExternal: [/.*/],
  esbuildOptions(options) {
    options.nodePaths = [fileURLToPath(new URL("./node_modules", import.meta.url))];
  },
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
