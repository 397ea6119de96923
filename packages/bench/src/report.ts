// results.md: the settings, one table of every done row in grid order, the summarization
// ROUGE table, the skipped and failed rows, links to the plots, and the run's conditions.
// Every number goes through one formatter per kind, and an absent value prints "–".
import { mkdirSync } from "node:fs";
import { isAbsolute, join, relative } from "node:path";
import { writeFileAtomic } from "@modulora/core";
import { PLOT_TITLES, cellTitle, plotSpecs } from "./plots.js";
import { quantizerLabel } from "./settings.js";
import type { BenchQuantizer, BenchResults, CellResult, TaskFiles, TaskResult } from "./types.js";

/** What results.md prints for a value a row does not have. */
export const MISSING = "–";

const MiB = 2 ** 20;

/** `v` with `digits` decimals, or {@link MISSING} when absent or not finite. */
function num(v: number | undefined, digits: number): string {
  return v === undefined || !Number.isFinite(v) ? MISSING : v.toFixed(digits);
}

/** A metric in [0, 1] as ×100 with one decimal (accuracy in %, ROUGE F1 ×100). */
function x100(v: number | undefined): string {
  return num(v === undefined ? undefined : v * 100, 1);
}

function integer(v: number): string {
  return new Intl.NumberFormat("en-US").format(v);
}

/** Text safe inside a Markdown table cell or list item: one line, no column separator. */
function inline(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").replace(/\|/g, "\\|");
}

function code(text: string): string {
  return `\`${text.replace(/`/g, "'")}\``;
}

/** A file path as code: relative to the working directory when it lies inside it (results are rendered where the run ran), else as recorded. */
function pathCode(path: string): string {
  const rel = isAbsolute(path) ? relative(process.cwd(), path) : path;
  return code(rel && !rel.startsWith("..") && !isAbsolute(rel) ? rel : path);
}

/** A quantizer's name in tables: its label (resolved settings always have one), else the default label. */
function labelOf(q: BenchQuantizer): string {
  return q.label ?? quantizerLabel(q.name, q.options ?? {});
}

/** `before → after` of a task's metric; the baseline row (no fine-tuning) shows its one value. */
function beforeAfter(cell: CellResult, r: TaskResult | undefined, key: string): string {
  if (!r) return MISSING;
  if (cell.kind === "baseline" && !r.after) return x100(r.before[key]);
  return `${x100(r.before[key])} → ${x100(r.after?.[key])}`;
}

/** Tokens per second over every fine-tuning of the cell (summed tokens ÷ summed seconds). */
function finetuneTokensPerSecond(cell: CellResult): number | undefined {
  const runs = [cell.tasks.classify?.finetune, cell.tasks.summarize?.finetune].filter((f) => f !== undefined);
  const seconds = runs.reduce((s, f) => s + f.seconds, 0);
  return runs.length && seconds > 0 ? runs.reduce((s, f) => s + f.tokens, 0) / seconds : undefined;
}

/** Bits per weight of the fp row: its dtype's width. */
const DTYPE_BITS: Readonly<Record<string, number>> = { f32: 32, bf16: 16 };

function table(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const line = (cells: readonly string[]) => `| ${cells.map(inline).join(" | ")} |`;
  return [line(head), `|${head.map(() => "---").join("|")}|`, ...rows.map(line)];
}

function rowName(cell: CellResult): string {
  if (cell.kind === "full-precision") return "**full precision**";
  if (cell.kind === "baseline") return "*baseline*";
  return cell.label ?? cell.quantizer ?? cell.id;
}

function mainTable(results: BenchResults, done: readonly CellResult[]): string[] {
  const tasks = results.settings.tasks;
  const fpPpl = done.find((c) => c.kind === "full-precision")?.tasks.ppl?.ppl;
  const finetunes = tasks.includes("classify") || tasks.includes("summarize");
  const head = ["quantizer", "bits", "group", "bits/weight"];
  if (tasks.includes("ppl")) head.push("ppl", "ppl ÷ fp");
  if (tasks.includes("classify")) head.push("accuracy % (before → after)");
  if (tasks.includes("summarize")) head.push("ROUGE-L ×100 (before → after)");
  if (finetunes) head.push("fine-tune tok/s");
  head.push("quantize s", "cell s", "peak MiB");
  const rows = done.map((c) => {
    const bpw = c.kind === "full-precision" ? DTYPE_BITS[results.settings.dtype] : c.quantize?.bitsPerWeight;
    const row = [rowName(c), c.bits === null ? MISSING : String(c.bits), c.groupSize === null ? MISSING : String(c.groupSize), num(bpw, 3)];
    if (tasks.includes("ppl")) {
      const ppl = c.tasks.ppl?.ppl;
      row.push(num(ppl, 2), num(ppl !== undefined && fpPpl !== undefined && fpPpl > 0 ? ppl / fpPpl : undefined, 3));
    }
    if (tasks.includes("classify")) row.push(beforeAfter(c, c.tasks.classify, "accuracy"));
    if (tasks.includes("summarize")) row.push(beforeAfter(c, c.tasks.summarize, "rougeL"));
    if (finetunes) row.push(num(finetuneTokensPerSecond(c), 1));
    row.push(num(c.quantize?.seconds, 2), num(c.seconds, 2), num(c.peakBytes === undefined ? undefined : c.peakBytes / MiB, 1));
    return row;
  });
  return table(head, rows);
}

