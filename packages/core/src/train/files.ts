// Writing inside an output directory: never through a symbolic link planted there, every error
// naming its file, and directories replaced only once their successor is complete (the old one
// moves aside, the new one moves in, then the old one goes). A run killed between those renames
// is recovered on the next start by recoverOutDir.
import { closeSync, constants, lstatSync, openSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { processAlive } from "./lock.js";

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Whether `path` exists, without following a symbolic link. */
export function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Appends `text` to the file `path` (created if missing). A symbolic link at `path` is refused,
 * never followed (O_NOFOLLOW); a failure (ENOSPC, EACCES...) names the file.
 */
export function appendNoFollow(path: string, text: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ELOOP") throw new Error(`${path} is a symbolic link; refusing to write through it (remove it)`, { cause: err });
    throw new Error(`cannot open ${path} for appending: ${message(err)}`, { cause: err });
  }
  try {
    const buf = Buffer.from(text, "utf8");
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
  } catch (err) {
    throw new Error(`cannot append to ${path}: ${message(err)}`, { cause: err });
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes the file `path` through a temporary file in the same directory and one rename: a
 * symbolic link at `path` is replaced, not followed, and a failed write leaves the old file.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now().toString(36)}`;
  try {
    writeFileSync(tmp, data, { flag: "wx" });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new Error(`cannot write ${path}: ${message(err)}`, { cause: err });
  }
}

/** Puts the complete directory `tmp` at `dir`: an existing `dir` moves aside first and is removed last. */
export function replaceDir(tmp: string, dir: string): void {
  if (!lexists(dir)) {
    renameSync(tmp, dir);
    return;
  }
  const old = `${dir}.old-${process.pid}-${Date.now().toString(36)}`;
  renameSync(dir, old);
  try {
    renameSync(tmp, dir);
  } catch (err) {
    renameSync(old, dir);
    throw err;
  }
  rmSync(old, { recursive: true, force: true });
}

/** `name.tmp-PID-…` / `name.old-PID-…`: what the writers of this package leave while they work. */
const TEMP = /\.(tmp|old)-(\d+)-[0-9a-z]+/;

/** Whether `name` is a temporary or moved-aside entry written by this package (any process). */
export function isTempName(name: string): boolean {
  return TEMP.test(name);
}

/** Whether `name` is a temporary or moved-aside entry of a process that no longer runs. */
export function isStaleTemp(name: string): boolean {
  const m = TEMP.exec(name);
  if (!m) return false;
  const pid = Number(m[2]);
  return pid !== process.pid && !processAlive(pid);
}

/**
 * Recovers `outDir` (whose lock the caller holds) from a run that was killed while writing: a
 * directory moved aside whose successor never arrived is put back, and stale temporary entries
 * (`*.tmp-*`, `*.old-*` of processes that no longer run) are removed. Returns what it did, one
 * line per entry.
 */
export function recoverOutDir(outDir: string): string[] {
  const notes: string[] = [];
  const names = readdirSync(outDir);
  for (const name of names) {
    const m = /^(.+)\.old-(\d+)-[0-9a-z]+$/.exec(name);
    if (!m || !isStaleTemp(name) || TEMP.test(m[1]!)) continue;
    const target = join(outDir, m[1]!);
    if (!lexists(target)) {
      renameSync(join(outDir, name), target);
      notes.push(`restored ${target} (a replacement of it was interrupted)`);
    }
  }
  for (const name of readdirSync(outDir)) {
    if (!isStaleTemp(name)) continue;
    rmSync(join(outDir, name), { recursive: true, force: true });
    notes.push(`removed ${join(outDir, name)} (left by an interrupted run)`);
  }
  return notes;
}
