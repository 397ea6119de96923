import { defineConfig } from "tsup";

// One self-contained file of the CLI for machines without node_modules (the GPU host): every
// workspace and npm dependency inlined, except the native addon (loaded by @modulora/kernels
// from MODULORA_KERNELS_ADDON) and resvg (PNG plots; a missing plot is reported, not fatal).
export default defineConfig({
  entry: { "modulora-bundle": "src/cli.ts" },
  outDir: "dist-bundle",
  format: ["esm"],
  platform: "node",
  target: "node20",
  splitting: false,
  clean: true,
  sourcemap: false,
  noExternal: [/^(?!@resvg\/)/],
  external: ["@resvg/resvg-js"],
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
