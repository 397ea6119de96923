import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["ts/index.ts", "ts/install-plan.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node20",
});
