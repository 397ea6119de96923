import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Environment variable that overrides the path of the compiled addon (`modulora_kernels.node`). */
export const ADDON_PATH_ENV = "MODULORA_KERNELS_PATH";

const require = createRequire(import.meta.url);
// ts/ (under vitest) and dist/ (after tsup) are both one level below the package root.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Where the loader looks for the addon, in order. */
export function addonCandidates(): string[] {
  const fromEnv = process.env[ADDON_PATH_ENV];
  if (fromEnv) return [fromEnv];
  return [
    join(packageRoot, "build", "Release", "modulora_kernels.node"),
    join(packageRoot, "build", "Debug", "modulora_kernels.node"),
  ];
}

/** Loads the raw addon; throws an error naming every path tried and how to build it. */
export function loadAddon<T>(): T {
  const candidates = addonCandidates();
  for (const p of candidates) {
    if (existsSync(p)) {
      try {
        return require(p) as T;
      } catch (err) {
        throw new Error(`@modulora/kernels: failed to load the addon at ${p}: ${(err as Error).message}`);
      }
    }
  }
  const hint = process.env[ADDON_PATH_ENV]
    ? `${ADDON_PATH_ENV} points at a file that does not exist`
    : `build it with "pnpm --filter @modulora/kernels build", or set ${ADDON_PATH_ENV} to its path`;
  throw new Error(`@modulora/kernels: modulora_kernels.node not found (${hint}). Tried: ${candidates.join(", ")}`);
}
