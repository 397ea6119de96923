import { defineConfig } from "tsup";

// ONE self-contained file, dist/scaling.mjs, for the GPU host (plain `node`, no node_modules):
// every workspace and npm dependency inlined. The native addon is not: @modulora/kernels loads it
// from MODULORA_KERNELS_ADDON (or the tree's kernels/build/Release, which the bundle points it at
// when the variable is unset and that file exists).
export default defineConfig({
  entry: { scaling: "src/scaling.ts" },
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
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
