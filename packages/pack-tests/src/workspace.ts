// The workspace's packages, read from pnpm-workspace.yaml and each package.json.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (three levels above this file: packages/pack-tests/src). */
export const REPO_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** The fields of a package.json that the pack and install checks read. */
export interface PackageManifest {
  name: string;
  version: string;
  private?: boolean;
  main?: string;
  types?: string;
  bin?: string | Record<string, string>;
  exports?: unknown;
  files?: string[];
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  [key: string]: unknown;
}

/** One package of the workspace. */
export interface WorkspacePackage {
  name: string;
  version: string;
  /** Absolute directory. */
  dir: string;
  /** Directory relative to the repository root, e.g. `packages/core`. */
  relDir: string;
  manifest: PackageManifest;
}

/** Reads a package.json. */
export function readManifest(dir: string): PackageManifest {
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as PackageManifest;
}

/** The package globs of pnpm-workspace.yaml (`packages:` list; `dir` or `dir/*` entries). */
export function workspaceGlobs(root: string = REPO_ROOT): string[] {
  const text = readFileSync(join(root, "pnpm-workspace.yaml"), "utf8");
  const globs: string[] = [];
  let inPackages = false;
  for (const line of text.split("\n")) {
    if (/^\S/.test(line)) inPackages = /^packages:\s*$/.test(line);
    else if (inPackages) {
      const m = /^\s+-\s+["']?([^"'#]+?)["']?\s*$/.exec(line);
      if (m) globs.push(m[1]!);
    }
  }
  if (globs.length === 0) throw new Error(`${join(root, "pnpm-workspace.yaml")}: no "packages:" entries found`);
  return globs;
}

/** Every package of the workspace (the directories with a package.json that the globs name). */
export function workspacePackages(root: string = REPO_ROOT): WorkspacePackage[] {
  const dirs: string[] = [];
  for (const glob of workspaceGlobs(root)) {
    if (glob.endsWith("/*")) {
      const parent = join(root, glob.slice(0, -2));
      if (!existsSync(parent)) continue;
      for (const d of readdirSync(parent, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
        if (d.isDirectory() && existsSync(join(parent, d.name, "package.json"))) dirs.push(join(parent, d.name));
      }
    } else if (!glob.includes("*")) {
      if (existsSync(join(root, glob, "package.json"))) dirs.push(join(root, glob));
    } else {
      throw new Error(`pnpm-workspace.yaml: glob ${JSON.stringify(glob)} is not of the forms "dir" or "dir/*" that this check reads`);
    }
  }
  return dirs.map((dir) => {
    const manifest = readManifest(dir);
    return { name: manifest.name, version: manifest.version, dir, relDir: relative(root, dir), manifest };
  });
}

/** The packages that are published: every workspace package not marked `private`. */
export function publishedPackages(root: string = REPO_ROOT): WorkspacePackage[] {
  return workspacePackages(root).filter((p) => p.manifest.private !== true);
}
