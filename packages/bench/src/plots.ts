// The bench's plots as vega-lite specs (pure functions of results.json) and writePlots, which
// draws each that has data as SVG and PNG. Style follows the CLI's loss chart: DejaVu Sans, white
// background, colours in order of first appearance.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "@modulora/core";
import { PLOT_FONT, paletteScale, renderSvg, svgToPng } from "./render.js";
import type { BenchCell, BenchResults, CellResult, GroupSize } from "./types.js";

/** The plots a bench writes, as `<name>.svg` and `<name>.png`. */
export type PlotName = "bits-vs-ppl" | "task-metrics" | "cell-time";

/** Every plot, in the order {@link writePlots} writes them and results.md shows them. */
export const PLOT_NAMES: readonly PlotName[] = ["bits-vs-ppl", "task-metrics", "cell-time"];

/** What each plot shows, for alt text and captions. */
export const PLOT_TITLES: Readonly<Record<PlotName, string>> = {
  "bits-vs-ppl": "True bits per weight against perplexity",
  "task-metrics": "Task metrics before and after fine-tuning",
  "cell-time": "Time per cell, by phase",
};

/** A vega-lite spec (plain JSON). */
export type VegaLiteSpec = Record<string, unknown>;

/** A row's name on axes and in tables: `full precision`, `baseline`, or `<label> <bits>b g<group>` / `<label> <bits>b row`. */
export function cellTitle(cell: BenchCell): string {
  if (cell.kind === "full-precision") return "full precision";
  if (cell.kind === "baseline") return "baseline";
  return `${cell.label ?? cell.quantizer ?? cell.id} ${String(cell.bits)}b ${groupTitle(cell.groupSize)}`;
}

function groupTitle(g: GroupSize | null): string {
  return g === "row" ? "row" : g === null ? "–" : `g${g}`;
}

function isDone(c: CellResult): boolean {
  return c.status === "done";
}

function quantizedDone(results: BenchResults): CellResult[] {
  return results.cells.filter((c) => isDone(c) && c.kind === "quantized");
}

function frame(title: string): VegaLiteSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: title, font: PLOT_FONT },
    background: "white",
    padding: 12,
    config: {
      font: PLOT_FONT,
      axis: { labelFont: PLOT_FONT, titleFont: PLOT_FONT },
      legend: { labelFont: PLOT_FONT, titleFont: PLOT_FONT, labelLimit: 320 },
      header: { labelFont: PLOT_FONT, titleFont: PLOT_FONT },
      title: { font: PLOT_FONT },
    },
  };
}

/** One point of {@link bitsVsPplSpec}: a done quantized cell with a perplexity. */
export interface BitsVsPplRow {
  readonly id: string;
  readonly label: string;
  readonly bits: number;
  /** `g128`, `row`, … */
  readonly group: string;
  readonly bitsPerWeight: number;
  readonly ppl: number;
}

/** The points of {@link bitsVsPplSpec}, in grid order (skipped and failed cells are not in it). */
export function bitsVsPplRows(results: BenchResults): BitsVsPplRow[] {
  const rows: BitsVsPplRow[] = [];
  for (const c of quantizedDone(results)) {
    const ppl = c.tasks.ppl?.ppl;
    const bpw = c.quantize?.bitsPerWeight;
    if (ppl === undefined || bpw === undefined || !(ppl > 0) || !Number.isFinite(ppl) || !Number.isFinite(bpw)) continue;
    rows.push({ id: c.id, label: c.label ?? c.quantizer ?? c.id, bits: c.bits ?? 0, group: groupTitle(c.groupSize), bitsPerWeight: bpw, ppl });
  }
  return rows;
}

function fullPrecision(results: BenchResults): CellResult | undefined {
  return results.cells.find((c) => c.kind === "full-precision" && isDone(c));
}

/**
 * Bits per weight against perplexity: x the true bits per weight (codes and metadata), y the
 * perplexity on a log axis, one colour per quantizer label and one stroke dash / point shape per
 * group size (a line joins a label's cells of one group size), the full-precision perplexity as
 * a labelled horizontal rule. Null when no quantized cell has a perplexity.
 */
