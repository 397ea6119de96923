import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["ts/index.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node20",
});
