import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { BUILD_FROM_SOURCE_ENV, BUILD_TOOLS_HINT } from "./install-plan.js";
import { currentPlatform, platformTriple, type PlatformInfo } from "./platform.js";

/** Environment variable that overrides the path of the compiled addon (`modulora_kernels.node`). */
export const ADDON_PATH_ENV = "MODULORA_KERNELS_PATH";

/**
 * The same override under the name the bundled tools use (the conformance runner on a host
 * without the workspace). When both are set, this one wins.
 */
export const ADDON_ENV = "MODULORA_KERNELS_ADDON";

/** The npm package of the CUDA build of the addon; preferred over the CPU addon when installed. */
export const CUDA_PACKAGE = "@modulora/kernels-cuda";

/** The file name of the addon in every location. */
export const ADDON_FILE = "modulora_kernels.node";

/**
 * Where an addon candidate comes from: an environment override, the `@modulora/kernels-cuda`
 * package, a build from source in this package (`build/Release`, `build/Debug`), or the prebuilt
 * binary shipped for this platform (`prebuilds/<triple>`).
 */
export type AddonSource = "override" | "cuda" | "source" | "prebuilt";

/** One place the loader looks for the addon. */
export interface AddonCandidate {
  source: AddonSource;
  path: string;
}

/** What happened at one candidate: not there, there but failed to load (with the error), or loaded. */
export interface AddonAttempt extends AddonCandidate {
  outcome: "missing" | "failed" | "loaded";
  error?: string;
}

/** Everything the choice of addon depends on (gathered by {@link currentAddonContext}; tests build their own). */
export interface AddonContext {
  /** The root of this package (the folder of its package.json). */
  packageRoot: string;
  platform: PlatformInfo;
  /** The override in effect, if any: its variable and path. */
  override?: { env: string; path: string };
  /** The root of `@modulora/kernels-cuda` when it resolves from this package. */
  cudaPackageRoot?: string;
  /** Whether this package is the monorepo's source folder (not an installed copy under node_modules). */
  workspace: boolean;
  /** Where to report a bug (the package's `bugs.url`), if known. */
  bugsUrl?: string;
}

/** How candidates are tried: injected so that the choice can be tested without files. */
export interface AddonIo {
  exists(path: string): boolean;
  /** Loads the addon (`require`); throws when it cannot be loaded. */
  load(path: string): unknown;
}

/** The loaded addon, the candidate it came from, and every attempt before it. */
export interface LoadedAddon<T> {
  addon: T;
  from: AddonCandidate;
  attempts: AddonAttempt[];
}

/** The override in effect: its variable and path, or undefined when neither is set. */
export function addonOverride(env: Record<string, string | undefined> = process.env): { env: string; path: string } | undefined {
  for (const name of [ADDON_ENV, ADDON_PATH_ENV]) {
    const path = env[name];
    if (path) return { env: name, path };
  }
  return undefined;
}

/**
 * Where the loader looks, in order. With an override, only its path. Otherwise:
 * 1. the addon of `@modulora/kernels-cuda` (the same addon built with CUDA) when that package is installed;
 * 2. a build from source in this package, `build/Release` then `build/Debug`: it exists only where the
 *    install (or a developer) built one, and then it is the one asked for: the prebuilt did not load,
 *    `MODULORA_BUILD_FROM_SOURCE=1` was set, or the sources changed since the prebuilt was made;
 * 3. the prebuilt binary of this platform, `prebuilds/<platform>-<arch>[-<libc>]`.
 */
export function addonCandidatesFor(ctx: AddonContext): AddonCandidate[] {
  if (ctx.override) return [{ source: "override", path: ctx.override.path }];
  const out: AddonCandidate[] = [];
  if (ctx.cudaPackageRoot) out.push({ source: "cuda", path: join(ctx.cudaPackageRoot, "build", "Release", ADDON_FILE) });
  out.push({ source: "source", path: join(ctx.packageRoot, "build", "Release", ADDON_FILE) });
  out.push({ source: "source", path: join(ctx.packageRoot, "build", "Debug", ADDON_FILE) });
  out.push({ source: "prebuilt", path: join(ctx.packageRoot, "prebuilds", platformTriple(ctx.platform), ADDON_FILE) });
  return out;
}

const SOURCE_LABEL: Record<AddonSource, string> = {
  override: "override",
  cuda: `CUDA build (${CUDA_PACKAGE})`,
  source: "build from source",
  prebuilt: "prebuilt",
};

/**
 * Tries the candidates in order and returns the first that loads. A candidate that exists but
 * fails to load (a prebuilt for a newer glibc, a CUDA build without the CUDA runtime) is recorded
 * and the next one is tried; only an override that fails to load is an error at once.
 * @throws Error naming the platform, every path tried with what happened, and what to do.
 */
