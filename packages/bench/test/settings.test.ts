import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { bundledDataPath, DEFAULT_FINETUNE } from "../src/defaults.js";
import { parseQuantizerSpec, resolveBenchSettings } from "../src/settings.js";
import type { BenchOptions } from "../src/types.js";
import { registerAll, ROOT, TINY } from "./plugins.js";

beforeAll(registerAll);
const base: BenchOptions = { model: TINY, out: "/tmp/unused-bench-out" };
const bad = (o: Partial<BenchOptions>) => () => resolveBenchSettings({ ...base, ...o } as BenchOptions);

describe("parseQuantizerSpec", () => {
  it("a name alone", () => expect(parseQuantizerSpec("rtn")).toEqual({ name: "rtn" }));
  it("variant options by name or flag, typed by the option spec", () => {
    expect(parseQuantizerSpec("hqq:optimizeScale=true:iterations=5")).toEqual({ name: "hqq", options: { optimizeScale: true, iterations: 5 } });
    expect(parseQuantizerSpec("hqq:optimize-scale=false")).toEqual({ name: "hqq", options: { optimizeScale: false } });
    expect(parseQuantizerSpec("nf4:table=fp4")).toEqual({ name: "nf4", options: { table: "fp4" } });
    expect(parseQuantizerSpec("optq:percdamp=0.1:act-order=true")).toEqual({ name: "optq", options: { percdamp: 0.1, actOrder: true } });
  });
  it("errors", () => {
    expect(() => parseQuantizerSpec("nope")).toThrow(/unknown quantizer 'nope'; registered: hqq, nf4, optq, rtn, test-fails, test-rowonly/);
    expect(() => parseQuantizerSpec("hqq:bogus=1")).toThrow("quantizer 'hqq:bogus=1': hqq has no option bogus (its options: lpNorm, beta, kappa, iterations, optimizeScale)");
    expect(() => parseQuantizerSpec("hqq:optimizeScale=yes")).toThrow("hqq option optimizeScale is a boolean, got 'yes'; use true or false");
    expect(() => parseQuantizerSpec("hqq:iterations=x")).toThrow("hqq option iterations is a number, got 'x'");
    expect(() => parseQuantizerSpec("hqq:iterations")).toThrow("'iterations' is not key=value");
    expect(() => parseQuantizerSpec(":a=1")).toThrow("no quantizer name");
    expect(() => parseQuantizerSpec("hqq:iterations=2:iterations=3")).toThrow("option iterations is given twice");
  });
});

