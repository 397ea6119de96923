import { defineConfig } from "vitest/config";

// One worker: CI has 2 cores and the native thread pool already uses them. The packing and the
// npm install run once for the whole file (beforeAll).
export default defineConfig({ test: { pool: "forks", maxWorkers: 1, testTimeout: 180_000, hookTimeout: 600_000 } });
