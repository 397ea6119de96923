// modulora bench end to end on tiny-llama: the grid (every registered quantizer, bits 2
// and 4, groups of 128 and per row, ppl and classify) at small settings; each cell's perplexity
// against `modulora quantize` + `modulora eval` of the same model; the files; --resume; the errors.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUNDLED_DATA, DEFAULT_PPL_MAX_WINDOWS, DEFAULT_BITS, DEFAULT_CALIBRATION, DEFAULT_FINETUNE, DEFAULT_GROUP_SIZES, DEFAULT_MAX_SAMPLES, DEFAULT_PPL_SEQ_LEN, DEFAULT_TASKS, type BenchResults } from "@modulora/bench";
import { BENCH_DEFAULTS } from "../src/specs.js";
import { ROOT, TINY, runCli, runCliOk } from "./run-cli.js";

const CALIB = join(ROOT, "fixtures/data/lm/calib-small.txt");
const LM = join(ROOT, "fixtures/data/lm/valid.txt");
// Small settings for the grid; the perplexity flags are passed to `modulora eval` as they are.
const PPL = ["--ppl-seq-len", "128", "--max-windows", "4"];
const CAL = ["--calib-samples", "8", "--calib-seq-len", "128"];
const SMALL = [...PPL, ...CAL, "--steps", "3", "--warmup", "1", "--classify-samples", "16", "--seq-len", "64"];

let tmp: string;
let out: string;
let results: BenchResults;
let stderr: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-bench-"));
  out = join(tmp, "grid");
  const r = runCliOk(["bench", "--model", TINY, "--tasks", "ppl,classify", "--bits", "2,4", "--out", out, ...SMALL]);
  stderr = r.stderr;
  results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as BenchResults;
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cell = (id: string) => {
  const c = results.cells.find((x) => x.id === id);
  if (!c) throw new Error(`no cell ${id} in ${results.cells.map((x) => x.id).join(", ")}`);
  return c;
};

