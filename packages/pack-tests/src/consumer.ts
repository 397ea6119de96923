// An empty consumer project that installs packed tarballs with `npm install --offline`. npm gets
// every package as a local tarball: ours from `pnpm pack`, the third-party ones packed from the
// copies pnpm installed in the workspace (node_modules/.pnpm), wired in through `overrides`. The
// npm cache starts empty, so a package that npm would have to fetch fails the install
// (ENOTCACHED) instead of reaching the network.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readManifest, type WorkspacePackage } from "./workspace.js";

/** A third-party package as pnpm installed it. */
export interface InstalledPackage {
  name: string;
  version: string;
  /** Its real directory (inside node_modules/.pnpm). */
  dir: string;
}

/** The node_modules folder that holds a package's real directory (pnpm puts its dependencies beside it). */
function holdingNodeModules(realDir: string, name: string): string {
  return realDir.slice(0, realDir.length - name.length - 1);
}

function locate(fromNodeModules: string, name: string): string | null {
  const p = join(fromNodeModules, name);
  return existsSync(join(p, "package.json")) ? realpathSync(p) : null;
}

/**
 * Every third-party package that installing `packages` pulls in (dependencies, optional
 * dependencies present on this platform, non-optional peers), found where pnpm linked them.
 * Two versions of one name are an error (the install wires third-party packages by name).
 */
export function thirdPartyClosure(packages: readonly WorkspacePackage[], workspaceNames: ReadonlySet<string>): InstalledPackage[] {
  const found = new Map<string, InstalledPackage>();
  const queue: { name: string; from: string; optional: boolean; wantedBy: string }[] = [];
  const depsOf = (m: ReturnType<typeof readManifest>) => [
    ...Object.keys(m.dependencies ?? {}).map((name) => ({ name, optional: false })),
    ...Object.keys(m.optionalDependencies ?? {}).map((name) => ({ name, optional: true })),
    ...Object.keys(m.peerDependencies ?? {}).map((name) => ({ name, optional: m.peerDependenciesMeta?.[name]?.optional === true })),
  ];
  for (const pkg of packages) {
    for (const d of depsOf(pkg.manifest)) {
      if (workspaceNames.has(d.name)) continue;
      // An optional peer is the user's choice; a missing optional dependency is another platform's.
      if (d.optional && pkg.manifest.peerDependencies?.[d.name] !== undefined) continue;
      queue.push({ ...d, from: join(pkg.dir, "node_modules"), wantedBy: pkg.name });
    }
  }
  while (queue.length > 0) {
    const { name, from, optional, wantedBy } = queue.shift()!;
    const dir = locate(from, name);
    if (dir === null) {
      if (optional) continue;
      throw new Error(`${wantedBy} needs ${name}, which is not installed in the workspace (looked in ${from}); run pnpm install`);
    }
    const m = readManifest(dir);
    const seen = found.get(name);
    if (seen) {
      if (seen.version !== m.version) throw new Error(`two versions of ${name} in the dependency closure (${seen.version}, ${m.version}); the offline install wires packages by name`);
      continue;
    }
    found.set(name, { name, version: m.version, dir });
    const nm = holdingNodeModules(dir, name);
    for (const d of depsOf(m)) {
      if (d.optional && m.peerDependencies?.[d.name] !== undefined) continue;
      queue.push({ ...d, from: nm, wantedBy: `${name}@${m.version}` });
    }
  }
  return [...found.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** Packs an installed package directory into `out` (a .tgz with the usual `package/` prefix). */
export function packInstalled(pkg: InstalledPackage, out: string): string {
  const r = spawnSync("tar", ["-czf", out, "--exclude=./node_modules", "--transform", "s,^\\.,package,", "-C", pkg.dir, "."], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tar of ${pkg.name}@${pkg.version} (${pkg.dir}) failed: ${r.stderr}`);
  return out;
}

/** What the consumer project installs. */
export interface ConsumerSpec {
  /** Direct dependencies: package name → tarball path. */
  dependencies: Record<string, string>;
  /** Direct dev dependencies: package name → tarball path. */
  devDependencies?: Record<string, string>;
  /** Every package that may appear in the tree (ours and third-party): name → tarball path. */
  tarballs: Record<string, string>;
}

/** Writes the consumer's package.json: `file:` specs for the direct dependencies, `overrides` for the rest. */
export function writeConsumer(dir: string, spec: ConsumerSpec): void {
  mkdirSync(dir, { recursive: true });
  const file = (p: string) => `file:${p}`;
  const map = (r: Record<string, string>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, file(v)]));
  const manifest = {
    name: "modulora-consumer",
    version: "0.0.0",
    private: true,
    type: "module",
    dependencies: map(spec.dependencies),
    devDependencies: map(spec.devDependencies ?? {}),
    overrides: map(spec.tarballs),
  };
  writeFileSync(join(dir, "package.json"), JSON.stringify(manifest, null, 2) + "\n");
}

/** The result of a child process. */
export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command, capturing its output. */
export function run(cmd: string, args: readonly string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number }): RunResult {
  const r = spawnSync(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, encoding: "utf8", timeout: options.timeout ?? 120_000, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.error ? `\n${r.error.message}` : "") };
}

/**
 * `npm install --offline` in `dir` with an empty npm cache of its own and a registry that cannot
 * answer, so nothing is fetched: every package must come from the tarballs.
 */
export function npmInstallOffline(dir: string, env: NodeJS.ProcessEnv = process.env): RunResult {
  const cache = join(dir, ".npm-cache");
  return run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--cache", cache, "--registry", "http://127.0.0.1:9/", "--loglevel", "warn", "--foreground-scripts"], {
    cwd: dir,
    env: { ...env, npm_config_update_notifier: "false" },
    timeout: 300_000,
  });
}

/**
 * A folder holding links to `tools` only (found on the current PATH; `node` is this process's
 * Node), for a PATH on which a build has no compiler, make, ninja or CMake to find.
 * @throws Error naming a tool that is not on the PATH.
 */
export function binFolderWith(dir: string, tools: readonly string[]): string {
  mkdirSync(dir, { recursive: true });
  for (const tool of tools) {
    const found = tool === "node" ? process.execPath : spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim();
    if (!found) throw new Error(`${tool} is not on the PATH (${process.env.PATH})`);
    symlinkSync(realpathSync(found), join(dir, tool));
  }
  return dir;
}

/** Variables that choose a compiler, CMake or the addon, or force a build: a test's environment leaves them out. */
export const BUILD_CHOICE_ENV = ["CXX", "CC", "CMAKE_JS_CMAKE_PATH", "MODULORA_BUILD_FROM_SOURCE", "MODULORA_KERNELS_PATH", "MODULORA_KERNELS_ADDON", "MODULORA_CUDA"] as const;

/** `env` without {@link BUILD_CHOICE_ENV}, with `set` applied. */
export function envWithout(env: NodeJS.ProcessEnv, set: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const k of BUILD_CHOICE_ENV) delete out[k];
  return { ...out, ...set };
}

/** `npm rebuild <name>` in `dir`, offline, with the same empty-cache, dead-registry settings as {@link npmInstallOffline}. */
export function npmRebuildOffline(dir: string, name: string, env: NodeJS.ProcessEnv = process.env, timeout = 900_000): RunResult {
  const cache = join(dir, ".npm-cache");
  return run("npm", ["rebuild", name, "--offline", "--cache", cache, "--registry", "http://127.0.0.1:9/", "--loglevel", "warn", "--foreground-scripts"], {
    cwd: dir,
    env: { ...env, npm_config_update_notifier: "false" },
    timeout,
  });
}
