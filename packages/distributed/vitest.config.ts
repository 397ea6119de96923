import { defineConfig } from "vitest/config";

// One worker: CI has 2 cores and the other packages' native thread pools already use them.
export default defineConfig({ test: { pool: "forks", maxWorkers: 1, testTimeout: 60_000 } });
