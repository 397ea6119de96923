// A real small run on tiny-llama (rtn + nf4, 4 bits, every task, a few steps), checked against
// the plain computations it stands for: evaluatePerplexity on an independently quantized model
// (and on that model saved and loaded back, the path `modulora eval` takes), accuracyOf on the
// base model; then resume, a refused resume, a failed cell, and the tensor handles of a cell.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getQuantizer } from "@modulora/core";
import { loadDataset } from "@modulora/data";
import { evaluatePerplexity, loadModel, perplexityTokenIds, quantizeModel, saveQuantizedModel } from "@modulora/llama";
import { memory } from "@modulora/tensor";
import { runBench } from "../src/bench.js";
import { runCell } from "../src/cell.js";
import { bundledDataPath } from "../src/defaults.js";
import { accuracyOf, classificationItems, subset } from "../src/evaluation.js";
import { planGrid } from "../src/grid.js";
import { resolveBenchSettings } from "../src/settings.js";
import { BenchData } from "../src/tasks.js";
import type { BenchEvent, BenchOptions, BenchResults, CellResult } from "../src/types.js";
import { registerAll, TINY } from "./plugins.js";

const tmp = mkdtempSync(join(tmpdir(), "bench-run-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
beforeAll(registerAll);

/** Tiny settings: 4 windows of 64 tokens, 3 steps of 2 examples, 8 / 3 validation examples. */
const SMALL: Omit<BenchOptions, "out"> = {
  model: TINY,
  quantizers: ["rtn", "nf4"],
  bits: [4],
  groupSizes: [64],
  ppl: { seqLen: 64, maxWindows: 4 },
  finetune: { steps: 3, batchSize: 2, seqLen: 48, maxNewTokens: 6, warmup: 0, lr: 1e-2 },
  classify: { maxSamples: 8 },
  summarize: { maxSamples: 3 },
};
const written: string[] = [];
const writers = {
  writeReport: (dir: string) => {
    const p = join(dir, "results.md");
    writeFileSync(p, "report\n");
    written.push(p);
    return [p];
  },
  writePlots: async (dir: string) => {
    const p = join(dir, "plot.svg");
    writeFileSync(p, "<svg/>\n");
    return [p];
  },
};
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
const cell = (r: BenchResults, id: string) => r.cells.find((c) => c.id === id)!;

/** What must be equal between two runs of the same settings (no times). */
function deterministic(c: CellResult): unknown {
  const t = c.tasks;
  const task = (x: CellResult["tasks"]["classify"]) => x && { before: x.before, after: x.after, n: x.n, steps: x.finetune?.steps, tokens: x.finetune?.tokens, firstLoss: x.finetune?.firstLoss, lastLoss: x.finetune?.lastLoss };
  return {
    id: c.id, status: c.status, reason: c.reason, bpw: c.quantize?.bitsPerWeight, model: c.quantize?.modelBitsPerWeight, err: c.quantize?.meanError,
    ppl: t.ppl && { ppl: t.ppl.ppl, nll: t.ppl.nll, tokens: t.ppl.tokens, windows: t.ppl.windows }, classify: task(t.classify), summarize: task(t.summarize),
  };
}

describe("runBench on tiny-llama", () => {
  let straight: BenchResults;
  let events: BenchEvent[];
  const out = join(tmp, "straight");

  beforeAll(async () => {
    events = [];
    straight = await runBench({ ...SMALL, out, writers, onEvent: (e) => events.push(e), command: "modulora bench test" });
  }, 240_000);

  it("runs every row and writes results.json, bench.json and the cell files", () => {
    expect(straight.cells.map((c) => [c.id, c.status, c.reason ?? null])).toEqual([
      ["fp", "done", null], ["baseline", "done", null], ["rtn-b4-g64", "done", null], ["nf4-b4-g64", "done", null],
    ]);
    const json = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as BenchResults;
    expect(json).toEqual(JSON.parse(JSON.stringify(straight)));
    expect(json.schema).toBe("modulora-bench/1");
    expect(json.command).toBe("modulora bench test");
    expect(json.settings.tasks).toEqual(["ppl", "classify", "summarize"]);
    // tiny-llama: 4096 × 256 embedding and head, 4 blocks of 4·256² + 3·256·768 + 2·256, final norm.
    expect(json.model).toEqual({ path: TINY.replace(/\/$/, ""), name: "tiny-llama", parameters: 2 * 4096 * 256 + 4 * (4 * 256 * 256 + 3 * 256 * 768 + 2 * 256) + 256, layers: 4, hidden: 256, vocab: 4096 });
    expect(json.environment.packages["@modulora/bench"]).toBe("0.1.0");
    expect(json.environment.cpus).toBeGreaterThan(0);
    expect(readdirSync(join(out, "cells")).sort()).toEqual(["baseline.json", "fp.json", "nf4-b4-g64.json", "rtn-b4-g64.json"]);
    expect(JSON.parse(readFileSync(join(out, "cells", "rtn-b4-g64.json"), "utf8"))).toEqual(cell(json, "rtn-b4-g64"));
    const bench = JSON.parse(readFileSync(join(out, "bench.json"), "utf8")) as { format: string; settings: Record<string, unknown>; files: string[] };
    expect(bench.format).toBe("modulora-bench-dir/1");
    expect(Object.keys(bench.settings)).not.toContain("quantizers");
    expect(bench.files).toEqual(["results.md", "plot.svg"]);
    expect(existsSync(join(out, ".modulora.lock"))).toBe(false);
    const end = events.at(-1)!;
    expect(end.type).toBe("end");
    expect(end.type === "end" && end.files).toEqual([join(out, "results.json"), join(out, "results.md"), join(out, "plot.svg")]);
  });

  it("emits start, cell-start, phases with done/of counts, cell-end", () => {
    expect(events[0]).toMatchObject({ type: "start", total: 4, resumed: 0 });
    const phases = events.filter((e): e is Extract<BenchEvent, { type: "phase" }> => e.type === "phase" && e.cell.id === "rtn-b4-g64" && e.done === e.of).map((e) => `${e.phase} ${e.of}`);
    expect([...new Set(phases)]).toEqual(["load 1", "quantize 28", "ppl 4", "classify:before 8", "classify:finetune 3", "classify:after 8", "summarize:before 3", "summarize:finetune 3", "summarize:after 3"]);
    expect(events.filter((e) => e.type === "cell-end").map((e) => e.type === "cell-end" && [e.index, e.resumed])).toEqual([[0, false], [1, false], [2, false], [3, false]]);
  });

  it("a cell's perplexity is evaluatePerplexity of the model quantized alone, and of it saved and loaded back", async () => {
    const text = readFileSync(bundledDataPath("pplText"), "utf8");
    const loaded = loadModel(TINY);
    const ids = perplexityTokenIds(loaded.tokenizer!, text, { seqLen: 64, maxWindows: 4 });
    const fp = evaluatePerplexity(loaded.model, ids, { seqLen: 64, stride: 64, maxWindows: 4 });
    expect(rel(cell(straight, "fp").tasks.ppl!.ppl, fp.perplexity)).toBeLessThan(1e-6);
    const plugin = getQuantizer("rtn");
    const r = await quantizeModel(loaded.model, plugin, { bits: 4, groupSize: 64 });
    const q = evaluatePerplexity(loaded.model, ids, { seqLen: 64, maxWindows: 4 });
    const c = cell(straight, "rtn-b4-g64");
    expect(rel(c.tasks.ppl!.ppl, q.perplexity)).toBeLessThan(1e-6);
    expect(c.tasks.ppl).toMatchObject({ tokens: q.tokens, windows: 4, seqLen: 64, stride: 64 });
    expect(c.quantize!.bitsPerWeight).toBe(r.bitsPerWeight);
    expect(c.quantize!.layers).toBe(28);
    const dir = join(tmp, "q4");
    saveQuantizedModel(loaded.model, dir, { sourceDir: TINY, plugin, options: { bits: 4, groupSize: 64 } });
    loaded.model.dispose();
    const back = loadModel(dir);
    try {
      const saved = evaluatePerplexity(back.model, ids, { seqLen: 64, maxWindows: 4 });
      expect(rel(c.tasks.ppl!.ppl, saved.perplexity)).toBeLessThan(1e-6);
    } finally {
      back.model.dispose();
    }
  }, 60_000);

  it("accuracy before fine-tuning is accuracyOf on the base model; the baseline row is the majority label", () => {
    const loaded = loadModel(TINY);
    try {
      const tok = loaded.tokenizer!;
      const train = loadDataset(bundledDataPath("classifyTrain"), { format: "classification", tokenizer: tok, seqLen: 48 });
      const valid = loadDataset(bundledDataPath("classifyValid"), { format: "classification", tokenizer: tok, seqLen: 48, templates: train.spec.templates!, labels: train.spec.labels! });
      const examples = subset(valid.examples, 8, 0);
      const r = accuracyOf(loaded.model, classificationItems(examples, valid.spec, tok));
      const c = cell(straight, "fp").tasks.classify!;
      expect(c.before).toEqual({ accuracy: r.accuracy });
      expect(c.n).toBe(8);
      expect(c.finetune).toMatchObject({ steps: 3 });
      expect(Number.isFinite(c.finetune!.firstLoss) && Number.isFinite(c.finetune!.lastLoss)).toBe(true);
      // The training set's majority label is ham.
      const ham = examples.filter((e) => e.record!["label"] === "ham").length / examples.length;
      expect(cell(straight, "baseline").tasks.classify!.before).toEqual({ accuracy: ham });
      expect(Object.keys(cell(straight, "baseline").tasks.summarize!.before).sort()).toEqual(["rouge1", "rouge2", "rougeL"]);
      expect(Object.keys(cell(straight, "nf4-b4-g64").tasks.summarize!.after!).sort()).toEqual(["rouge1", "rouge2", "rougeL"]);
    } finally {
      loaded.model.dispose();
    }
  });

  it("resume after an interruption runs only the missing cells and gives the straight run's numbers", async () => {
    const dir = join(tmp, "resumed");
    const ac = new AbortController();
    let ends = 0;
    await expect(runBench({ ...SMALL, out: dir, writers, signal: ac.signal, onEvent: (e) => {
      if (e.type === "cell-end" && ++ends === 1) ac.abort();
    } })).rejects.toThrow(/stopped after 1 of 4 cells; .* resume: true/);
    expect(readdirSync(join(dir, "cells"))).toEqual(["fp.json"]);
    expect(existsSync(join(dir, "results.json"))).toBe(false);
    // A run without resume or overwrite refuses the directory.
    await expect(runBench({ ...SMALL, out: dir, writers })).rejects.toThrow("is not empty; pass resume to continue its run, overwrite to replace it");
    // A cell file that does not parse is run again, with a warning.
    writeFileSync(join(dir, "cells", "baseline.json"), "{ not json");
    const seen: BenchEvent[] = [];
    const resumed = await runBench({ ...SMALL, out: dir, writers, resume: true, onEvent: (e) => seen.push(e) });
    expect(seen[0]).toMatchObject({ type: "start", resumed: 1 });
    expect(seen.filter((e) => e.type === "warning").map((e) => e.type === "warning" && e.message)).toEqual([expect.stringMatching(/baseline\.json cannot be read .*running cell baseline again/)]);
    expect(seen.filter((e) => e.type === "cell-start").map((e) => e.type === "cell-start" && e.cell.id)).toEqual(["baseline", "rtn-b4-g64", "nf4-b4-g64"]);
    expect(seen.filter((e) => e.type === "cell-end").map((e) => e.type === "cell-end" && e.resumed)).toEqual([true, false, false, false]);
    expect(resumed.cells.map(deterministic)).toEqual(straight.cells.map(deterministic));

    // A changed grid list is fine: the finished cells are reused, the new one runs.
    const more = await runBench({ ...SMALL, quantizers: ["rtn"], groupSizes: [64, 128], out: dir, writers, resume: true });
    expect(more.cells.map((c) => c.id)).toEqual(["fp", "baseline", "rtn-b4-g64", "rtn-b4-g128"]);
    expect(deterministic(cell(more, "rtn-b4-g64"))).toEqual(deterministic(cell(straight, "rtn-b4-g64")));
    // A changed task setting is refused, naming the first difference.
    await expect(runBench({ ...SMALL, finetune: { ...SMALL.finetune, steps: 4 }, out: dir, writers, resume: true })).rejects.toThrow(
      `resume: the settings differ from the run in ${dir}: finetune.steps was 3, now 4; resume with the same settings`,
    );
    await expect(runBench({ ...SMALL, tasks: ["ppl"], out: dir, writers, resume: true })).rejects.toThrow("tasks was [\"ppl\",\"classify\",\"summarize\"], now [\"ppl\"]");
    // overwrite replaces what the bench wrote.
    const again = await runBench({ ...SMALL, quantizers: ["rtn"], tasks: ["ppl"], out: dir, writers, overwrite: true });
    expect(again.cells.map((c) => c.id)).toEqual(["fp", "rtn-b4-g64"]);
    expect(readdirSync(join(dir, "cells")).sort()).toEqual(["fp.json", "rtn-b4-g64.json"]);
  }, 240_000);

  it("a failing cell is recorded as failed and the run goes on", async () => {
    const r = await runBench({ ...SMALL, quantizers: ["test-fails", "rtn"], tasks: ["ppl"], fullPrecision: false, out: join(tmp, "fails"), writers });
    expect(r.cells.map((c) => [c.id, c.status, c.reason ?? null])).toEqual([
      ["test-fails-b4-g64", "failed", "model.layers.0.self_attn.q_proj: test-fails: this quantizer always fails"],
      ["rtn-b4-g64", "done", null],
    ]);
    expect(JSON.parse(readFileSync(join(tmp, "fails", "cells", "test-fails-b4-g64.json"), "utf8"))).toMatchObject({ status: "failed" });
    expect(deterministic(cell(r, "rtn-b4-g64"))).toMatchObject({ ppl: (deterministic(cell(straight, "rtn-b4-g64")) as { ppl: unknown }).ppl });
  }, 120_000);

  it("a cell gives back every tensor handle and byte it took", async () => {
    const settings = resolveBenchSettings({ ...SMALL, out: join(tmp, "unused") });
    const first = loadModel(TINY);
    first.model.dispose();
    const data = new BenchData(settings, first.tokenizer!);
    const cells = planGrid(settings, { hiddenSize: 256, numHeads: 4, headDim: 64, intermediateSize: 768 });
    const quantized = cells.find((c) => c.id === "nf4-b4-g64")!;
    // Warm the shared data first: what it caches is not a cell's.
    data.perplexityIds();
    data.task("classify");
    data.task("summarize");
    const before = memory();
    const r = await runCell(quantized, { data, report: () => {}, checkAbort: () => {} });
    expect(r.status).toBe("done");
    expect(r.peakBytes).toBeGreaterThan(0);
    const after = memory();
    expect([after.tensors, after.bytes, after.storages]).toEqual([before.tensors, before.bytes, before.storages]);
  }, 120_000);
});