export function loadFirstAddon<T>(ctx: AddonContext, io: AddonIo): LoadedAddon<T> {
  const attempts: AddonAttempt[] = [];
  for (const c of addonCandidatesFor(ctx)) {
    if (!io.exists(c.path)) {
      attempts.push({ ...c, outcome: "missing" });
      continue;
    }
    try {
      const addon = io.load(c.path) as T;
      attempts.push({ ...c, outcome: "loaded" });
      return { addon, from: c, attempts };
    } catch (err) {
      const error = (err as Error).message;
      if (c.source === "override") {
        throw new Error(`@modulora/kernels: failed to load the addon at ${c.path} (from ${ctx.override!.env}): ${error}`);
      }
      attempts.push({ ...c, outcome: "failed", error });
    }
  }
  throw new Error(addonNotFoundMessage(ctx, attempts));
}

/** The error message when no candidate loads (exported for tests and for the install script). */
export function addonNotFoundMessage(ctx: AddonContext, attempts: readonly AddonAttempt[]): string {
  const tried = attempts.map((a) => a.path).join(", ");
  if (ctx.override) {
    return (
      `@modulora/kernels: ${ADDON_FILE} not found (${ctx.override.env}=${ctx.override.path} points at a file that does not exist; ` +
      `set it to the path of a built ${ADDON_FILE}). Tried: ${tried}`
    );
  }
  if (ctx.workspace) {
    return (
      `@modulora/kernels: ${ADDON_FILE} not found (build it with "pnpm --filter @modulora/kernels build", ` +
      `or set ${ADDON_ENV} (or ${ADDON_PATH_ENV}) to its path). Tried: ${tried}`
    );
  }
  const p = ctx.platform;
  const where = [platformTriple(p), p.glibcVersion ? `glibc ${p.glibcVersion}` : undefined, `Node ${process.version}`].filter(Boolean).join(", ");
  const lines = [`@modulora/kernels: no native addon could be loaded on ${where}. Tried:`];
  for (const a of attempts) {
    const what = a.outcome === "missing" ? "not found" : `failed to load: ${a.error}`;
    lines.push(`  - ${SOURCE_LABEL[a.source]} ${a.path}: ${what}`);
  }
  const first = attempts.find((a) => a.outcome === "failed");
  if (first) lines.push(`The first load error (${SOURCE_LABEL[first.source]}): ${first.error}`);
  lines.push(
    `To fix: build it from source: install ${BUILD_TOOLS_HINT}, then reinstall with ${BUILD_FROM_SOURCE_ENV}=1 ` +
      `(e.g. \`${BUILD_FROM_SOURCE_ENV}=1 npm rebuild @modulora/kernels\`); or set ${ADDON_ENV} to the path of a built ${ADDON_FILE}.`,
  );
  lines.push(
    `If a prebuilt binary should work here (linux-x64 and linux-arm64 with glibc, see docs/install.md), ` +
      `please file an issue${ctx.bugsUrl ? ` at ${ctx.bugsUrl}` : ""} with this message.`,
  );
  return lines.join("\n");
}

const require = createRequire(import.meta.url);
// ts/ (under vitest) and dist/ (after tsup) are both one level below the package root.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The root of `@modulora/kernels-cuda` when it resolves from this package, else undefined. */
function resolveCudaPackage(): string | undefined {
  try {
    return dirname(require.resolve(`${CUDA_PACKAGE}/package.json`));
  } catch {
    return undefined;
  }
}

/** The package's `bugs.url`, read only for an error message. */
function bugsUrl(): string | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as { bugs?: string | { url?: string } };
    return typeof pkg.bugs === "string" ? pkg.bugs : pkg.bugs?.url;
  } catch {
    return undefined;
  }
}

/** The context of this process: its platform, the environment's override, the installed CUDA package. */
export function currentAddonContext(): AddonContext {
  const override = addonOverride();
  const ctx: AddonContext = {
    packageRoot,
    platform: currentPlatform(),
    workspace: !packageRoot.split(sep).includes("node_modules") && existsSync(join(packageRoot, "..", "pnpm-workspace.yaml")),
  };
  if (override) ctx.override = override;
  else {
    const cuda = resolveCudaPackage();
    if (cuda) ctx.cudaPackageRoot = cuda;
  }
  return ctx;
}

/**
 * Where the loader looks for the addon, in order (see {@link addonCandidatesFor}): the path in
 * `MODULORA_KERNELS_ADDON` or `MODULORA_KERNELS_PATH` when one is set (only that path), else the
 * `@modulora/kernels-cuda` build when installed, `build/Release`, `build/Debug` and
 * `prebuilds/<platform>-<arch>[-<libc>]` of this package.
 */
export function addonCandidates(): string[] {
  return addonCandidatesFor(currentAddonContext()).map((c) => c.path);
}

const nodeIo: AddonIo = { exists: existsSync, load: (p) => require(p) };

/** Loads the raw addon with the record of what was tried; throws an error naming every path tried and what to do. */
export function loadAddonWithReport<T>(): LoadedAddon<T> {
  return loadFirstAddon<T>(currentAddonContext(), nodeIo);
}

/** Loads the raw addon; throws an error naming every path tried and how to build it. */
export function loadAddon<T>(): T {
  return loadAddonWithReport<T>().addon;
}
