import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Environment variable that overrides the path of the compiled addon (`modulora_kernels.node`). */
export const ADDON_PATH_ENV = "MODULORA_KERNELS_PATH";

/**
 * The same override under the name the bundled tools use (the conformance runner on a host
 * without the workspace). When both are set, this one wins.
 */
export const ADDON_ENV = "MODULORA_KERNELS_ADDON";

/** The override in effect: its variable and path, or undefined when neither is set. */
function addonOverride(): { env: string; path: string } | undefined {
  for (const env of [ADDON_ENV, ADDON_PATH_ENV]) {
    const path = process.env[env];
    if (path) return { env, path };
  }
  return undefined;
}

const require = createRequire(import.meta.url);
// ts/ (under vitest) and dist/ (after tsup) are both one level below the package root.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Where the loader looks for the addon, in order: the path in `MODULORA_KERNELS_ADDON` or
 * `MODULORA_KERNELS_PATH` when one is set (only that path), else `build/Release` and
 * `build/Debug` of this package.
 */
export function addonCandidates(): string[] {
  const override = addonOverride();
  if (override) return [override.path];
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
  const override = addonOverride();
  const hint = override
    ? `${override.env}=${override.path} points at a file that does not exist; set it to the path of a built modulora_kernels.node`
    : `build it with "pnpm --filter @modulora/kernels build", or set ${ADDON_ENV} (or ${ADDON_PATH_ENV}) to its path`;
  throw new Error(`@modulora/kernels: modulora_kernels.node not found (${hint}). Tried: ${candidates.join(", ")}`);
}
