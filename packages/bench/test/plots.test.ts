import { lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bitsVsPplRows, bitsVsPplSpec, cellTimeRows, cellTimeSpec, cellTitle, plotSpecs, taskMetricsRows, taskMetricsSpec, writePlots } from "../src/plots.js";
import { paletteScale, svgToPng } from "../src/render.js";
import type { BenchResults, CellResult } from "../src/types.js";
import { SAMPLE_RESULTS } from "./sample-results.js";

const doneQuantized = SAMPLE_RESULTS.cells.filter((c) => c.status === "done" && c.kind === "quantized");
const fp = SAMPLE_RESULTS.cells.find((c) => c.kind === "full-precision")!;
const baseline = SAMPLE_RESULTS.cells.find((c) => c.kind === "baseline")!;

function only(tasks: BenchResults["settings"]["tasks"]): BenchResults {
  return {
    ...SAMPLE_RESULTS,
    settings: { ...SAMPLE_RESULTS.settings, tasks },
    cells: SAMPLE_RESULTS.cells.map((c): CellResult => ({ ...c, tasks: Object.fromEntries(Object.entries(c.tasks).filter(([t]) => (tasks as string[]).includes(t))) })),
  };
}

describe("plot specs", () => {
  it("names cells by label, bits and group size", () => {
    expect(SAMPLE_RESULTS.cells.map(cellTitle).slice(0, 4)).toEqual(["full precision", "baseline", "rtn 2b g128", "rtn 2b row"]);
  });

  it("bits-vs-ppl: one point per done quantized cell (bitsPerWeight, ppl, label); skipped, failed, fp and baseline left out", () => {
    const rows = bitsVsPplRows(SAMPLE_RESULTS);
    expect(rows.map((r) => [r.bitsPerWeight, r.ppl, r.label])).toEqual(doneQuantized.map((c) => [c.quantize!.bitsPerWeight, c.tasks.ppl!.ppl, c.label]));
    expect(rows.map((r) => r.id)).toEqual(["rtn-b2-g128", "rtn-b2-grow", "rtn-b4-g128", "rtn-b4-grow", "optq-b2-g128", "optq-b4-g128", "optq-b4-grow", "nf4-b4-g128"]);
    expect(rows.map((r) => r.group)).toEqual(["g128", "row", "g128", "row", "g128", "g128", "row", "g128"]);
    const spec = bitsVsPplSpec(SAMPLE_RESULTS) as { layer: { data: { values: unknown[] }; encoding: Record<string, { scale?: unknown; title?: string }> }[] };
    expect(spec.layer[0]!.data.values).toEqual(rows);
    expect(spec.layer[0]!.encoding.y!.scale).toEqual({ type: "log" });
    expect(spec.layer[0]!.encoding.color!.scale).toEqual({ domain: ["rtn", "optq", "nf4"], range: ["#4c78a8", "#e45756", "#54a24b"] });
    // The fp rule and its label.
    expect(spec.layer[1]!.data.values).toEqual([{ ppl: fp.tasks.ppl!.ppl, text: "full precision: 18.42" }]);
    expect(spec.layer[2]!.data.values).toEqual(spec.layer[1]!.data.values);
  });

  it("task-metrics: before and after ×100 of each quantized cell, the fp row and the baseline as references", () => {
    const rows = taskMetricsRows(SAMPLE_RESULTS);
    const expected = [];
    for (const [task, title, metric, base] of [["classify", "classify: accuracy (%)", "accuracy", "baseline (majority label)"], ["summarize", "summarize: ROUGE-L F1 (×100)", "rougeL", "baseline (lead summary)"]] as const) {
      for (const c of doneQuantized) {
        expected.push({ kind: "cell", task: title, name: cellTitle(c), phase: "before fine-tuning", value: c.tasks[task]!.before[metric]! * 100 });
        expected.push({ kind: "cell", task: title, name: cellTitle(c), phase: "after fine-tuning", value: c.tasks[task]!.after![metric]! * 100 });
      }
      expected.push({ kind: "reference", task: title, name: "full precision, before", phase: "full precision, before", value: fp.tasks[task]!.before[metric]! * 100 });
      expected.push({ kind: "reference", task: title, name: "full precision, after", phase: "full precision, after", value: fp.tasks[task]!.after![metric]! * 100 });
      expected.push({ kind: "reference", task: title, name: base, phase: base, value: baseline.tasks[task]!.before[metric]! * 100 });
    }
    expect(rows).toEqual(expected);
    expect(rows.find((r) => r.name === "rtn 2b g128" && r.phase === "after fine-tuning")!.value).toBe(62.5);
    const spec = taskMetricsSpec(SAMPLE_RESULTS) as { data: { values: unknown[] }; facet: { row: { field: string } } };
    expect(spec.data.values).toEqual(rows);
    expect(spec.facet.row.field).toBe("task");
  });

  it("cell-time: each done cell's phases add up to its wall time", () => {
    const rows = cellTimeRows(SAMPLE_RESULTS);
    const done = SAMPLE_RESULTS.cells.filter((c) => c.status === "done");
    expect([...new Set(rows.map((r) => r.cell))]).toEqual(done.map(cellTitle));
    for (const c of done) {
      const sum = rows.filter((r) => r.cell === cellTitle(c)).reduce((s, r) => s + r.seconds, 0);
      expect(sum, c.id).toBeCloseTo(c.seconds, 9);
    }
    const optq = rows.filter((r) => r.cell === "optq 2b g128");
    expect(optq.map((r) => r.phase)).toEqual(["calibration", "quantize", "ppl", "classify fine-tune", "classify eval", "summarize fine-tune", "summarize eval", "other (load, …)"]);
    expect(optq.slice(0, 3).map((r) => r.seconds)).toEqual([1.125, 3.25 - 1.125, 1.3]);
    expect(optq.map((r) => r.order)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // The fp row has no quantize phase and no calibration.
    expect(rows.filter((r) => r.cell === "full precision").map((r) => r.phase)).toEqual(["ppl", "classify fine-tune", "classify eval", "summarize fine-tune", "summarize eval", "other (load, …)"]);
    const spec = cellTimeSpec(SAMPLE_RESULTS) as { data: { values: unknown[] }; encoding: { y: { sort: string[] } } };
    expect(spec.data.values).toEqual(rows);
    expect(spec.encoding.y.sort).toEqual(done.map(cellTitle));
  });

  it("leaves out the plots whose data is absent", () => {
    expect(plotSpecs(SAMPLE_RESULTS).map((p) => p.name)).toEqual(["bits-vs-ppl", "task-metrics", "cell-time"]);
    expect(bitsVsPplSpec(only(["classify"]))).toBeNull();
    expect(plotSpecs(only(["classify"])).map((p) => p.name)).toEqual(["task-metrics", "cell-time"]);
    expect(taskMetricsSpec(only(["ppl"]))).toBeNull();
    expect(plotSpecs(only(["ppl"])).map((p) => p.name)).toEqual(["bits-vs-ppl", "cell-time"]);
    // Only the fp row has a perplexity: no quantized point, no plot.
    const fpOnly = { ...SAMPLE_RESULTS, cells: [fp, ...SAMPLE_RESULTS.cells.filter((c) => c.status !== "done")] };
    expect(plotSpecs(fpOnly).map((p) => p.name)).toEqual(["cell-time"]);
    expect(plotSpecs({ ...SAMPLE_RESULTS, cells: SAMPLE_RESULTS.cells.filter((c) => c.status !== "done") })).toEqual([]);
  });

  it("paletteScale colours series in order of first appearance", () => {
    expect(paletteScale(["b", "a", "b", "c"])).toEqual({ domain: ["b", "a", "c"], range: ["#4c78a8", "#e45756", "#54a24b"] });
  });
});

describe("writePlots", () => {
  let dir: string;
  let paths: string[];
  const outside = () => join(dir, "outside.txt");

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bench-plots-"));
    writeFileSync(outside(), "keep me");
    // Links at two targets: both must be replaced, the file they point to left alone.
    symlinkSync(outside(), join(dir, "bits-vs-ppl.svg"));
    symlinkSync(outside(), join(dir, "cell-time.png"));
    paths = await writePlots(dir, SAMPLE_RESULTS);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const svg = (name: string) => readFileSync(join(dir, `${name}.svg`), "utf8");

  it("writes SVG and PNG of each plot and returns their paths", () => {
    expect(paths).toEqual(["bits-vs-ppl", "task-metrics", "cell-time"].flatMap((n) => [join(dir, `${n}.svg`), join(dir, `${n}.png`)]));
    expect(readdirSync(dir).sort()).toEqual(["bits-vs-ppl.png", "bits-vs-ppl.svg", "cell-time.png", "cell-time.svg", "outside.txt", "task-metrics.png", "task-metrics.svg"]);
  });

  it("replaces a link at a target instead of following it", () => {
    for (const f of ["bits-vs-ppl.svg", "cell-time.png"]) expect(lstatSync(join(dir, f)).isSymbolicLink(), f).toBe(false);
    expect(readFileSync(outside(), "utf8")).toBe("keep me");
  });

  it("bits-vs-ppl.svg has the axis titles, the legends and the fp label", () => {
    const s = svg("bits-vs-ppl");
    expect(s.startsWith("<svg")).toBe(true);
    for (const text of ["true bits per weight (codes + metadata)", "perplexity (log scale)", "quantizer", "group size", ">rtn<", ">optq<", ">nf4<", ">g128<", ">row<", "full precision: 18.42", "DejaVu Sans"]) expect(s, text).toContain(text);
  });

  it("task-metrics.svg has a facet per task, the bar and reference legends", () => {
    const s = svg("task-metrics");
    for (const text of ["classify: accuracy (%)", "summarize: ROUGE-L F1 (×100)", "before fine-tuning", "after fine-tuning", "full precision, before", "full precision, after", "baseline (majority label)", "baseline (lead summary)", "rtn 2b g128", "nf4 4b g128"]) expect(s, text).toContain(text);
  });

  it("cell-time.svg has a bar per done cell and the phases", () => {
    const s = svg("cell-time");
    for (const text of ["seconds", "phase", "calibration", "summarize eval", "other (load, …)", ">full precision<", ">baseline<", ">optq 4b row<"]) expect(s, text).toContain(text);
    expect(s).not.toContain("optq 2b row");
    expect(s).not.toContain("nf4 2b g128");
  });

  it("each PNG has the PNG signature and twice its SVG's size", () => {
    for (const name of ["bits-vs-ppl", "task-metrics", "cell-time"]) {
      const png = readFileSync(join(dir, `${name}.png`));
      expect([...png.subarray(0, 8)], name).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      const [, w, h] = /^<svg[^>]*?\swidth="([\d.]+)" height="([\d.]+)"/.exec(svg(name))!;
      expect(png.readUInt32BE(16), `${name} width`).toBe(Math.round(2 * Number(w)));
      expect(Math.abs(png.readUInt32BE(20) - 2 * Number(h)), `${name} height`).toBeLessThanOrEqual(1);
    }
  });

  it("writes nothing when no plot has data", async () => {
    const empty = mkdtempSync(join(tmpdir(), "bench-plots-"));
    try {
      expect(await writePlots(empty, { ...SAMPLE_RESULTS, cells: SAMPLE_RESULTS.cells.filter((c) => c.status !== "done") })).toEqual([]);
      expect(readdirSync(empty)).toEqual([]);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it("svgToPng refuses a width that is not a positive integer", async () => {
    await expect(svgToPng(svg("cell-time"), 0)).rejects.toThrow(/width must be a positive integer of pixels \(got 0\)/);
  });
});
