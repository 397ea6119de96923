// Exclusive locks on output directories: a lock file created with O_EXCL that records the pid.
// A lock whose process is gone (killed by a signal it could not catch) is stale: it is named and
// taken over. Locks are re-entrant within a process (the CLI takes the lock before loading the
// model, the Trainer takes the same lock again), and released on every exit path of the owner.
import { closeSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";

/** The lock file the Trainer keeps inside its output directory while it runs. */
export const LOCK_FILE = ".modulora.lock";

/** What a lock file records. */
export interface LockOwner {
  pid: number;
  hostname: string;
  /** ISO time the lock was taken. */
  started: string;
  /** What holds it (e.g. `modulora finetune`). */
  command: string;
}

/** A held lock; {@link DirectoryLock.release} removes the file once the last holder releases it. */
export interface DirectoryLock {
  readonly path: string;
  /** The owner of a stale lock this call took over (its process was gone), else null. */
  readonly tookOver: LockOwner | null;
  release(): void;
}

/** Thrown when another live process holds the lock. */
export class LockedError extends Error {
  constructor(
    readonly path: string,
    readonly owner: LockOwner | null,
    message: string,
  ) {
    super(message);
    this.name = "LockedError";
  }
}

/** Whether a process with this id runs on this machine (EPERM: it exists, under another user). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readOwner(path: string): LockOwner | null {
  try {
    const j = JSON.parse(readFileSync(path, "utf8")) as Partial<LockOwner>;
    if (typeof j.pid !== "number") return null;
    return { pid: j.pid, hostname: String(j.hostname ?? ""), started: String(j.started ?? ""), command: String(j.command ?? "") };
  } catch {
    return null; // being written, or not ours
  }
}

const held = new Map<string, { count: number; tookOver: LockOwner | null }>();

function tryCreate(path: string, owner: LockOwner): boolean {
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o644); // O_CREAT | O_EXCL: exactly one process creates it
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
  try {
    writeSync(fd, `${JSON.stringify(owner)}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

const describe = (o: LockOwner) => `process ${o.pid}${o.command ? ` (${o.command}` : " ("}${o.started ? `, since ${o.started}` : ""})`;

/**
 * Takes the lock file `path` for this process. Another live process holding it is a
 * {@link LockedError}; a lock left by a process that no longer runs (on this host) is taken over
 * and reported in `tookOver`. Errors creating the file (EACCES, EROFS, ENOTDIR...) propagate:
 * they mean the directory is not writable.
 */
export function acquireLock(path: string, command = "modulora"): DirectoryLock {
  const mine = held.get(path);
  if (mine) {
    mine.count++;
    return handle(path, mine.tookOver);
  }
  const owner: LockOwner = { pid: process.pid, hostname: hostname(), started: new Date().toISOString(), command };
  let tookOver: LockOwner | null = null;
  for (let attempt = 0; ; attempt++) {
    if (tryCreate(path, owner)) break;
    const other = readOwner(path);
    const local = !other || other.hostname === "" || other.hostname === owner.hostname;
    if (other && local && !processAlive(other.pid) && attempt < 3) {
      // Stale: move it aside under a name of our own (a rename is atomic, so of two processes taking
      // over the same stale lock, one moves it and the other finds a live lock or retries).
      const aside = `${path}.stale-${process.pid}`;
      try {
        renameSync(path, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw err;
      }
      const moved = readOwner(aside);
      if (moved && moved.pid !== other.pid) {
        // Another process took it over between our read and our rename: give it back.
        renameSync(aside, path);
        throw new LockedError(path, moved, `${path} is held by ${describe(moved)}`);
      }
      unlinkSync(aside);
      tookOver = other;
      continue;
    }
    if (!other && attempt < 3) {
      // Just created by another process and not written yet, or not a lock file of ours.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      continue;
    }
    if (!other) throw new LockedError(path, null, `${path} exists and is not a lock file written by modulora`);
    throw new LockedError(path, other, `${path} is held by ${describe(other)}${local ? "" : ` on host ${other.hostname}`}`);
  }
  held.set(path, { count: 1, tookOver });
  return handle(path, tookOver);
}

function handle(path: string, tookOver: LockOwner | null): DirectoryLock {
  let released = false;
  return {
    path,
    tookOver,
    release() {
      if (released) return;
      released = true;
      const h = held.get(path);
      if (!h) return;
      if (--h.count > 0) return;
      held.delete(path);
      try {
        if (readOwner(path)?.pid === process.pid) unlinkSync(path);
      } catch {
        // already gone (e.g. its directory was removed): nothing to release
      }
    },
  };
}

/** The owner recorded in a lock file, if it exists and is one of ours. */
export function lockOwner(path: string): LockOwner | null {
  return readOwner(path);
}
