// Output directories are never half-written: work happens in a temporary sibling directory that
// is renamed into place at the end, and removed on failure. Before anything is loaded, an --out is
// checked against the inputs (it may not be, contain or lie inside one), locked, and proved
// writable; temporaries left by a killed run are removed.
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { acquireLock, isStaleTemp, LockedError, LOCK_FILE, lockOwner, processAlive, type DirectoryLock } from "@modulora/core";
import { CliError, oneLine } from "./errors.js";
import { looksLikePath } from "./plugins.js";

/** Whether `dir` exists and holds something (the lock file of a run does not count). */
export function nonEmptyDir(dir: string): boolean {
  return existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).some((n) => n !== LOCK_FILE));
}

/** Refuses an --out that is a file, and an existing non-empty output directory unless `overwrite`. */
export function checkOutDir(dir: string, overwrite: boolean): void {
  checkNotAFile(dir);
  if (nonEmptyDir(dir) && !overwrite) throw new CliError(`output directory ${dir} already exists`, `pass --overwrite to replace it, or choose another --out`);
}

/** Refuses an --out that exists and is not a directory. */
export function checkNotAFile(dir: string): void {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new CliError(`--out ${dir} is a file, not a directory`, "pass --out a directory path (new or existing), not a file");
}

/** The real path of `p` (symbolic links resolved) where it exists; the part that does not exist yet is appended as given. */
export function realPathOf(p: string): string {
  const abs = resolve(p);
  const rest: string[] = [];
  for (let cur = abs; ; cur = dirname(cur)) {
    try {
      return join(realpathSync(cur), ...rest);
    } catch {
      if (dirname(cur) === cur) return abs;
      rest.unshift(basename(cur));
    }
  }
}

/** An input of a command: the flag that names it and its path. */
export interface InputPath {
  flag: string;
  path: string | undefined;
}

/** The inputs every command may have besides its own: `--plugin` files and the `--config` file. */
export function pluginAndConfigInputs(values: Record<string, unknown>): InputPath[] {
  const plugins = (values["plugin"] as string[] | undefined) ?? [];
  const config = values["config"] as string | undefined;
  return [...plugins.filter(looksLikePath).map((p) => ({ flag: "--plugin", path: p })), ...(config ? [{ flag: "--config", path: config }] : [])];
}

/**
 * Refuses an --out that is an input, contains one (replacing --out would delete it) or lies
 * inside one (writing it would change the input). Paths are compared with symbolic links resolved.
 */
export function checkOutsideInputs(out: string, inputs: readonly InputPath[]): void {
  const o = realPathOf(out);
  for (const { flag, path } of inputs) {
    if (path === undefined || path === "") continue;
    const i = realPathOf(path);
    const rel = relative(o, i);
    if (rel === "") throw new CliError(`--out ${out} is the ${flag} ${path}`, `choose an --out that is not one of the inputs`);
    if (!rel.startsWith(`..${sep}`) && rel !== ".." && !rel.startsWith(sep)) {
      throw new CliError(`--out ${out} contains the ${flag} ${path} (replacing --out would delete it)`, "choose an --out outside the inputs");
    }
    const back = relative(i, o);
    if (!back.startsWith(`..${sep}`) && back !== ".." && !back.startsWith(sep)) {
      throw new CliError(`--out ${out} lies inside the ${flag} ${path}`, "choose an --out outside the inputs");
    }
  }
}

/** The message for a lock file held by another live process. */
function lockedError(out: string, err: LockedError): CliError {
  const o = err.owner;
  return new CliError(
    `--out ${out} is in use${o ? ` by process ${o.pid} (${o.command || "modulora"}${o.started ? `, since ${o.started}` : ""})` : ""}`,
    `wait for that run to end, or choose another --out; if no such process runs, delete ${err.path}`,
    { cause: err },
  );
}

/**
 * Refuses `out` when the other kind of lock on it is held by a live process: a fine-tune's
 * lock inside it, or a quantize/export lock beside it (they would replace the directory under
 * each other).
 */
function checkOtherLock(out: string, lockPath: string): void {
  const owner = lockOwner(lockPath);
  if (owner && owner.pid !== process.pid && processAlive(owner.pid)) throw lockedError(out, new LockedError(lockPath, owner, `${lockPath} is held by process ${owner.pid}`));
}

