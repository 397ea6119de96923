// modulora bench: the cross-quantizer grid of @modulora/bench from the command line, with a
// progress line per cell and a bar per phase; Ctrl-C stops between phases (--resume continues).
import { BenchAbortError, BenchSettingsError, runBench as runBenchGrid, type BenchEvent, type BenchOptions, type BenchTask, type CellResult, type GroupSize } from "@modulora/bench";
import type { ModelDType } from "@modulora/llama";
import { CliError, oneLine } from "../errors.js";
import type { CommandContext } from "../main.js";
import { checkDevice } from "../model.js";
import { setupQuantizers } from "../plugins.js";
import { formatSeconds, Progress, type ProgressBar } from "../progress.js";

interface BenchArgs {
  model: string;
  out: string;
  quantizers?: string[];
  bits: string[];
  groupSize: string[];
  tasks: BenchTask[];
  pplData?: string;
  pplSeqLen: number;
  stride?: number;
  maxWindows: string;
  classifyTrain?: string;
  classifyValid?: string;
  classifySamples: number;
  summarizeTrain?: string;
  summarizeValid?: string;
  summarizeSamples: number;
  steps: number;
  lr: number;
  batchSize: number;
  seqLen: number;
  rank: number;
  alpha: number;
  dropout: number;
  warmup: number;
  maxNewTokens: number;
  calib?: string;
  calibSamples: number;
  calibSeqLen: number;
  fp: boolean;
  baseline: boolean;
  resume: boolean;
  overwrite: boolean;
  seed: number;
  device: string;
  dtype: ModelDType;
  json: boolean;
  plugin?: string[];
}

/** `--bits 2,3,4` as integers. */
function parseBits(items: readonly string[]): number[] {
  return items.map((s) => {
    const b = Number(s);
    if (!/^\d+$/.test(s) || !Number.isInteger(b) || b < 1 || b > 16) throw new CliError(`--bits: '${s}' is not a bit width`, "pass whole numbers from 1 to 16, e.g. --bits 2,3,4");
    return b;
  });
}

/** `--group-size 128,row`. */
function parseGroupSizes(items: readonly string[]): GroupSize[] {
  return items.map((s) => {
    if (s === "row") return "row";
    const g = Number(s);
    if (!/^\d+$/.test(s) || g < 1) throw new CliError(`--group-size: '${s}' is not a group size`, 'pass positive whole numbers or "row", e.g. --group-size 128,row');
    return g;
  });
}

/** `--max-windows N|all`: a window count, or null for the whole text. */
function parseMaxWindows(s: string): number | null {
  if (s === "all") return null;
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < 1) throw new CliError(`--max-windows: '${s}' is not a window count`, "pass a positive whole number, or all for the whole text");
  return n;
}

/** The library's options from the flags (paths not given fall back to the bundled data). */
export function benchOptionsOf(a: BenchArgs, command: string): BenchOptions {
  const maybe = <K extends string, V>(key: K, v: V | undefined) => (v === undefined ? {} : ({ [key]: v } as Record<K, V>));
  return {
    model: a.model,
    out: a.out,
    ...(a.quantizers?.length ? { quantizers: a.quantizers } : {}),
    bits: parseBits(a.bits),
    groupSizes: parseGroupSizes(a.groupSize),
    tasks: a.tasks,
    ppl: { seqLen: a.pplSeqLen, ...maybe("text", a.pplData), ...maybe("stride", a.stride), maxWindows: parseMaxWindows(a.maxWindows) },
    classify: { maxSamples: a.classifySamples, ...maybe("train", a.classifyTrain), ...maybe("valid", a.classifyValid) },
    summarize: { maxSamples: a.summarizeSamples, ...maybe("train", a.summarizeTrain), ...maybe("valid", a.summarizeValid) },
    finetune: { steps: a.steps, lr: a.lr, batchSize: a.batchSize, seqLen: a.seqLen, seed: a.seed, rank: a.rank, alpha: a.alpha, dropout: a.dropout, warmup: a.warmup, maxNewTokens: a.maxNewTokens },
    calibration: { samples: a.calibSamples, seqLen: a.calibSeqLen, ...maybe("text", a.calib) },
    fullPrecision: a.fp,
    baseline: a.baseline,
    resume: a.resume,
    overwrite: a.overwrite,
    device: a.device,
    dtype: a.dtype,
    command,
  };
}

