import { defineConfig } from "tsup";

// Two entries: the library (index) and the executable (cli, with its shebang). Commands are
// split into chunks loaded on demand, so `modulora --help` does not load the native addon.
export default defineConfig({ entry: ["src/index.ts", "src/cli.ts"], format: ["esm"], dts: { entry: "src/index.ts" }, clean: true, sourcemap: true, target: "node20", splitting: true });