function firstN(done: readonly CellResult[], task: "classify" | "summarize"): number | undefined {
  return done.find((c) => c.kind !== "baseline" && c.tasks[task])?.tasks[task]?.n ?? done.find((c) => c.tasks[task])?.tasks[task]?.n;
}

function tableNotes(results: BenchResults, done: readonly CellResult[]): string[] {
  const tasks = results.settings.tasks;
  const notes = [
    "bits/weight: true bits per weight of the quantized layers, codes and every piece of metadata (full precision: its dtype's width).",
  ];
  if (tasks.includes("ppl")) notes.push("ppl ÷ fp: the cell's perplexity over the full-precision row's (1.000 is no loss).");
  const n = (t: "classify" | "summarize") => num(firstN(done, t), 0);
  if (tasks.includes("classify")) notes.push(`accuracy: on ${n("classify")} validation examples, before and after LoRA fine-tuning; the baseline always answers the majority label.`);
  if (tasks.includes("summarize")) notes.push(`ROUGE-L: F1 ×100 on ${n("summarize")} validation examples; the baseline's summary is the lead of the text.`);
  if (tasks.includes("classify") || tasks.includes("summarize")) notes.push("fine-tune tok/s: tokens trained on (padding excluded) per second of optimizer steps, over all of the cell's fine-tuning tasks.");
  notes.push("quantize s includes calibration; cell s is the cell's wall time, model loading included; peak MiB is the tensor allocator's peak over the cell, weights included.");
  return notes.map((t) => `- ${t}`);
}

function rougeTable(done: readonly CellResult[]): string[] {
  const rows = done.filter((c) => c.tasks.summarize).map((c) => [rowName(c), c.bits === null ? MISSING : String(c.bits), c.groupSize === null ? MISSING : String(c.groupSize), ...["rouge1", "rouge2", "rougeL"].map((k) => beforeAfter(c, c.tasks.summarize, k))]);
  return rows.length ? table(["quantizer", "bits", "group", "ROUGE-1", "ROUGE-2", "ROUGE-L"], rows) : [];
}

function taskFiles(f: TaskFiles): string {
  return `train ${pathCode(f.train)}, validation ${pathCode(f.valid)} (${f.maxSamples === undefined ? "every example" : `a seeded subset of ${f.maxSamples} examples`})`;
}

function settingsList(results: BenchResults): string[] {
  const s = results.settings;
  const m = results.model;
  const ft = s.finetune;
  const ppl = results.cells.find((c) => c.status === "done" && c.tasks.ppl)?.tasks.ppl;
  const counts = (status: CellResult["status"]) => results.cells.filter((c) => c.status === status).length;
  const out = [
    `- **Model**: ${code(m.name)} (${pathCode(m.path)}): ${integer(m.parameters)} parameters, ${m.layers} layers, hidden size ${m.hidden}, vocabulary ${integer(m.vocab)}.`,
    `- **Grid**: quantizers ${s.quantizers.map((q) => code(labelOf(q))).join(", ") || MISSING}; bits ${s.bits.join(", ") || MISSING}; group sizes ${s.groupSizes.join(", ") || MISSING}; device ${code(s.device)}, dtype ${code(s.dtype)}. ${results.cells.length} rows: ${counts("done")} done, ${counts("skipped")} skipped, ${counts("failed")} failed.`,
    `- **Tasks**: ${s.tasks.join(", ") || MISSING}.`,
  ];
  if (s.tasks.includes("ppl")) {
    const measured = ppl ? ` (measured: ${ppl.windows} windows, ${integer(ppl.tokens)} tokens)` : "";
    out.push(`- **Perplexity**: ${pathCode(s.ppl.text)}, windows of ${s.ppl.seqLen} tokens, a new one every ${s.ppl.stride} tokens, ${s.ppl.maxWindows === undefined ? "every window of the text" : `at most ${s.ppl.maxWindows} windows`}${measured}.`);
  }
  if (s.tasks.includes("classify")) out.push(`- **Classification**: ${taskFiles(s.classify)}.`);
  if (s.tasks.includes("summarize")) out.push(`- **Summarization**: ${taskFiles(s.summarize)}; greedy summaries of up to ${ft.maxNewTokens} new tokens.`);
  if (s.tasks.includes("classify") || s.tasks.includes("summarize")) {
    out.push(`- **Fine-tuning** (every cell and task): ${ft.steps} steps, learning rate ${ft.lr} (cosine after ${ft.warmup} warm-up steps), batch size ${ft.batchSize}, sequences of up to ${ft.seqLen} tokens, seed ${ft.seed}; LoRA rank ${ft.rank}, alpha ${ft.alpha}, dropout ${ft.dropout}, on every linear of every block.`);
  }
  out.push(`- **Calibration** (quantizers that need it): ${s.calibration.samples} sequences of ${s.calibration.seqLen} tokens from ${pathCode(s.calibration.text)}.`);
  out.push(`- **Reference rows**: full precision ${s.fullPrecision ? "included" : "not run"}; baseline ${s.baseline ? "included" : "not run"}.`);
  return out;
}