export function bitsVsPplSpec(results: BenchResults): VegaLiteSpec | null {
  const rows = bitsVsPplRows(results);
  if (rows.length === 0) return null;
  const groups = [...new Set(rows.map((r) => r.group))];
  const dashes = [[1, 0], [6, 3], [2, 2], [8, 3, 2, 3]];
  const shapes = ["circle", "square", "triangle-up", "diamond"];
  const layer: VegaLiteSpec[] = [
    {
      data: { values: rows },
      mark: { type: "line", strokeWidth: 2, point: { filled: true, size: 70 } },
      encoding: {
        x: { field: "bitsPerWeight", type: "quantitative", title: "true bits per weight (codes + metadata)", scale: { zero: false, nice: true } },
        y: { field: "ppl", type: "quantitative", title: "perplexity (log scale)", scale: { type: "log" } },
        color: { field: "label", type: "nominal", title: "quantizer", scale: paletteScale(rows.map((r) => r.label)) },
        strokeDash: { field: "group", type: "nominal", title: "group size", scale: { domain: groups, range: groups.map((_, i) => dashes[i % dashes.length]) } },
        shape: { field: "group", type: "nominal", title: "group size", scale: { domain: groups, range: groups.map((_, i) => shapes[i % shapes.length]) } },
        order: { field: "bitsPerWeight", type: "quantitative" },
      },
    },
  ];
  const fp = fullPrecision(results)?.tasks.ppl?.ppl;
  if (fp !== undefined && fp > 0 && Number.isFinite(fp)) {
    const ref = { data: { values: [{ ppl: fp, text: `full precision: ${fp.toFixed(2)}` }] } };
    layer.push({ ...ref, mark: { type: "rule", color: "#333333", strokeDash: [4, 3], strokeWidth: 1.5 }, encoding: { y: { field: "ppl", type: "quantitative" } } });
    layer.push({
      ...ref,
      mark: { type: "text", align: "left", baseline: "bottom", dx: 4, dy: -3, font: PLOT_FONT, color: "#333333" },
      encoding: { x: { value: 0 }, y: { field: "ppl", type: "quantitative" }, text: { field: "text" } },
    });
  }
  return { ...frame(`Bits per weight vs perplexity: ${results.model.name}`), width: 560, height: 340, layer };
}

/** The fine-tuning tasks, with how their metric reads on the plot. */
const FINETUNE_TASKS = [
  { task: "classify", title: "classify: accuracy (%)", baseline: "baseline (majority label)" },
  { task: "summarize", title: "summarize: ROUGE-L F1 (×100)", baseline: "baseline (lead summary)" },
] as const;

/** The phases of {@link taskMetricsSpec}'s bars, in legend order. */
const BEFORE = "before fine-tuning";
const AFTER = "after fine-tuning";

/**
 * A bar or a reference rule of {@link taskMetricsSpec}: the task's metric ×100 (accuracy in %,
 * ROUGE-L F1 ×100). Bars (`kind: "cell"`) are the done quantized cells before and after
 * fine-tuning; references are the fp row before and after, and the baseline row.
 */
export interface TaskMetricRow {
  readonly kind: "cell" | "reference";
  /** The facet: `classify: accuracy (%)` or `summarize: ROUGE-L F1 (×100)`. */
  readonly task: string;
  /** The bar's cell ({@link cellTitle}), or the reference's name. */
  readonly name: string;
  /** `before fine-tuning` / `after fine-tuning` for a bar; the reference's name for a rule. */
  readonly phase: string;
  readonly value: number;
}