describe("resolveBenchSettings", () => {
  it("fills the defaults", () => {
    const s = resolveBenchSettings(base);
    expect(s.model).toBe(resolve(TINY));
    expect(s.quantizers.map((q) => q.label)).toEqual(["hqq", "nf4", "optq", "rtn", "test-fails", "test-rowonly"]);
    expect(s.bits).toEqual([2, 3, 4]);
    expect(s.groupSizes).toEqual([128, "row"]);
    expect(s.tasks).toEqual(["ppl", "classify", "summarize"]);
    expect(s.ppl).toEqual({ text: bundledDataPath("pplText"), seqLen: 512, stride: 512, maxWindows: 64 });
    expect(s.calibration).toEqual({ text: bundledDataPath("calibrationText"), samples: 128, seqLen: 512 });
    expect(s.classify).toEqual({ train: bundledDataPath("classifyTrain"), valid: bundledDataPath("classifyValid"), maxSamples: 200 });
    expect(s.summarize).toEqual({ train: bundledDataPath("summarizeTrain"), valid: bundledDataPath("summarizeValid"), maxSamples: 50 });
    expect(s.finetune).toEqual(DEFAULT_FINETUNE);
    expect([s.fullPrecision, s.baseline, s.device, s.dtype]).toEqual([true, true, "cpu", "f32"]);
    expect(bundledDataPath("pplText")).toBe(join(ROOT, "packages/bench/data/lm/valid.txt"));
  });
  it("variants get labels; objects and strings mix; tasks keep their canonical order", () => {
    const s = resolveBenchSettings({ ...base, quantizers: ["rtn", "hqq:optimizeScale=true", { name: "nf4", options: { table: "fp4" }, label: "fp4" }], tasks: ["classify", "ppl"], ppl: { maxWindows: null, stride: 128 } });
    expect(s.quantizers).toEqual([{ name: "rtn", label: "rtn" }, { name: "hqq", options: { optimizeScale: true }, label: "hqq:optimizeScale=true" }, { name: "nf4", options: { table: "fp4" }, label: "fp4" }]);
    expect(s.tasks).toEqual(["ppl", "classify"]);
    expect(s.ppl.maxWindows).toBeUndefined();
    expect(s.ppl.stride).toBe(128);
  });
  it("rejects each bad setting with a message saying what to do", () => {
    expect(bad({ quantizers: ["zzz"] })).toThrow("quantizer 'zzz': unknown quantizer 'zzz'; registered: hqq, nf4, optq, rtn, test-fails, test-rowonly");
    expect(bad({ quantizers: [{ name: "zzz" }] })).toThrow("quantizers[0]: unknown quantizer 'zzz'; registered:");
    expect(bad({ quantizers: [{ name: "hqq", options: { iterations: -1 } }] })).toThrow("quantizers[0] (hqq): quantizer 'hqq': iterations must be at least 0, got -1");
    expect(bad({ quantizers: [{ name: "hqq", options: { nope: 1 } }] })).toThrow("quantizer 'hqq' has no option nope");
    expect(bad({ quantizers: ["rtn", "rtn"] })).toThrow("two entries are labelled 'rtn'");
    expect(bad({ bits: [4, 2.5] })).toThrow("bits[1] must be a positive integer, got 2.5");
    expect(bad({ bits: [] })).toThrow("bits must be a non-empty list");
    expect(bad({ bits: [4, 4] })).toThrow("bits lists 4 twice");
    expect(bad({ groupSizes: [0] })).toThrow('groupSizes[0] must be a positive integer or "row", got 0');
    expect(bad({ groupSizes: ["col" as never] })).toThrow('groupSizes[0] must be a positive integer or "row", got "col"');
    expect(bad({ tasks: ["ppl", "qa" as never] })).toThrow('unknown task "qa"; tasks are ppl, classify, summarize');
    expect(bad({ ppl: { text: "/nonexistent/ppl.txt" } })).toThrow("ppl.text: /nonexistent/ppl.txt does not exist");
    expect(bad({ classify: { train: "/nonexistent/train.jsonl" } })).toThrow("classify.train: /nonexistent/train.jsonl does not exist");
    expect(bad({ summarize: { valid: "/nonexistent/v.jsonl" } })).toThrow("summarize.valid: /nonexistent/v.jsonl does not exist");
    expect(bad({ ppl: { seqLen: 128, stride: 129 } })).toThrow("ppl.stride must be an integer from 1 to ppl.seqLen (128), got 129");
    expect(bad({ ppl: { stride: 0 } })).toThrow("ppl.stride must be an integer from 1 to ppl.seqLen (512), got 0");
    expect(bad({ ppl: { seqLen: 2048 } })).toThrow("ppl.seqLen 2048 is 2048 tokens, longer than the model's context of 1024 tokens");
    expect(bad({ ppl: { maxWindows: 0 } })).toThrow("ppl.maxWindows must be an integer ≥ 1, got 0");
    expect(bad({ finetune: { steps: 0 } })).toThrow("finetune.steps must be an integer ≥ 1, got 0");
    expect(bad({ finetune: { lr: -1 } })).toThrow("finetune.lr must be a number > 0, got -1");
    expect(bad({ finetune: { warmup: 200 } })).toThrow("finetune.warmup 200 is longer than finetune.steps 100");
    expect(bad({ finetune: { dropout: 1 } })).toThrow("finetune.dropout must be a number in [0, 1), got 1");
    expect(bad({ finetune: { maxNewTokens: 64 } })).toThrow("finetune.maxNewTokens 64 leaves no room for the prompt in finetune.seqLen 64");
    expect(bad({ classify: { maxSamples: 0 } })).toThrow("classify.maxSamples must be an integer ≥ 1, got 0");
    expect(bad({ calibration: { samples: 0 } })).toThrow("calibration.samples must be an integer ≥ 1, got 0");
    expect(bad({ model: "/nonexistent/model" })).toThrow("model: /nonexistent/model is not a directory");
    expect(bad({ resume: true, overwrite: true })).toThrow("resume and overwrite exclude each other");
    expect(bad({ device: "tpu" })).toThrow(/device tpu is not available: .*; use "cpu"/);
    expect(bad({ dtype: "f16" as never })).toThrow('dtype "f16" is not a compute dtype');
  });
  it("a quantized model directory is refused", () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-q-"));
    const config = JSON.parse(readFileSync(join(TINY, "config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, quantization_config: { quant_method: "gptq", bits: 4, group_size: 128 } }));
    expect(() => resolveBenchSettings({ ...base, model: dir })).toThrow("is already quantized; pass the full-precision model");
  });
});