function cellList(cells: readonly CellResult[]): string[] {
  return cells.map((c) => `- ${code(c.id)} (${cellTitle(c)}): ${inline(c.reason ?? MISSING)}`);
}

function seconds(from: string, to: string): number | undefined {
  const d = (Date.parse(to) - Date.parse(from)) / 1000;
  return Number.isFinite(d) ? d : undefined;
}

function conditions(results: BenchResults): string[] {
  const e = results.environment;
  const packages = Object.entries(e.packages).map(([name, v]) => `${code(name)} ${v}`);
  return [
    `- **Machine**: ${e.platform}, ${e.cpu}, ${e.cpus} CPUs, ${num(e.memoryGiB, 1)} GiB memory.`,
    `- **Threads**: ${e.threads}.`,
    `- **Node**: ${e.node}.`,
    `- **Device**: ${code(results.settings.device)} (${e.device}), dtype ${code(results.settings.dtype)}.`,
    `- **Load average** (1, 5, 15 min): ${e.loadAverage.length ? e.loadAverage.map((v) => num(v, 2)).join(", ") : MISSING}.`,
    `- **Started** ${results.startedAt}, **finished** ${results.finishedAt} (${num(seconds(results.startedAt, results.finishedAt), 1)} s).`,
    `- **Packages**: ${packages.join(", ") || MISSING}.`,
    ...(results.command === undefined ? [`- **Command**: ${MISSING}`] : ["- **Command**:", "", "```sh", results.command, "```"]),
  ];
}

function plotLinks(results: BenchResults): string[] {
  const out: string[] = [];
  for (const { name } of plotSpecs(results)) {
    out.push(`![${PLOT_TITLES[name]}](${name}.svg)`, "", `[${name}.svg](${name}.svg) · [${name}.png](${name}.png)`, "");
  }
  return out.length ? out.slice(0, -1) : ["No plot: no cell has data to draw."];
}

/**
 * results.md of a run, as Markdown: the model and settings; one table of every done row in grid
 * order (full precision and baseline first and marked, then the quantized cells) with bits, group
 * size, true bits per weight, perplexity and its ratio to full precision, each fine-tuning task's
 * metric before → after, fine-tuning tokens/s, quantize, cell time and peak memory; the
 * summarization ROUGE-1/2/L table; the skipped and failed rows with their reasons; links to the
 * plots {@link writePlots} writes; and the conditions of the run (machine, threads, Node,
 * packages, device, load, times, the command). An absent value prints {@link MISSING}.
 * @param results A run's results.json.
 */
export function renderReport(results: BenchResults): string {
  if ((results as { schema?: unknown }).schema !== "modulora-bench/1" || !Array.isArray(results.cells)) {
    throw new Error(`renderReport: expected a modulora-bench/1 results.json (got schema ${JSON.stringify((results as { schema?: unknown }).schema)}); rerun the bench with this version of @modulora/bench`);
  }
  const done = results.cells.filter((c) => c.status === "done");
  const skipped = results.cells.filter((c) => c.status === "skipped");
  const failed = results.cells.filter((c) => c.status === "failed");
  const lines = [`# Cross-quantizer benchmark: ${inline(results.model.name)}`, "", ...settingsList(results), "", "## Results", ""];
  lines.push(...(done.length ? [...mainTable(results, done), "", ...tableNotes(results, done)] : ["No row finished."]));
  const rouge = results.settings.tasks.includes("summarize") ? rougeTable(done) : [];
  if (rouge.length) lines.push("", "## Summarization: ROUGE F1 ×100 (before → after)", "", ...rouge);
  if (skipped.length) lines.push("", "## Skipped", "", ...cellList(skipped));
  if (failed.length) lines.push("", "## Failed", "", ...cellList(failed));
  lines.push("", "## Plots", "", ...plotLinks(results), "", "## Conditions", "", ...conditions(results), "");
  return lines.join("\n");
}

/**
 * Writes `<dir>/results.md` ({@link renderReport}) through a temporary file and a rename (a link
 * at the path is replaced, not followed), creating `dir` if needed.
 * @returns The paths written.
 */
export function writeReport(dir: string, results: BenchResults): string[] {
  const text = renderReport(results);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "results.md");
  writeFileAtomic(path, text);
  return [path];
}
