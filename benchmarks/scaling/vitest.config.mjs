import { defineConfig } from "vitest/config";

// One worker: CI has 2 cores, and each test spawns the bundled benchmark, whose native thread pool uses both.
export default defineConfig({ test: { pool: "forks", maxWorkers: 1, testTimeout: 120_000, hookTimeout: 120_000 } });
