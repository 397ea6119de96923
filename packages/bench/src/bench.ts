// runBench: resolve the settings, plan the grid, run each cell in order (keeping each finished
// cell in `out`, so that an interrupted run resumes), then write results.json and the report.
import { basename, resolve } from "node:path";
import { LlamaTokenizer, readLlamaConfig, type LlamaConfig } from "@modulora/llama";
import { BenchAbortError, runCell } from "./cell.js";
import { benchEnvironment } from "./environment.js";
import { planGrid } from "./grid.js";
import { resolveBenchSettings } from "./settings.js";
import { BenchStore, RESULTS_FILE } from "./store.js";
import { BenchData } from "./tasks.js";
import { writePlots } from "./plots.js";
import { writeReport } from "./report.js";
import type { BenchEvent, BenchOptions, BenchResults, BenchWriters, CellResult } from "./types.js";

/** Parameters of a LLaMA model from its config: embedding, head (unless tied), norms and every block's linears. */
export function parameterCount(c: LlamaConfig): number {
  const { hiddenSize: h, numHeads, numKvHeads, headDim: d, intermediateSize: m, vocabSize: v, numLayers } = c;
  const attention = h * numHeads * d * 2 + h * numKvHeads * d * 2; // q, o; k, v
  const mlp = 3 * h * m;
  return v * h * (c.tieWordEmbeddings ? 1 : 2) + h + numLayers * (attention + mlp + 2 * h);
}

/** The writers of a run: the given ones, else this package's results.md and plots. */
function writersOf(given: Partial<BenchWriters> | undefined): BenchWriters {
  return { writeReport: given?.writeReport ?? writeReport, writePlots: given?.writePlots ?? writePlots };
}

/**
 * Runs a benchmark grid (see {@link BenchOptions}) and returns its results, also written to
 * `out/results.json`, with results.md and the plots beside it. Each finished cell is kept in
 * `out/cells/`; with `resume` a later call runs only the cells that are missing. A run stopped
 * through `signal` throws an error named `AbortError` between two phases of a cell, after
 * keeping every finished cell. A cell that fails is recorded as `failed` and the run goes on.
 */
export async function runBench(options: BenchOptions): Promise<BenchResults> {
  const settings = resolveBenchSettings(options);
  const emit = (e: BenchEvent) => options.onEvent?.(e);
  const warn = (message: string) => emit({ type: "warning", message });
  const config = readLlamaConfig(settings.model);
  const cells = planGrid(settings, config);
  const out = resolve(options.out);
  const startedAt = new Date().toISOString();
  const store = BenchStore.open(out, settings, { resume: options.resume ?? false, overwrite: options.overwrite ?? false });
  try {
    const data = new BenchData(settings, LlamaTokenizer.fromDir(settings.model));
    // Warnings about the stored cells come after `start`, which is always the first event.
    const notes: string[] = [];
    const stored = cells.map((c) => (options.resume ? store.readCell(c, (m) => notes.push(m)) : null));
    const total = cells.length;
    emit({ type: "start", total, cells, resumed: stored.filter((r) => r !== null).length });
    for (const m of notes) warn(m);
    const signal = options.signal;
    const stopped = (done: number) =>
      new BenchAbortError(`the bench was stopped after ${done} of ${total} cells; the finished cells are kept in ${out}/cells: run it again with the same settings and resume: true (modulora bench --resume) to run the rest`);
    const results: CellResult[] = [];
    for (const [index, cell] of cells.entries()) {
      const have = stored[index];
      if (have) {
        results.push(have);
        emit({ type: "cell-end", index, total, result: have, resumed: true });
        continue;
      }
      if (signal?.aborted) throw stopped(results.length);
      emit({ type: "cell-start", index, total, cell });
      const result = await runCell(cell, {
        data,
        report: (phase, done, of) => emit({ type: "phase", index, cell, phase, done, of }),
        checkAbort: () => {
          if (signal?.aborted) throw stopped(results.length);
        },
      });
      store.writeCell(result);
      results.push(result);
      emit({ type: "cell-end", index, total, result, resumed: false });
    }

    const bench: BenchResults = {
      schema: "modulora-bench/1",
      settings,
      model: { path: settings.model, name: basename(settings.model), parameters: parameterCount(config), layers: config.numLayers, hidden: config.hiddenSize, vocab: config.vocabSize },
      environment: benchEnvironment(settings.device),
      ...(options.command !== undefined ? { command: options.command } : {}),
      startedAt,
      finishedAt: new Date().toISOString(),
      cells: results,
    };
    const files = [store.writeFile(RESULTS_FILE, `${JSON.stringify(bench, null, 2)}\n`)];
    const writers = writersOf(options.writers);
    files.push(...writers.writeReport(out, bench));
    try {
      files.push(...(await writers.writePlots(out, bench)));
    } catch (err) {
      warn(`the plots could not be drawn: ${(err as Error).message}; results.json and results.md are written`);
    }
    store.recordFiles(files.slice(1));
    emit({ type: "end", results: bench, files });
    return bench;
  } finally {
    store.close();
  }
}
