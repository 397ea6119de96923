import { defineConfig } from "vitest/config";

// One worker: CI has 2 cores and the native thread pool already uses them.
export default defineConfig({ test: { pool: "forks", maxWorkers: 1, testTimeout: 60_000 } });
