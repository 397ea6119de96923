import { defineConfig } from "tsup";

// The conformance runner as one self-contained file for hosts without the workspace (the GPU
// host has no pnpm): every dependency inlined, the native addon loaded at run time from
// MODULORA_KERNELS_ADDON. Runs after the library build (which cleans dist/).
export default defineConfig({
  entry: { "conformance-runner": "src/conformance/runner.ts" },
  format: ["esm"],
  platform: "node",
  target: "node20",
  noExternal: [/.*/],
  splitting: false,
  dts: false,
  clean: false,
  sourcemap: false,
  outExtension: () => ({ js: ".mjs" }),
});
