import { mkdtempSync, readFileSync, readdirSync, lstatSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MISSING, renderReport, writeReport } from "../src/report.js";
import type { BenchResults, CellResult } from "../src/types.js";
import { SAMPLE_RESULTS } from "./sample-results.js";

const md = renderReport(SAMPLE_RESULTS);
const lines = md.split("\n");

/** The table rows of results.md (lines starting with `| `), header excluded. */
function tableRows(text: string, header: string): string[] {
  const all = text.split("\n");
  const start = all.indexOf(header);
  expect(start, `header ${header}`).toBeGreaterThanOrEqual(0);
  const rows: string[] = [];
  for (let i = start + 2; i < all.length && all[i]!.startsWith("| "); i++) rows.push(all[i]!);
  return rows;
}

const MAIN_HEADER = "| quantizer | bits | group | bits/weight | ppl | ppl ÷ fp | accuracy % (before → after) | ROUGE-L ×100 (before → after) | fine-tune tok/s | quantize s | cell s | peak MiB |";

function withCells(cells: CellResult[], patch: Partial<BenchResults> = {}): BenchResults {
  return { ...SAMPLE_RESULTS, ...patch, cells };
}

describe("renderReport", () => {
  it("titles the report with the model's name", () => {
    expect(lines[0]).toBe("# Cross-quantizer benchmark: tiny-llama");
  });

  it("has one row per done cell in grid order, fp and baseline first and marked", () => {
    const rows = tableRows(md, MAIN_HEADER);
    const done = SAMPLE_RESULTS.cells.filter((c) => c.status === "done");
    expect(rows).toHaveLength(done.length);
    expect(rows[0]).toBe("| **full precision** | – | – | 32.000 | 18.42 | 1.000 | 50.0 → 87.5 | 11.1 → 28.7 | 2304.0 | – | 20.10 | 48.5 |");
    expect(rows[1]).toBe("| *baseline* | – | – | – | – | – | 53.1 | 18.0 | – | – | 0.05 | – |");
    expect(rows[2]).toBe("| rtn | 2 | 128 | 2.250 | 412.77 | 22.407 | 50.0 → 62.5 | 4.1 → 15.3 | 2204.1 | 0.42 | 19.50 | 40.0 |");
    expect(rows[3]).toBe("| rtn | 2 | row | 2.004 | 2811.40 | 152.613 | 46.9 → 50.0 | 1.0 → 5.2 | 2204.1 | 0.38 | 19.25 | 39.3 |");
    // nf4 has no peak memory recorded: the last column is "–".
    expect(rows[9]).toBe("| nf4 | 4 | 128 | 4.127 | 19.35 | 1.050 | 50.0 → 84.4 | 10.9 → 28.0 | 2204.1 | 0.55 | 20.50 | – |");
    const order = rows.map((r) => r.split(" | ").slice(0, 3).join(" ").replace(/^\| /, ""));
    expect(order).toEqual(["**full precision** – –", "*baseline* – –", "rtn 2 128", "rtn 2 row", "rtn 4 128", "rtn 4 row", "optq 2 128", "optq 4 128", "optq 4 row", "nf4 4 128"]);
  });

  it("computes ppl ÷ fp as each cell's perplexity over the fp row's", () => {
    const fp = SAMPLE_RESULTS.cells[0]!.tasks.ppl!.ppl;
    const rows = tableRows(md, MAIN_HEADER).slice(2);
    const quantized = SAMPLE_RESULTS.cells.filter((c) => c.status === "done" && c.kind === "quantized");
    expect(rows.map((r) => r.split(" | ")[5])).toEqual(quantized.map((c) => (c.tasks.ppl!.ppl / fp).toFixed(3)));
    expect(rows.map((r) => r.split(" | ")[5])).toEqual(["22.407", "152.613", "1.037", "1.194", "5.184", "1.019", "1.080", "1.050"]);
  });

  it("prints ROUGE-1/2/L before → after in a second table", () => {
    const rows = tableRows(md, "| quantizer | bits | group | ROUGE-1 | ROUGE-2 | ROUGE-L |");
    expect(rows).toHaveLength(10);
    expect(rows[0]).toBe("| **full precision** | – | – | 12.3 → 30.5 | 3.1 → 12.9 | 11.1 → 28.7 |");
    expect(rows[1]).toBe("| *baseline* | – | – | 20.1 | 6.6 | 18.0 |");
    expect(rows[4]).toBe("| rtn | 4 | 128 | 12.0 → 30.1 | 3.7 → 14.1 | 11.0 → 28.1 |");
  });

  it("lists the skipped and the failed cells with their reasons, outside the table", () => {
    const skipped = md.slice(md.indexOf("## Skipped"), md.indexOf("## Failed"));
    expect(skipped.trim().split("\n")).toEqual([
      "## Skipped",
      "",
      "- `nf4-b2-g128` (nf4 2b g128): nf4 supports 4 bits only (asked 2)",
      "- `nf4-b2-grow` (nf4 2b row): nf4 supports 4 bits only (asked 2)",
      "- `nf4-b4-grow` (nf4 4b row): nf4 does not support group size row (it supports 64, 128)",
    ]);
    const failed = md.slice(md.indexOf("## Failed"), md.indexOf("## Plots"));
    expect(failed.trim().split("\n")).toEqual([
      "## Failed",
      "",
      "- `optq-b2-grow` (optq 2b row): OPTQ: the Hessian of model.layers.0.self_attn.q_proj is not positive definite after damping 0.01; raise --damp",
    ]);
    expect(tableRows(md, MAIN_HEADER).some((r) => r.startsWith("| optq | 2 | row") || r.startsWith("| nf4 | 2"))).toBe(false);
  });

  it("states the settings: tasks, the ppl protocol, fine-tuning, calibration", () => {
    expect(lines).toContain("- **Tasks**: ppl, classify, summarize.");
    expect(lines).toContain("- **Perplexity**: `packages/bench/data/lm/valid.txt`, windows of 256 tokens, a new one every 256 tokens, at most 16 windows (measured: 16 windows, 4,080 tokens).");
    expect(lines).toContain("- **Fine-tuning** (every cell and task): 20 steps, learning rate 0.001 (cosine after 0 warm-up steps), batch size 8, sequences of up to 128 tokens, seed 0; LoRA rank 8, alpha 16, dropout 0, on every linear of every block.");
    expect(lines).toContain("- **Calibration** (quantizers that need it): 32 sequences of 256 tokens from `packages/bench/data/lm/train.txt`.");
    expect(lines).toContain("- **Grid**: quantizers `rtn`, `optq`, `nf4`; bits 2, 4; group sizes 128, row; device `cpu`, dtype `f32`. 14 rows: 10 done, 3 skipped, 1 failed.");
  });

  it("states the conditions, the exact command included", () => {
    const c = md.slice(md.indexOf("## Conditions"));
    expect(c.trim().split("\n")).toEqual([
      "## Conditions",
      "",
      "- **Machine**: linux x64, AMD EPYC 7B13, 2 CPUs, 7.8 GiB memory.",
      "- **Threads**: 2.",
      "- **Node**: v20.18.0.",
      "- **Device**: `cpu` (cpu), dtype `f32`.",
      "- **Load average** (1, 5, 15 min): 1.52, 1.31, 0.99.",
      "- **Started** 2025-03-01T10:00:00.000Z, **finished** 2025-03-01T10:04:05.500Z (245.5 s).",
      "- **Packages**: `@modulora/bench` 0.1.0, `@modulora/core` 0.1.0, `@modulora/quantizer-rtn` 0.1.0.",
      "- **Command**:",
      "",
      "```sh",
      SAMPLE_RESULTS.command,
      "```",
    ]);
  });

  it("shows file paths inside the working directory relative to it, others as recorded", () => {
    const inside = join(process.cwd(), "data/lm/valid.txt");
    const md = renderReport({ ...SAMPLE_RESULTS, settings: { ...SAMPLE_RESULTS.settings, ppl: { ...SAMPLE_RESULTS.settings.ppl, text: inside } } });
    expect(md).toContain("- **Perplexity**: `data/lm/valid.txt`, windows of 256 tokens");
    expect(md).toContain("(`/work/main/fixtures/tiny-llama`)"); // outside this package's directory: kept absolute
  });
  it("links every plot relatively", () => {
    for (const name of ["bits-vs-ppl", "task-metrics", "cell-time"]) {
      expect(lines).toContain(`[${name}.svg](${name}.svg) · [${name}.png](${name}.png)`);
    }
    expect(lines).toContain("![True bits per weight against perplexity](bits-vs-ppl.svg)");
  });

  it("prints – for every absent value and never NaN, undefined, null or Infinity", () => {
    expect(md).not.toMatch(/NaN|undefined|null|Infinity/);
    // No fp row (so no ratio), a cell without quantize, peak or summarize's after, no command, no load average.
    const rtn = SAMPLE_RESULTS.cells[2]!;
    const partial: CellResult = { ...rtn, quantize: undefined, peakBytes: undefined, tasks: { ppl: rtn.tasks.ppl, classify: rtn.tasks.classify, summarize: { ...rtn.tasks.summarize!, after: undefined, finetune: undefined } } };
    const { command: _command, ...noCommand } = SAMPLE_RESULTS;
    const r = renderReport({ ...noCommand, environment: { ...SAMPLE_RESULTS.environment, loadAverage: [] }, cells: [SAMPLE_RESULTS.cells[1]!, partial] });
    expect(r).not.toMatch(/NaN|undefined|null|Infinity/);
    const rows = tableRows(r, MAIN_HEADER);
    expect(rows[1]).toBe("| rtn | 2 | 128 | – | 412.77 | – | 50.0 → 62.5 | 4.1 → – | 2400.0 | – | 19.50 | – |");
    expect(r).toContain(`- **Command**: ${MISSING}`);
    expect(r).toContain("- **Load average** (1, 5, 15 min): –.");
    expect(tableRows(r, "| quantizer | bits | group | ROUGE-1 | ROUGE-2 | ROUGE-L |")[1]).toBe("| rtn | 2 | 128 | 5.1 → – | 1.4 → – | 4.1 → – |");
  });

  it("has the columns and plot links of the run's tasks only", () => {
    const pplOnly = withCells(
      SAMPLE_RESULTS.cells.map((c) => ({ ...c, tasks: c.tasks.ppl ? { ppl: c.tasks.ppl } : {} })),
      { settings: { ...SAMPLE_RESULTS.settings, tasks: ["ppl"] } },
    );
    const r = renderReport(pplOnly);
    const header = "| quantizer | bits | group | bits/weight | ppl | ppl ÷ fp | quantize s | cell s | peak MiB |";
    expect(tableRows(r, header)[2]).toBe("| rtn | 2 | 128 | 2.250 | 412.77 | 22.407 | 0.42 | 19.50 | 40.0 |");
    expect(r).not.toContain("ROUGE");
    expect(r).not.toContain("**Fine-tuning**");
    expect(r).toContain("[bits-vs-ppl.svg](bits-vs-ppl.svg)");
    expect(r).not.toContain("task-metrics.svg");
    expect(r).toContain("[cell-time.svg](cell-time.svg)");
  });

  it("says so when no row finished", () => {
    const r = renderReport(withCells(SAMPLE_RESULTS.cells.filter((c) => c.status !== "done")));
    expect(r).toContain("\nNo row finished.\n");
    expect(r).toContain("No plot: no cell has data to draw.");
    expect(r).not.toMatch(/NaN|undefined/);
  });

  it("refuses results of another schema, saying what to do", () => {
    expect(() => renderReport({ ...SAMPLE_RESULTS, schema: "modulora-bench/0" } as unknown as BenchResults)).toThrow(/expected a modulora-bench\/1 results\.json \(got schema "modulora-bench\/0"\); rerun the bench/);
  });
});

describe("writeReport", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("writes results.md, replacing a link at the path instead of following it", () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-report-"));
    dirs.push(dir);
    const outside = join(dir, "outside.md");
    writeFileSync(outside, "keep me");
    symlinkSync(outside, join(dir, "results.md"));
    expect(writeReport(join(dir), SAMPLE_RESULTS)).toEqual([join(dir, "results.md")]);
    expect(lstatSync(join(dir, "results.md")).isSymbolicLink()).toBe(false);
    expect(readFileSync(join(dir, "results.md"), "utf8")).toBe(md);
    expect(readFileSync(outside, "utf8")).toBe("keep me");
    expect(readdirSync(dir).sort()).toEqual(["outside.md", "results.md"]);
  });

  it("creates the directory when missing", () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-report-"));
    dirs.push(dir);
    const out = join(dir, "a", "b");
    expect(writeReport(out, SAMPLE_RESULTS)).toEqual([join(out, "results.md")]);
    expect(readFileSync(join(out, "results.md"), "utf8")).toBe(md);
  });
});
