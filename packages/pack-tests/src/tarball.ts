// Packing a package with pnpm and reading what its tarball holds.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { PackageManifest, WorkspacePackage } from "./workspace.js";

/** One file of a tarball: its path inside the package (without the `package/` prefix) and size. */
export interface TarEntry {
  path: string;
  size: number;
}

/** The file name `pnpm pack` gives a package's tarball: `@scope/name` 1.2.3 → `scope-name-1.2.3.tgz`. */
export function tarballName(name: string, version: string): string {
  return `${name.replace(/^@/, "").replace("/", "-")}-${version}.tgz`;
}

/** Runs `pnpm pack --pack-destination dest` in the package's directory; returns the tarball's path. */
export function packPackage(pkg: WorkspacePackage, dest: string, env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync("pnpm", ["pack", "--pack-destination", dest], { cwd: pkg.dir, encoding: "utf8", env });
  const out = join(dest, tarballName(pkg.name, pkg.version));
  if (r.status !== 0 || !existsSync(out)) {
    throw new Error(`pnpm pack of ${pkg.name} (${pkg.relDir}) failed (exit ${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  }
  return out;
}

/**
 * Adds `file` to a package tarball as `package/<inside>` (the tarball is rewritten in place).
 * Used to put the workspace's built addon where a prepack prebuild would have put it.
 */
export function addToTarball(tgz: string, inside: string, file: string): void {
  const dir = mkdtempSync(join(tmpdir(), "modulora-retar-"));
  try {
    const x = spawnSync("tar", ["-xzf", tgz, "-C", dir], { encoding: "utf8" });
    if (x.status !== 0) throw new Error(`tar -xzf ${tgz}: ${x.stderr}`);
    mkdirSync(dirname(join(dir, "package", inside)), { recursive: true });
    copyFileSync(file, join(dir, "package", inside));
    const c = spawnSync("tar", ["-czf", tgz, "-C", dir, "package"], { encoding: "utf8" });
    if (c.status !== 0) throw new Error(`tar -czf ${tgz}: ${c.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Writes a copy of a package tarball to `out` without `package/<inside>` (a file or a folder).
 * Used to make the kernels' tarball as a platform without a prebuilt addon gets it.
 * @throws Error when the tarball holds nothing at `inside` (the copy would test nothing).
 */
export function copyTarballWithout(tgz: string, out: string, inside: string): string {
  const dir = mkdtempSync(join(tmpdir(), "modulora-retar-"));
  try {
    const x = spawnSync("tar", ["-xzf", tgz, "-C", dir], { encoding: "utf8" });
    if (x.status !== 0) throw new Error(`tar -xzf ${tgz}: ${x.stderr}`);
    const target = join(dir, "package", inside);
    if (!existsSync(target)) throw new Error(`${tgz} holds no package/${inside} to leave out`);
    rmSync(target, { recursive: true, force: true });
    mkdirSync(dirname(out), { recursive: true });
    const c = spawnSync("tar", ["-czf", out, "-C", dir, "package"], { encoding: "utf8" });
    if (c.status !== 0) throw new Error(`tar -czf ${out}: ${c.stderr}`);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The regular files of a .tgz, read with a plain ustar parser (the first path segment stripped). */
export function readTarball(path: string): TarEntry[] {
  const buf = gunzipSync(readFileSync(path));
  const entries: TarEntry[] = [];
  let longName: string | null = null;
  for (let off = 0; off + 512 <= buf.length; ) {
    const header = buf.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const str = (a: number, n: number) => {
      const s = header.subarray(a, a + n);
      const end = s.indexOf(0);
      return s.subarray(0, end < 0 ? n : end).toString("utf8");
    };
    const size = parseInt(str(124, 12).trim() || "0", 8);
    const type = String.fromCharCode(header[156]!);
    const prefix = str(345, 155);
    let name = longName ?? (prefix ? `${prefix}/${str(0, 100)}` : str(0, 100));
    longName = null;
    const body = off + 512;
    off = body + Math.ceil(size / 512) * 512;
    if (type === "L") {
      longName = buf.subarray(body, body + size).toString("utf8").replace(/\0+$/, "");
      continue;
    }
    if (type === "x" || type === "g") {
      const m = /\d+ path=([^\n]*)\n/.exec(buf.subarray(body, body + size).toString("utf8"));
      if (m) longName = m[1]!;
      continue;
    }
    if (type !== "0" && type !== "\0") continue;
    name = name.replace(/^[^/]+\//, "");
    entries.push({ path: name, size });
  }
  return entries.sort((a, b) => a.path.localeCompare(b.path));
}

/** Every file path a manifest points at: `exports` targets (all conditions), `main`, `types`, `bin`. */
export function manifestTargets(manifest: PackageManifest): string[] {
  const out = new Set<string>();
  const walk = (v: unknown): void => {
    if (typeof v === "string") out.add(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(manifest.exports);
  for (const key of ["main", "types"] as const) if (typeof manifest[key] === "string") out.add(manifest[key]);
  if (typeof manifest.bin === "string") out.add(manifest.bin);
  else if (manifest.bin) Object.values(manifest.bin).forEach((b) => out.add(b));
  return [...out].map((p) => p.replace(/^\.\//, "")).sort();
}

/** Paths a published tarball must not hold: sources (unless `allowSources`), tests, fixtures, build configs. */
export function forbiddenFiles(entries: readonly TarEntry[], options: { allowSources?: boolean } = {}): string[] {
  const rules: RegExp[] = [
    /^(test|tests|__tests__|fixtures|examples)\//,
    /(^|\/)[^/]+\.(test|spec)\.[cm]?[jt]sx?$/,
    /(^|\/)(tsconfig[^/]*\.json|tsup[^/]*\.config\.[cm]?[jt]s|vitest\.config\.[cm]?[jt]s|typedoc\.json|turbo\.json|test-results\.json)$/,
    /(^|\/)(node_modules|\.turbo)\//,
    /\.tsbuildinfo$/,
  ];
  if (!options.allowSources) rules.push(/^src\//, /(^|\/)[^/]+(?<!\.d)\.[cm]?ts$/);
  return entries.map((e) => e.path).filter((p) => rules.some((r) => r.test(p)));
}

/** Formats bytes as KiB with one decimal. */
export function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}