const siblingLockPath = (abs: string) => join(dirname(abs), `.${basename(abs)}.lock`);

/** Why a path cannot be written, for messages. */
function cannotWrite(what: string, err: unknown): CliError {
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === "ENOTDIR" ? "a part of the path is a file, not a directory" : code === "EACCES" || code === "EPERM" ? "permission denied" : code === "EROFS" ? "read-only file system" : oneLine(err);
  return new CliError(`cannot write ${what}: ${why}`, "choose an --out you can write to", { cause: err });
}

/**
 * Locks the output directory `out` of a command that writes it in place (finetune): creates it if
 * needed (`created` says so) and takes `out/.modulora.lock`, which also proves it writable. A lock
 * of another live run is an error naming it; a stale one is taken over (`tookOver`).
 */
export function lockOutDirInPlace(out: string, command: string): { lock: DirectoryLock; created: boolean } {
  checkOtherLock(out, siblingLockPath(resolve(out)));
  const created = !existsSync(out);
  try {
    mkdirSync(out, { recursive: true });
  } catch (err) {
    throw cannotWrite(`--out ${out}`, err);
  }
  try {
    return { lock: acquireLock(join(out, LOCK_FILE), command), created };
  } catch (err) {
    if (created) rmSync(out, { recursive: true, force: true });
    if (err instanceof LockedError) throw lockedError(out, err);
    throw cannotWrite(`into --out ${out}`, err);
  }
}

/**
 * Locks the name `out` of a command that writes a temporary sibling and renames it into place
 * (quantize, export): takes `.<name>.lock` beside it (proving the parent writable), then removes
 * temporaries of `out` left by killed runs (a replacement cut between its renames is undone).
 * Returns the lock and what was cleaned.
 */
export function lockOutSibling(out: string, command: string): { lock: DirectoryLock; notes: string[]; createdParent: string | null } {
  const abs = resolve(out);
  const parent = dirname(abs);
  let createdParent: string | null = null;
  for (let p = parent; !existsSync(p) && dirname(p) !== p; p = dirname(p)) createdParent = p;
  try {
    mkdirSync(parent, { recursive: true });
  } catch (err) {
    throw cannotWrite(`the parent directory of --out ${out}`, err);
  }
  checkOtherLock(out, join(abs, LOCK_FILE));
  let lock: DirectoryLock;
  try {
    lock = acquireLock(siblingLockPath(abs), command);
  } catch (err) {
    if (createdParent) removeEmptyTree(createdParent);
    if (err instanceof LockedError) throw lockedError(out, err);
    throw cannotWrite(`into the parent directory of --out ${out}`, err);
  }
  const notes: string[] = [];
  if (lock.tookOver) notes.push(`took over the stale lock ${lock.path} of process ${lock.tookOver.pid}, which no longer runs`);
  const prefix = `.${basename(abs)}.tmp-`;
  const stale = readdirSync(parent).filter((n) => n.startsWith(prefix) && isStaleTemp(n));
  for (const n of stale) {
    // `<tmp>.old` is the previous --out moved aside by a replacement that was cut short: put it back.
    if (n.endsWith(".old") && !existsSync(abs) && lstatExists(join(parent, n))) {
      renameSync(join(parent, n), abs);
      notes.push(`restored ${out} (a replacement of it was interrupted)`);
    }
  }
  for (const n of stale) {
    if (!lstatExists(join(parent, n))) continue;
    rmSync(join(parent, n), { recursive: true, force: true });
    notes.push(`removed ${join(parent, n)} (left by an interrupted run)`);
  }
  return { lock, notes, createdParent };
}

/** Removes `dir` if it holds nothing but empty directories (what a failed command created); never throws. */
export function removeEmptyTree(dir: string): void {
  const empty = (d: string): boolean => readdirSync(d, { withFileTypes: true }).every((e) => e.isDirectory() && empty(join(d, e.name)));
  try {
    if (existsSync(dir) && empty(dir)) rmSync(dir, { recursive: true });
  } catch {
    // cleanup never hides the error that got us here
  }
}

function lstatExists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
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
