// The loss curve of a run: a vega-lite spec, drawn by @modulora/bench's renderSvg / svgToPng (text in DejaVu Sans).
import { PLOT_FONT, paletteScale, renderSvg, svgToPng } from "@modulora/bench";
import { writeFileAtomic } from "@modulora/core";

/** One line of metrics.jsonl: a training step, or an evaluation. */
export interface MetricsLine {
  step: number;
  loss?: number | null;
  eval?: Record<string, number>;
}

/** Parses metrics.jsonl text (lines that do not parse are skipped). */
export function parseMetrics(text: string): MetricsLine[] {
  const out: MetricsLine[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as MetricsLine);
    } catch {
      // a line cut by a crash: skip it
    }
  }
  return out;
}

const FONT = PLOT_FONT;

/** Colours in order of first appearance (train loss first), not alphabetical. */
function colorScale(rows: readonly { series: string }[]): { domain: string[]; range: string[] } {
  return paletteScale(rows.map((r) => r.series));
}

/**
 * The vega-lite spec: train loss per step with eval loss on top; eval accuracy (or another
 * eval metric in [0, 1]) in a second panel below when present.
 */
export function lossChartSpec(metrics: readonly MetricsLine[], title: string): Record<string, unknown> {
  const rows: { step: number; value: number; series: string }[] = [];
  const other: { step: number; value: number; series: string }[] = [];
  for (const m of metrics) {
    if (typeof m.loss === "number" && Number.isFinite(m.loss) && m.loss > 0) rows.push({ step: m.step, value: m.loss, series: "train loss" });
    if (m.eval) {
      for (const [k, v] of Object.entries(m.eval)) {
        if (!Number.isFinite(v)) continue;
        if (k === "loss" && v > 0) rows.push({ step: m.step, value: v, series: "eval loss" });
        else if (["accuracy", "rouge1", "rouge2", "rougeL"].includes(k)) other.push({ step: m.step, value: v, series: `eval ${k}` });
      }
    }
  }
  const steps = metrics.map((m) => m.step);
  const xDomain = steps.length ? [Math.min(1, ...steps), Math.max(...steps)] : [0, 1];
  const layer = (data: typeof rows, y: string, domain?: number[]) => ({
    width: 560,
    height: 220,
    data: { values: data },
    encoding: {
      x: { field: "step", type: "quantitative", title: "step", scale: { domain: xDomain, nice: false }, axis: { tickMinStep: 1, format: "d" } },
      // Losses fall by orders of magnitude: a log axis keeps the late part of the curve readable.
      y: { field: "value", type: "quantitative", title: y, scale: domain ? { domain } : { type: "log" } },
      color: { field: "series", type: "nominal", title: null, scale: colorScale(data) },
    },
    layer: [
      { mark: { type: "line", strokeWidth: 1.5 }, transform: [{ filter: "datum.series === 'train loss'" }] },
      { mark: { type: "line", point: true, strokeWidth: 2 }, transform: [{ filter: "datum.series !== 'train loss'" }] },
    ],
  });
  const panels = [layer(rows, "loss (log scale)")];
  if (other.length) panels.push(layer(other, "eval metric", [0, 1]));
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: title, font: FONT },
    background: "white",
    padding: 12,
    config: { font: FONT, axis: { labelFont: FONT, titleFont: FONT }, legend: { labelFont: FONT, titleFont: FONT }, title: { font: FONT } },
    vconcat: panels,
    resolve: { scale: { color: "independent" } },
  };
}

/** Writes `<dir>/loss.svg` and `<dir>/loss.png` from metrics, each renamed into place (a link there is replaced, not followed). Returns the paths. */
export async function writeLossPlots(dir: string, metrics: readonly MetricsLine[], title: string): Promise<{ svg: string; png: string }> {
  const svg = await renderSvg(lossChartSpec(metrics, title));
  const png = await svgToPng(svg);
  const paths = { svg: `${dir}/loss.svg`, png: `${dir}/loss.png` };
  writeFileAtomic(paths.svg, svg);
  writeFileAtomic(paths.png, png);
  return paths;
}