describe("modulora bench", () => {
  it("runs every registered quantizer at the bits and group sizes it supports, with the reference rows", () => {
    expect(results.cells.map((c) => c.id)).toEqual([
      "fp", "baseline",
      "hqq-b2-g128", "hqq-b2-grow", "hqq-b4-g128", "hqq-b4-grow",
      "nf4-b2-g128", "nf4-b2-grow", "nf4-b4-g128", "nf4-b4-grow",
      "optq-b2-g128", "optq-b2-grow", "optq-b4-g128", "optq-b4-grow",
      "rtn-b2-g128", "rtn-b2-grow", "rtn-b4-g128", "rtn-b4-grow",
    ]);
    expect(cell("nf4-b2-g128")).toMatchObject({ status: "skipped", reason: "nf4 supports bits 4 only" });
    const done = results.cells.filter((c) => c.status === "done");
    expect(done).toHaveLength(16);
    for (const c of done.filter((x) => x.kind === "quantized")) {
      expect(c.quantize!.bitsPerWeight, c.id).toBeGreaterThan(c.bits!);
      expect(c.quantize!.bitsPerWeight, c.id).toBeLessThan(c.bits! + 0.5);
      expect(c.tasks.classify!.finetune!.steps).toBe(3);
      expect(c.tasks.classify!.n).toBe(16);
      expect(c.peakBytes!).toBeGreaterThan(0);
    }
    // Perplexity grows as bits fall, for every quantizer (groups of 128).
    for (const q of ["hqq", "optq", "rtn"]) expect(cell(`${q}-b2-g128`).tasks.ppl!.ppl, q).toBeGreaterThan(cell(`${q}-b4-g128`).tasks.ppl!.ppl);
    expect(cell("rtn-b4-g128").tasks.ppl!.ppl).toBeGreaterThan(cell("fp").tasks.ppl!.ppl);
    expect(cell("baseline").tasks.classify!.after).toBeUndefined();
    expect(results.command).toContain("bench --model");
    expect(stderr).toContain("[18/18] rtn 4-bit per row: 4.079 bits/weight");
  });

  it.each([["fp"], ["rtn-b2-grow"], ["optq-b4-g128"], ["nf4-b4-g128"], ["hqq-b2-g128"]])("%s: perplexity equals modulora eval of the same model to 1e-6", (id) => {
    const c = cell(id);
    let model = TINY;
    if (c.kind === "quantized") {
      model = join(tmp, `q-${id}`);
      const calib = c.quantizer === "optq" ? ["--calib", CALIB, ...CAL] : [];
      runCliOk(["quantize", "--model", TINY, "--quantizer", c.quantizer!, "--bits", String(c.bits), "--group-size", String(c.groupSize), ...calib, "--out", model]);
    }
    const ev = JSON.parse(runCliOk(["eval", "--model", model, "--data", LM, "--metric", "ppl", "--seq-len", "128", "--max-windows", "4", "--json"]).stdout) as { value: number; tokens: number };
    expect(c.tasks.ppl!.tokens).toBe(ev.tokens);
    expect(Math.abs(c.tasks.ppl!.ppl - ev.value) / ev.value).toBeLessThan(1e-6);
  });

  it("writes results.json, results.md and the plots, and --resume keeps every finished cell", () => {
    for (const f of ["results.md", "bits-vs-ppl.svg", "bits-vs-ppl.png", "task-metrics.svg", "task-metrics.png", "cell-time.svg", "cell-time.png"]) expect(existsSync(join(out, f)), f).toBe(true);
    const md = readFileSync(join(out, "results.md"), "utf8");
    expect(md).toContain("| rtn | 4 | 128 | 4.188 |");
    expect(md).toContain("nf4 supports bits 4 only");
    const again = runCliOk(["bench", "--model", TINY, "--tasks", "ppl,classify", "--bits", "2,4", "--out", out, ...SMALL, "--resume"]);
    expect(again.stderr).toContain("18 finished before and kept");
    expect(again.stderr).toContain("[17/18] (kept) rtn 4-bit g128");
    const resumed = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as BenchResults;
    expect(resumed.cells.map((c) => c.tasks.ppl?.ppl)).toEqual(results.cells.map((c) => c.tasks.ppl?.ppl));
  });

  it("refuses bad settings in one line, before any work", () => {
    const bad = (args: string[], pattern: RegExp, code = 1) => {
      const r = runCli(["bench", "--model", TINY, "--out", join(tmp, "bad"), ...args]);
      expect(r.code, r.stderr).toBe(code);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(pattern);
      expect(existsSync(join(tmp, "bad"))).toBe(false);
    };
    bad(["--bits", "2,x"], /--bits: 'x' is not a bit width — pass whole numbers/);
    bad(["--group-size", "0"], /--group-size: '0' is not a group size/);
    bad(["--max-windows", "0"], /--max-windows: '0' is not a window count — pass a positive whole number, or all/);
    bad(["--quantizers", "rtn,nope"], /unknown quantizer 'nope'; registered: .*rtn/);
    bad(["--tasks", "ppl,translate"], /--tasks/, 2); // a usage error: not among the flag's choices
    bad(["--ppl-data", join(tmp, "missing.txt")], /missing\.txt/);
    const existing = runCli(["bench", "--model", TINY, "--out", out, ...SMALL]);
    expect(existing.code).toBe(1);
    expect(existing.stderr).toMatch(/--resume|overwrite/);
  });

  it("--help shows the library's defaults", () => {
    expect(BENCH_DEFAULTS.bits.map(Number)).toEqual(DEFAULT_BITS);
    expect(BENCH_DEFAULTS.groupSizes.map((g) => (g === "row" ? g : Number(g)))).toEqual(DEFAULT_GROUP_SIZES);
    expect(BENCH_DEFAULTS.tasks).toEqual(DEFAULT_TASKS);
    expect(BENCH_DEFAULTS.pplSeqLen).toBe(DEFAULT_PPL_SEQ_LEN);
    expect(BENCH_DEFAULTS.pplMaxWindows).toBe(DEFAULT_PPL_MAX_WINDOWS);
    expect([BENCH_DEFAULTS.calibSamples, BENCH_DEFAULTS.calibSeqLen]).toEqual([DEFAULT_CALIBRATION.samples, DEFAULT_CALIBRATION.seqLen]);
    expect([BENCH_DEFAULTS.classifySamples, BENCH_DEFAULTS.summarizeSamples]).toEqual([DEFAULT_MAX_SAMPLES.classify, DEFAULT_MAX_SAMPLES.summarize]);
    const f = DEFAULT_FINETUNE;
    expect(BENCH_DEFAULTS).toMatchObject({ steps: f.steps, lr: f.lr, batchSize: f.batchSize, seqLen: f.seqLen, rank: f.rank, alpha: f.alpha, warmup: f.warmup, maxNewTokens: f.maxNewTokens });
    expect(f.dropout).toBe(0);
    expect(Object.keys(BUNDLED_DATA).length).toBeGreaterThan(0);
    const help = runCliOk(["bench", "--help"]).stdout;
    expect(help).toContain("--bits LIST             bit widths; each quantizer runs the ones it supports (default: 2,3,4)");
  });
});
