// Output directories are never half-written: work happens in a temporary sibling directory that
// is renamed into place at the end, and removed on failure.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { CliError } from "./errors.js";

/** Whether `dir` exists and holds something. */
export function nonEmptyDir(dir: string): boolean {
  return existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0);
}

/** Refuses an existing non-empty output directory unless `overwrite`. */
export function checkOutDir(dir: string, overwrite: boolean): void {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new CliError(`--out ${dir} exists and is not a directory`, "choose another --out");
  if (nonEmptyDir(dir) && !overwrite) throw new CliError(`output directory ${dir} already exists`, `pass --overwrite to replace it, or choose another --out`);
}

/** A fresh temporary directory next to `target` (same file system, so the final rename is atomic). */
export function tempSibling(target: string): string {
  const abs = resolve(target);
  mkdirSync(dirname(abs), { recursive: true });
  const tmp = join(dirname(abs), `.${basename(abs)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  mkdirSync(tmp);
  return tmp;
}

/** Moves the finished `tmp` to `target`, replacing what was there (the old directory goes last). */
export function commitDir(tmp: string, target: string): void {
  const abs = resolve(target);
  if (existsSync(abs)) {
    const old = `${tmp}.old`;
    renameSync(abs, old);
    renameSync(tmp, abs);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(tmp, abs);
  }
}

/** Runs `fill(tmp)` on a temporary directory and renames it to `target`; on failure the temporary directory is removed. */
export async function writeDirAtomically<T>(target: string, fill: (tmp: string) => T | Promise<T>): Promise<T> {
  const tmp = tempSibling(target);
  try {
    const r = await fill(tmp);
    commitDir(tmp, target);
    return r;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Bytes of every file under `path` (or of the file). */
export function diskBytes(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const name of readdirSync(path)) total += diskBytes(join(path, name));
  return total;
}

/** 1234567 → "1.2 MB". */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let u = 0;
  let v = n;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}