/** The bars and rules of {@link taskMetricsSpec}, task by task, cells in grid order, before then after. */
export function taskMetricsRows(results: BenchResults): TaskMetricRow[] {
  const rows: TaskMetricRow[] = [];
  for (const t of FINETUNE_TASKS) {
    if (!results.settings.tasks.includes(t.task)) continue;
    const bars: TaskMetricRow[] = [];
    for (const c of quantizedDone(results)) {
      const r = c.tasks[t.task];
      if (!r) continue;
      for (const [phase, m] of [[BEFORE, r.before], [AFTER, r.after]] as const) {
        const v = m?.[r.metric];
        if (v !== undefined && Number.isFinite(v)) bars.push({ kind: "cell", task: t.title, name: cellTitle(c), phase, value: v * 100 });
      }
    }
    if (bars.length === 0) continue;
    rows.push(...bars);
    const fp = fullPrecision(results)?.tasks[t.task];
    const baseline = results.cells.find((c) => c.kind === "baseline" && isDone(c))?.tasks[t.task];
    const refs: [string, number | undefined][] = [
      ["full precision, before", fp?.before[fp.metric]],
      ["full precision, after", fp?.after?.[fp.metric]],
      [t.baseline, baseline?.before[baseline.metric]],
    ];
    for (const [name, v] of refs) if (v !== undefined && Number.isFinite(v)) rows.push({ kind: "reference", task: t.title, name, phase: name, value: v * 100 });
  }
  return rows;
}

/**
 * Task metrics before and after fine-tuning: one facet per fine-tuning task (classify accuracy
 * in %, summarize ROUGE-L F1 ×100), grouped bars per quantized cell (before, after), the fp row
 * (before, after) and the baseline as dashed reference rules. Null when no quantized cell has a
 * fine-tuning task.
 */
export function taskMetricsSpec(results: BenchResults): VegaLiteSpec | null {
  const rows = taskMetricsRows(results);
  const bars = rows.filter((r) => r.kind === "cell");
  if (bars.length === 0) return null;
  const refs = [...new Set(rows.filter((r) => r.kind === "reference").map((r) => r.name))];
  const dashes: Record<string, number[]> = { "full precision, before": [2, 2], "full precision, after": [6, 3] };
  const layer: VegaLiteSpec[] = [
    {
      transform: [{ filter: "datum.kind === 'cell'" }],
      mark: { type: "bar" },
      encoding: {
        x: { field: "name", type: "nominal", title: "quantizer, bits, group size", sort: [...new Set(bars.map((r) => r.name))], axis: { labelAngle: -35 } },
        xOffset: { field: "phase", type: "nominal", sort: [BEFORE, AFTER] },
        y: { field: "value", type: "quantitative", title: "metric (×100)" },
        color: { field: "phase", type: "nominal", title: "bars", scale: paletteScale([BEFORE, AFTER]) },
      },
    },
  ];
  if (refs.length) {
    layer.push({
      transform: [{ filter: "datum.kind === 'reference'" }],
      mark: { type: "rule", color: "#333333", strokeWidth: 1.5 },
      encoding: {
        y: { field: "value", type: "quantitative" },
        strokeDash: { field: "name", type: "nominal", title: "reference", scale: { domain: refs, range: refs.map((r) => dashes[r] ?? [1, 0]) } },
      },
    });
  }
  return {
    ...frame(`Task metrics before and after LoRA fine-tuning: ${results.model.name}`),
    data: { values: rows },
    facet: { row: { field: "task", type: "nominal", title: null, sort: FINETUNE_TASKS.map((t) => t.title), header: { labelAngle: 0, labelAlign: "left", labelAnchor: "start", labelOrient: "top", labelFontSize: 13 } } },
    spec: { width: 560, height: 220, layer },
    // One x scale for all facets: with independent x scales vega-lite shrinks the grouped bars
    // (xOffset) to hairlines. Each metric keeps its own y range.
    resolve: { scale: { y: "independent" } },
  };
}

/** A stacked segment of {@link cellTimeSpec}: seconds of one phase of one done cell. */
export interface CellTimeRow {
  /** {@link cellTitle}. */
  readonly cell: string;
  readonly phase: string;
  readonly seconds: number;
  /** The phase's place in the stack (0 first). */
  readonly order: number;
}

/** The phases of a cell's time, in stack order; `other` is what the cell's wall time has beyond them (model loading). */
const TIME_PHASES = ["calibration", "quantize", "ppl", "classify fine-tune", "classify eval", "summarize fine-tune", "summarize eval", "other (load, …)"] as const;

