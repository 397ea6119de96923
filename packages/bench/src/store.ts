// The output directory of a run: bench.json (the settings a resumed run must share), one file per
// finished cell (cells/<id>.json, renamed into place as each cell ends), results.json and the
// report; locked while a run works in it.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { acquireLock, LOCK_FILE, writeFileAtomic, type DirectoryLock } from "@modulora/core";
import { comparableSettings } from "./settings.js";
import type { BenchCell, BenchSettings, CellResult } from "./types.js";

/** The format of bench.json. */
export const BENCH_DIR_FORMAT = "modulora-bench-dir/1";
/** The settings file of `out` (the report's files are listed in its `files`). */
export const BENCH_FILE = "bench.json";
/** The folder of `out` that holds one file per finished cell. */
export const CELLS_DIR = "cells";
/** The results of a finished run in `out`. */
export const RESULTS_FILE = "results.json";

interface BenchJson {
  format: string;
  settings: Record<string, unknown>;
  /** The report files of the last finished run (removed by `overwrite`). */
  files?: string[];
}

/** A difference between two settings objects: the first path where they differ, and both values. */
export function firstDifference(a: unknown, b: unknown, path = ""): { path: string; was: unknown; now: unknown } | null {
  if (JSON.stringify(a) === JSON.stringify(b)) return null;
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    for (const k of [...new Set([...Object.keys(ra), ...Object.keys(rb)])]) {
      const d = firstDifference(ra[k], rb[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
  }
  return { path: path || "(settings)", was: a, now: b };
}

const show = (v: unknown) => (v === undefined ? "unset" : JSON.stringify(v));

/** Whether a stored cell result is the result of `cell` (same row of the grid). */
function sameCell(r: CellResult, cell: BenchCell): boolean {
  return r.id === cell.id && r.kind === cell.kind && r.quantizer === cell.quantizer && r.bits === cell.bits && r.groupSize === cell.groupSize && JSON.stringify(r.options ?? {}) === JSON.stringify(cell.options ?? {});
}

/** The output directory of a run, locked from {@link BenchStore.open} to {@link BenchStore.close}. */
export class BenchStore {
  private constructor(
    readonly dir: string,
    private readonly lock: DirectoryLock,
  ) {}

  /**
   * Locks `dir` and prepares it: a fresh or empty directory is set up; a non-empty one needs
   * `resume` (its bench.json must hold the same settings, grid lists aside) or `overwrite` (what
   * an earlier bench wrote there is removed). Writes bench.json.
   */
  static open(dir: string, settings: BenchSettings, mode: { resume: boolean; overwrite: boolean }): BenchStore {
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new Error(`out ${dir} is a file, not a directory; choose a directory`);
    mkdirSync(dir, { recursive: true });
    const lock = acquireLock(join(dir, LOCK_FILE), "modulora bench");
    try {
      const store = new BenchStore(dir, lock);
      store.prepare(settings, mode);
      return store;
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  private prepare(settings: BenchSettings, { resume, overwrite }: { resume: boolean; overwrite: boolean }): void {
    const entries = readdirSync(this.dir).filter((n) => n !== LOCK_FILE && !(n === CELLS_DIR && readdirSync(join(this.dir, CELLS_DIR)).length === 0));
    const benchPath = join(this.dir, BENCH_FILE);
    const now = comparableSettings(settings);
    if (entries.length > 0) {
      if (resume) {
        if (!existsSync(benchPath)) throw new Error(`resume: ${this.dir} holds no ${BENCH_FILE}, so it is not a bench output directory; run without resume in an empty directory (or with overwrite)`);
        let saved: BenchJson;
        try {
          saved = JSON.parse(readFileSync(benchPath, "utf8")) as BenchJson;
        } catch (err) {
          throw new Error(`resume: ${benchPath} cannot be read (${(err as Error).message}); start over with overwrite`);
        }
        if (saved.format !== BENCH_DIR_FORMAT) throw new Error(`resume: ${benchPath} has format ${show(saved.format)}, this bench writes ${BENCH_DIR_FORMAT}; start over with overwrite`);
        const d = firstDifference(saved.settings, now);
        if (d) {
          throw new Error(
            `resume: the settings differ from the run in ${this.dir}: ${d.path} was ${show(d.was)}, now ${show(d.now)}; ` +
              "resume with the same settings (only quantizers, bits, groupSizes and the fp/baseline rows may change), or start over with overwrite",
          );
        }
      } else if (overwrite) this.removeOwnFiles();
      else throw new Error(`out ${this.dir} is not empty; pass resume to continue its run, overwrite to replace it, or choose another directory`);
    }
    mkdirSync(join(this.dir, CELLS_DIR), { recursive: true });
    const previous = existsSync(benchPath) && resume ? this.readBench() : null;
    this.writeBench({ format: BENCH_DIR_FORMAT, settings: now, ...(previous?.files ? { files: previous.files } : {}) });
  }

  private readBench(): BenchJson | null {
    try {
      return JSON.parse(readFileSync(join(this.dir, BENCH_FILE), "utf8")) as BenchJson;
    } catch {
      return null;
    }
  }

  private writeBench(b: BenchJson): void {
    writeFileAtomic(join(this.dir, BENCH_FILE), `${JSON.stringify(b, null, 2)}\n`);
  }

  /** What an earlier bench wrote: bench.json, cells/, results.json and the report files bench.json lists. */
  private removeOwnFiles(): void {
    const files = this.readBench()?.files ?? [];
    for (const f of files) if (!f.includes("..")) rmSync(join(this.dir, f), { force: true });
    for (const f of [BENCH_FILE, RESULTS_FILE]) rmSync(join(this.dir, f), { force: true });
    rmSync(join(this.dir, CELLS_DIR), { recursive: true, force: true });
  }

  private cellPath(id: string): string {
    return join(this.dir, CELLS_DIR, `${id}.json`);
  }

  /**
   * The stored result of `cell`, or null when it must run: no file, a file that does not parse
   * (reported through `warn`), a file of another row, or a failed cell (run again).
   */
  readCell(cell: BenchCell, warn: (message: string) => void): CellResult | null {
    const path = this.cellPath(cell.id);
    if (!existsSync(path)) return null;
    let r: CellResult;
    try {
      r = JSON.parse(readFileSync(path, "utf8")) as CellResult;
      if (!r || typeof r !== "object" || typeof r.status !== "string") throw new Error("not a cell result");
    } catch (err) {
      warn(`${path} cannot be read (${(err as Error).message}); running cell ${cell.id} again`);
      return null;
    }
    if (!sameCell(r, cell)) {
      warn(`${path} holds another row than cell ${cell.id} of this grid; running it again`);
      return null;
    }
    if (r.status === "failed") return null;
    if (r.status === "skipped" && !cell.skip) return null;
    return r;
  }

  /** Writes a finished cell's file (renamed into place). */
  writeCell(result: CellResult): string {
    const path = this.cellPath(result.id);
    writeFileAtomic(path, `${JSON.stringify(result, null, 2)}\n`);
    return path;
  }

  /** Writes a file of the run into `out` (renamed into place). */
  writeFile(name: string, text: string): string {
    const path = join(this.dir, name);
    writeFileAtomic(path, text);
    return path;
  }

  /** Records the report files in bench.json (for a later `overwrite`). */
  recordFiles(paths: readonly string[]): void {
    const b = this.readBench();
    if (!b) return;
    const rel = paths.map((p) => (p.startsWith(`${this.dir}/`) ? p.slice(this.dir.length + 1) : p)).filter((p) => !p.startsWith("/"));
    this.writeBench({ ...b, files: [...new Set([...(b.files ?? []), ...rel])] });
  }

  /** Releases the lock. */
  close(): void {
    this.lock.release();
  }
}