/** One line for a finished cell: its headline numbers, or why it was skipped / failed. */
export function cellLine(r: CellResult): string {
  const name = r.label ? `${r.label} ${r.bits}-bit ${r.groupSize === "row" ? "per row" : `g${r.groupSize}`}` : r.id;
  if (r.status !== "done") return `${name}: ${r.status} (${r.reason ?? "no reason given"})`;
  const parts: string[] = [];
  if (r.quantize) parts.push(`${r.quantize.bitsPerWeight.toFixed(3)} bits/weight`, `quantized in ${r.quantize.seconds.toFixed(1)} s`);
  if (r.tasks.ppl) parts.push(`ppl ${r.tasks.ppl.ppl.toFixed(3)}`);
  for (const task of ["classify", "summarize"] as const) {
    const t = r.tasks[task];
    if (!t) continue;
    const key = t.metric;
    const before = t.before[key], after = t.after?.[key];
    const pct = (v: number | undefined) => (v === undefined ? "–" : `${(100 * v).toFixed(1)}`);
    parts.push(`${task} ${key} ${pct(before)}${after !== undefined ? ` → ${pct(after)}` : ""}${t.finetune ? ` (${Math.round(t.finetune.tokensPerSecond)} tok/s)` : ""}`);
  }
  return `${name}: ${parts.join(", ")} — ${formatSeconds(r.seconds)}`;
}

export async function runBench(ctx: CommandContext): Promise<void> {
  const a = ctx.args.values as unknown as BenchArgs;
  const progress = new Progress(ctx.stderr);
  checkDevice(a.device);
  await setupQuantizers(a.plugin);
  const command = `modulora bench ${process.argv.slice(3).join(" ")}`.trim();
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    progress.log("stopping after the current phase (the finished cells are kept; Ctrl-C again to quit now)");
    controller.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let bar: ProgressBar | null = null;
  let barPhase = "";
  const onEvent = (e: BenchEvent) => {
    if (e.type === "start") {
      const skipped = e.cells.filter((c) => c.skip).length;
      progress.log(`bench: ${e.total} rows (${skipped} skipped as unsupported${e.resumed ? `, ${e.resumed} finished before and kept` : ""}) into ${a.out}`);
    } else if (e.type === "cell-start") {
      progress.log(`[${e.index + 1}/${e.total}] ${e.cell.id}`);
    } else if (e.type === "phase") {
      // Off a terminal, only the long phases get progress lines (the cell's line says the rest).
      if (!progress.tty && !/finetune|quantize/.test(e.phase)) return;
      if (e.phase !== barPhase) {
        bar?.stop();
        barPhase = e.phase;
        bar = progress.bar(e.phase, e.of);
      }
      bar?.update(e.done);
      if (e.done >= e.of) {
        bar?.stop();
        bar = null;
        barPhase = "";
      }
    } else if (e.type === "cell-end") {
      bar?.stop();
      bar = null;
      barPhase = "";
      progress.log(`[${e.index + 1}/${e.total}] ${e.resumed ? "(kept) " : ""}${cellLine(e.result)}`);
    } else if (e.type === "warning") {
      progress.log(`warning: ${e.message}`);
    } else if (e.type === "end") {
      progress.log(`wrote ${e.files.join(", ")}`);
    }
  };
  try {
    const results = await runBenchGrid({ ...benchOptionsOf(a, command), onEvent, signal: controller.signal });
    const failed = results.cells.filter((c) => c.status === "failed");
    if (a.json) ctx.stdout.write(`${JSON.stringify(results)}\n`);
    else ctx.stdout.write(`${results.cells.filter((c) => c.status === "done").length} rows done, ${results.cells.filter((c) => c.status === "skipped").length} skipped, ${failed.length} failed: ${a.out}/results.md\n`);
    if (failed.length) {
      progress.log(`error: ${failed.length} cell(s) failed (${failed.map((c) => c.id).join(", ")}); their errors are in results.md — fix the cause and run again with --resume to retry only them`);
      ctx.exitCode = 1;
    }
  } catch (err) {
    if (err instanceof BenchSettingsError) throw new CliError(err.message, "see modulora bench --help", { cause: err });
    if (err instanceof BenchAbortError) throw new CliError(err.message, undefined, { cause: err });
    throw new CliError(`bench: ${oneLine(err)}`, "run again with --verbose for the stack trace; finished cells are kept (--resume)", { cause: err });
  } finally {
    (bar as ProgressBar | null)?.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