/** The segments of {@link cellTimeSpec}: every done cell in grid order, phases with time only. */
export function cellTimeRows(results: BenchResults): CellTimeRow[] {
  const rows: CellTimeRow[] = [];
  for (const c of results.cells.filter(isDone)) {
    const q = c.quantize;
    const parts: [string, number][] = [
      ["calibration", q?.calibrationSeconds ?? 0],
      ["quantize", q ? q.seconds - q.calibrationSeconds : 0],
      ["ppl", c.tasks.ppl?.seconds ?? 0],
    ];
    for (const t of ["classify", "summarize"] as const) {
      const r = c.tasks[t];
      parts.push([`${t} fine-tune`, r?.finetune?.seconds ?? 0], [`${t} eval`, r?.evalSeconds ?? 0]);
    }
    const known = parts.reduce((s, [, v]) => s + v, 0);
    parts.push(["other (load, …)", c.seconds - known]);
    for (const [phase, seconds] of parts) {
      if (seconds > 0 && Number.isFinite(seconds)) rows.push({ cell: cellTitle(c), phase, seconds, order: TIME_PHASES.indexOf(phase as (typeof TIME_PHASES)[number]) });
    }
  }
  return rows;
}

/** Time per cell: one horizontal bar per done cell (its label on the axis), stacked by phase. Null when no cell is done. */
export function cellTimeSpec(results: BenchResults): VegaLiteSpec | null {
  const rows = cellTimeRows(results);
  if (rows.length === 0) return null;
  const cells = [...new Set(rows.map((r) => r.cell))];
  const phases = TIME_PHASES.filter((p) => rows.some((r) => r.phase === p));
  return {
    ...frame(`Time per cell: ${results.model.name}`),
    width: 560,
    height: { step: 20 },
    data: { values: rows },
    mark: { type: "bar" },
    encoding: {
      y: { field: "cell", type: "nominal", title: null, sort: cells },
      x: { field: "seconds", type: "quantitative", title: "seconds", stack: "zero" },
      color: { field: "phase", type: "nominal", title: "phase", scale: paletteScale(phases) },
      order: { field: "order", type: "quantitative" },
    },
  };
}

const SPECS: Readonly<Record<PlotName, (r: BenchResults) => VegaLiteSpec | null>> = {
  "bits-vs-ppl": bitsVsPplSpec,
  "task-metrics": taskMetricsSpec,
  "cell-time": cellTimeSpec,
};

/** The plots that have data, with their specs, in {@link PLOT_NAMES} order. */
export function plotSpecs(results: BenchResults): { name: PlotName; spec: VegaLiteSpec }[] {
  const out: { name: PlotName; spec: VegaLiteSpec }[] = [];
  for (const name of PLOT_NAMES) {
    const spec = SPECS[name](results);
    if (spec) out.push({ name, spec });
  }
  return out;
}

/** The `width="…"` of an SVG document's root element, in pixels. */
function svgWidth(svg: string): number {
  const m = /^<svg[^>]*?\swidth="([\d.]+)"/.exec(svg);
  if (!m) throw new Error("writePlots: the rendered SVG has no width attribute on its root element");
  return Number(m[1]);
}

/**
 * Draws every plot that has data ({@link plotSpecs}) and writes `<dir>/<name>.svg` and
 * `<dir>/<name>.png` (twice the SVG's width), each through a temporary file and a rename (a link
 * at the path is replaced, not followed). Every plot is rendered before any is written. A plot
 * without data (no `ppl` task, no fine-tuning task) is neither written nor returned.
 * @returns The paths written, SVG then PNG of each plot.
 */
export async function writePlots(dir: string, results: BenchResults): Promise<string[]> {
  const drawn: [string, string | Uint8Array][] = [];
  for (const { name, spec } of plotSpecs(results)) {
    const svg = await renderSvg(spec);
    const png = await svgToPng(svg, Math.round(2 * svgWidth(svg)));
    drawn.push([join(dir, `${name}.svg`), svg], [join(dir, `${name}.png`), png]);
  }
  if (drawn.length) mkdirSync(dir, { recursive: true });
  for (const [path, data] of drawn) writeFileAtomic(path, data);
  return drawn.map(([path]) => path);
}
