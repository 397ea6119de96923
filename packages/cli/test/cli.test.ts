// The `modulora` CLI, run as users run it: the built dist/cli.js in a child process, on the
// fixtures. Small slices, short sequences and few steps keep the file under a couple of minutes
// on 2 cores.
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSafetensors } from "@modulora/tensor";
import { COMMANDS } from "../src/specs.js";

import { CLI, LM, ROOT, TINY, runCli, runCliOk, type CliRun } from "./run-cli.js";

type Run = CliRun;
const cli = (args: readonly string[], options: { cwd?: string } = {}): Run => runCli(args, options);
const ok = (args: readonly string[], options?: { cwd?: string }): Run => runCliOk(args, options);

/** Runs and expects the one-line failure: exit 1, nothing on stdout, one line `modulora <cmd>: …` on stderr. */
function fails(args: readonly string[], pattern: RegExp, code = 1): string {
  const r = cli(args);
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe("");
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^modulora( ${args[0]})?: `));
  expect(lines[0]).toMatch(pattern);
  return lines[0]!;
}

/** A usage error (the command line itself is wrong): as {@link fails}, with exit code 2. */
const failsUsage = (args: readonly string[], pattern: RegExp): string => fails(args, pattern, 2);

const json = (r: Run) => JSON.parse(r.stdout) as Record<string, unknown>;

let tmp: string;
let q4: string; // tiny-llama, RTN 4-bit
let adapter: string; // a few steps of spam classification on q4
let spamTrain: string;
let spamValid: string;
let manpage: string;

/** Every k-th line of a JSONL file (the spam files are sorted by label: stride to get both). */
function slice(src: string, dst: string, count: number): string {
  const lines = readFileSync(src, "utf8").split("\n").filter((l) => l.trim());
  const stride = Math.max(1, Math.floor(lines.length / count));
  writeFileSync(dst, lines.filter((_, i) => i % stride === 0).slice(0, count).join("\n") + "\n");
  return dst;
}

beforeAll(() => {
  expect(existsSync(CLI), "build the CLI first (pnpm exec tsup)").toBe(true);
  tmp = mkdtempSync(join(tmpdir(), "modulora-cli-"));
  spamTrain = slice(join(ROOT, "fixtures/data/spam/train.jsonl"), join(tmp, "spam-train.jsonl"), 48);
  spamValid = slice(join(ROOT, "fixtures/data/spam/valid.jsonl"), join(tmp, "spam-valid.jsonl"), 16);
  manpage = slice(join(ROOT, "fixtures/data/manpage-summary/valid.jsonl"), join(tmp, "manpage.jsonl"), 2);
  q4 = join(tmp, "q4");
  adapter = join(tmp, "adapter");
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("help and usage", () => {
  it("modulora --help lists every command", () => {
    const r = ok(["--help"]);
    for (const c of COMMANDS) expect(r.stdout).toContain(`  ${c.name} `);
    expect(r.stderr).toBe("");
  });

  it.each(COMMANDS.map((c) => [c.name, c] as const))("modulora %s --help lists its flags with defaults", (_, spec) => {
    const r = ok([spec.name, "--help"]);
    expect(r.stdout).toContain(`Usage: modulora ${spec.name}`);
    for (const o of spec.options) {
      expect(r.stdout).toContain(o.type === "boolean" ? `--[no-]${o.name}` : `--${o.name}`);
      if (o.default === true) expect(r.stdout).toContain(`(default: true; --no-${o.name} turns it off)`);
      else if (o.default !== undefined && o.default !== false) expect(r.stdout).toContain(`(default: ${Array.isArray(o.default) ? o.default.join(",") : String(o.default)})`);
    }
    for (const g of ["--config FILE", "--verbose", "--help"]) expect(r.stdout).toContain(g);
  });

  it("unknown commands and flags fail in one line with a hint", () => {
    expect(failsUsage(["quantise"], /unknown command 'quantise'/)).toContain("did you mean 'quantize'?");
    expect(failsUsage(["quantize", "--model", TINY, "--bitz", "4"], /unknown option --bitz/)).toContain("did you mean --bits?");
    failsUsage(["eval", "--model", TINY, "--data", LM, "--metric", "bleu"], /--metric must be one of ppl, accuracy, rouge/);
    failsUsage(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "four", "--out", join(tmp, "never")], /--bits must be an integer/);
    failsUsage(["quantize", "--quantizer", "rtn", "--bits", "4", "--out", join(tmp, "never")], /--model is required/);
    const r = cli([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
  });
});

describe("commands on the fixtures", () => {
  it("quantize: tiny-llama, RTN 4-bit, into a new directory", () => {
    const r = ok(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", q4]);
    expect(r.stdout).toMatch(/model\.layers\.0\.self_attn\.q_proj\s+4\s+4\.1875/);
    expect(r.stdout).toMatch(/quantized 28 layers with rtn \(4-bit, group 128\): 4\.1875 bits\/weight/);
    const config = JSON.parse(readFileSync(join(q4, "config.json"), "utf8")) as Record<string, Record<string, unknown>>;
    expect(config["quantization_config"]!["bits"]).toBe(4);
    expect(readdirSync(q4).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "quantization_report.json", "quantize_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]);
    expect(readdirSync(tmp).filter((f) => f.includes(".tmp"))).toEqual([]);
  });

  it("finetune: a few steps of spam classification, with evaluation and checkpoints", () => {
    const r = ok([
      "finetune", "--model", q4, "--data", spamTrain, "--valid", spamValid, "--format", "classification", "--out", adapter,
      "--steps", "4", "--eval-every", "2", "--save-every", "2", "--batch-size", "4", "--seq-len", "64", "--lr", "1e-3",
    ]);
    expect(r.stdout).toMatch(/trained 4 steps/);
    expect(r.stdout).toMatch(/validation \(16 examples\): accuracy 0\.\d{4}/);
    for (const f of ["adapter_config.json", "adapter_model.safetensors", "modulora.json", "metrics.jsonl", "loss.svg", "loss.png"]) expect(existsSync(join(adapter, f)), f).toBe(true);
    for (const f of ["adapter_config.json", "adapter_model.safetensors", "modulora.json", "trainer_state.json"]) expect(existsSync(join(adapter, "checkpoint-4", f)), f).toBe(true);
    const metrics = readFileSync(join(adapter, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; loss?: number; eval?: { accuracy: number } });
    expect(metrics.filter((m) => m.loss !== undefined).map((m) => m.step)).toEqual([1, 2, 3, 4]);
    expect(metrics.filter((m) => m.eval).map((m) => m.step)).toEqual([2, 4]);
    const meta = JSON.parse(readFileSync(join(adapter, "modulora.json"), "utf8")) as Record<string, unknown>;
    expect(meta["task_format"]).toBe("classification");
    expect(meta["labels"]).toEqual(["ham", "spam"]);
    expect(meta["quantization"]).toMatchObject({ quantizer: "rtn", bits: 4, group_size: 128 });
    expect(meta["templates"]).toEqual({ prompt: "{text}\nLabel:", target: " {label}" });
    expect(readFileSync(join(adapter, "loss.svg"), "utf8")).toMatch(/^<svg/);
    expect([...readFileSync(join(adapter, "loss.png")).subarray(1, 4)].map((c) => String.fromCharCode(c)).join("")).toBe("PNG");
  });

  it("finetune --resume continues from the newest checkpoint", () => {
    const out = join(tmp, "resumed");
    const base = ["finetune", "--model", q4, "--data", spamTrain, "--format", "classification", "--out", out, "--batch-size", "4", "--seq-len", "48", "--save-every", "2"];
    ok([...base, "--steps", "2"]);
    const r = ok([...base, "--steps", "4", "--resume"]);
    expect(r.stderr).toContain("resumed from step 2");
    const steps = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { step: number }).step);
    expect(steps).toEqual([1, 2, 3, 4]);
  });

  it("eval ppl --json prints exactly one JSON object", () => {
    const r = ok(["eval", "--model", q4, "--data", LM, "--metric", "ppl", "--seq-len", "128", "--max-windows", "3", "--json"]);
    expect(r.stdout.endsWith("}\n")).toBe(true);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    const j = json(r);
    expect(Object.keys(j)).toEqual(["metric", "value", "n", "nll", "tokens", "seq_len", "stride"]);
    expect(j).toMatchObject({ metric: "ppl", n: 3, tokens: 3 * 127, seq_len: 128, stride: 128 });
    expect(j["value"] as number).toBeCloseTo(Math.exp(j["nll"] as number), 10);
    // 4-bit RTN costs a little perplexity over the f32 model on the same windows.
    const full = json(ok(["eval", "--model", TINY, "--data", LM, "--metric", "ppl", "--seq-len", "128", "--max-windows", "3", "--json"]));
    expect(j["value"] as number).toBeGreaterThan(full["value"] as number);
    expect(j["value"] as number).toBeLessThan(1.5 * (full["value"] as number));
  });

  it("eval ppl --stride: overlapping windows, each token scored once", () => {
    const r = json(ok(["eval", "--model", q4, "--data", LM, "--metric", "ppl", "--seq-len", "128", "--stride", "32", "--max-windows", "5", "--json"]));
    // The first window scores 127 tokens, each later one its last 32.
    expect(r).toMatchObject({ metric: "ppl", n: 5, tokens: 127 + 4 * 32, seq_len: 128, stride: 32 });
    // More context per scored token than non-overlapping windows over the same stretch of text.
    const plain = json(ok(["eval", "--model", q4, "--data", LM, "--metric", "ppl", "--seq-len", "128", "--max-windows", "2", "--json"]));
    expect(r["value"] as number).toBeLessThan(plain["value"] as number);
    fails(["eval", "--model", q4, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--stride", "65"], /--stride 65 is longer than --seq-len 64/);
    fails(["eval", "--model", q4, "--data", spamValid, "--metric", "accuracy", "--stride", "8"], /--stride is for --metric ppl/);
  });

  it("eval accuracy with the adapter uses its template and label set", () => {
    const j = json(ok(["eval", "--model", q4, "--adapter", adapter, "--data", spamValid, "--metric", "accuracy", "--seq-len", "64", "--json"]));
    expect(j).toMatchObject({ metric: "accuracy", n: 16, labels: ["ham", "spam"] });
    expect(j["value"] as number).toBeGreaterThanOrEqual(0);
    expect(j["value"] as number).toBeLessThanOrEqual(1);
    expect(j["correct"]).toBe(Math.round((j["value"] as number) * 16));
    // A subset: --max-samples picks a seeded random subset.
    expect(json(ok(["eval", "--model", q4, "--adapter", adapter, "--data", spamValid, "--metric", "accuracy", "--seq-len", "64", "--max-samples", "5", "--json"]))["n"]).toBe(5);
  });

  it("eval rouge on two manpage summaries", () => {
    const r = ok(["eval", "--model", q4, "--data", manpage, "--metric", "rouge", "--seq-len", "256", "--max-new-tokens", "16", "--json"]);
    const j = json(r);
    expect(Object.keys(j)).toEqual(["metric", "value", "n", "rouge1", "rouge2", "rougeL"]);
    expect(j).toMatchObject({ metric: "rouge", n: 2 });
    expect(j["value"]).toBe(j["rougeL"]);
    for (const k of ["rouge1", "rouge2", "rougeL"]) expect(j[k] as number).toBeGreaterThanOrEqual(0);
  });

  it("generate streams a few tokens; a seed reproduces a sample", () => {
    const args = ["generate", "--model", q4, "--adapter", adapter, "--prompt", "Subject: meeting on Monday", "--max-new-tokens", "8", "--seed", "3"];
    const a = ok(args);
    const b = ok(args);
    expect(a.stdout.length).toBeGreaterThan(1);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stderr).toMatch(/\d+ tokens in [\d.]+ s/);
    const greedy = ok(["generate", "--model", TINY, "--prompt", "The", "--temperature", "0", "--max-new-tokens", "6", "--chat"]);
    expect(greedy.stdout.endsWith("\n")).toBe(true);
  });

  it("export merges the adapter into a bf16 Hugging Face checkpoint", () => {
    const out = join(tmp, "exported");
    const r = ok(["export", "--model", q4, "--adapter", adapter, "--out", out, "--reference"]);
    expect(r.stdout).toMatch(/wrote .*exported/);
    const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as Record<string, unknown>;
    expect(config["quantization_config"]).toBeUndefined();
    expect(config["torch_dtype"]).toBe("bfloat16");
    for (const f of ["tokenizer.json", "tokenizer_config.json", "model.safetensors", "modulora_reference.safetensors"]) expect(existsSync(join(out, f)), f).toBe(true);
    const info = json(ok(["info", out, "--json"]));
    expect(info).toMatchObject({ kind: "model", layers: 4, hidden_size: 256, tensors: 39, parameters: 5_507_328, quantization: null });
    expect(Object.keys(info["dtypes"] as object)).toEqual(["bf16"]);
    // The exported checkpoint read back computes what the adapter model computes, up to bf16 rounding.
    const ref = loadSafetensors(join(out, "modulora_reference.safetensors"));
    const a = ref.get("logits_adapter")!.toFloat64Array();
    const m = ref.get("logits_merged")!.toFloat64Array();
    let maxDiff = 0;
    let maxAbs = 0;
    for (let i = 0; i < a.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(a[i]! - m[i]!));
      maxAbs = Math.max(maxAbs, Math.abs(a[i]!));
    }
    for (const t of ref.values()) t.dispose();
    expect(maxDiff / maxAbs).toBeLessThan(0.05);
    expect(maxDiff).toBeGreaterThan(0); // bf16 did round something
  });

  it("info describes a model, a quantized checkpoint, an adapter and a .safetensors file", () => {
    const model = ok(["info", TINY]);
    expect(model.stdout).toMatch(/: model\n/);
    expect(model.stdout).toMatch(/heads \/ KV heads\s+4 \/ 4/);
    expect(model.stdout).toMatch(/parameters\s+5,507,328/);
    const q = json(ok(["info", q4, "--json"]));
    expect(q).toMatchObject({ kind: "quantized checkpoint", quantization: { method: "gptq", quantizer: "rtn", bits: 4, group_size: 128, layers: 28 } });
    const bpw = (q["quantization"] as { bits_per_weight_on_disk: number }).bits_per_weight_on_disk;
    expect(bpw).toBeGreaterThan(4);
    expect(bpw).toBeLessThan(4.5);
    const ad = json(ok(["info", adapter, "--json"]));
    expect(ad).toMatchObject({ kind: "adapter", r: 8, alpha: 16, tensors: 56, task_format: "classification", labels: ["ham", "spam"], checkpoints: ["checkpoint-2", "checkpoint-4"] });
    expect(ok(["info", adapter]).stdout).toMatch(/base quantization\s+rtn affine, 4-bit, group 128/);
    const file = json(ok(["info", join(TINY, "model.safetensors"), "--json"]));
    expect(file).toMatchObject({ kind: "safetensors", tensors: 39, parameters: 5_507_328 });
    expect(ok(["info", join(TINY, "model.safetensors")]).stdout).toMatch(/f32 ×39/);
  });

  it("quantize with OPTQ: calibration text, act-order", () => {
    const out = join(tmp, "q-optq");
    const r = ok(["quantize", "--model", TINY, "--quantizer", "optq", "--bits", "4", "--act-order", "--calib", join(ROOT, "fixtures/data/lm/calib-small.txt"), "--calib-samples", "8", "--calib-seq-len", "64", "--out", out]);
    expect(r.stdout).toMatch(/quantized 28 layers with optq \(4-bit, group 128, act-order\): [\d.]+ bits\/weight over the quantized layers, [\d.]+ s \(calibration [\d.]+ s\)/);
    expect(json(ok(["info", out, "--json"]))).toMatchObject({ quantization: { method: "gptq", quantizer: "optq", bits: 4, act_order: true } });
    expect(JSON.parse(readFileSync(join(out, "quantize_config.json"), "utf8"))).toMatchObject({ quant_method: "gptq", desc_act: true, true_sequential: true });
    // info summarises quantization_report.json: the mean of the per-layer errors printed by quantize.
    const info = json(ok(["info", out, "--json"]))["quantization"] as { true_sequential: boolean; report: { layers: number; weight_error: { mean: number }; output_error: { mean: number; max: number } } };
    expect(info.true_sequential).toBe(true);
    expect(info.report.layers).toBe(28);
    const printed = [...r.stdout.matchAll(/^model\.layers\.\S+\s+4\s+[\d.]+\s+(\S+)\s+(\S+)/gm)].map((m) => Number(m[2]));
    expect(printed.length).toBe(28);
    expect(info.report.output_error.mean).toBeCloseTo(printed.reduce((a, b) => a + b, 0) / 28, 3);
    expect(info.report.output_error.max).toBeCloseTo(Math.max(...printed), 3);
    expect(ok(["info", out]).stdout).toMatch(/quantization report\s+28 layers; weight error mean [\d.e+-]+, max [\d.e+-]+; output error mean/);
    writeFileSync(join(out, "quantization_report.json"), "{not json");
    fails(["info", out], /quantization_report\.json is not valid JSON/);
    // --true-sequential=false: one calibration pass per block on full-precision inputs, and recorded as such.
    const flat = join(tmp, "q-optq-flat");
    const r2 = ok(["quantize", "--model", TINY, "--quantizer", "optq", "--bits", "4", "--true-sequential=false", "--percdamp", "0.05", "--static-groups", "--calib", join(ROOT, "fixtures/data/lm/calib-small.txt"), "--calib-samples", "8", "--calib-seq-len", "64", "--out", flat]);
    expect(r2.stdout).toContain("with optq (4-bit, group 128, static-groups, percdamp 0.05, not true-sequential)");
    // The plugin's own options are recorded as resolved: those given, and the defaults of the rest.
    expect(JSON.parse(readFileSync(join(flat, "quantize_config.json"), "utf8"))).toMatchObject({
      desc_act: false, true_sequential: false, static_groups: true, damp_percent: 0.05,
      meta: { quantizer: ["modulora-ts:optq"], options: { bits: 4, groupSize: 128, actOrder: false, staticGroups: true, percdamp: 0.05, blockSize: 128, trueSequential: false } },
    });
  });

  it("--plugin registers a user's quantizer module", () => {
    const out = join(tmp, "q-plugin");
    const r = ok(["quantize", "--model", TINY, "--quantizer", "rtn-sym-test", "--bits", "3", "--group-size", "64", "--plugin", "./packages/cli/test/fixtures/rtn-symmetric-plugin.mjs", "--out", out]);
    expect(r.stdout).toContain("with rtn-sym-test (3-bit, group 64)");
    expect(json(ok(["info", out, "--json"]))).toMatchObject({ quantization: { quantizer: "rtn-sym-test", bits: 3, group_size: 64, symmetric: true } });
  });
});

describe("--config", () => {
  it("is equivalent to the flags (camelCase or kebab-case keys), and flags win", () => {
    const flags = ["eval", "--model", q4, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "2", "--json"];
    const cfg = join(tmp, "eval.json");
    writeFileSync(cfg, JSON.stringify({ model: q4, data: LM, metric: "ppl", seqLen: 64, "max-windows": 2, json: true }));
    const viaFlags = ok(flags).stdout;
    expect(ok(["eval", "--config", cfg]).stdout).toBe(viaFlags);
    expect(json(ok(["eval", "--config", cfg, "--max-windows", "1"]))["n"]).toBe(1);
    writeFileSync(cfg, JSON.stringify({ model: q4, data: LM, metric: "ppl", maxWindow: 2 }));
    expect(failsUsage(["eval", "--config", cfg], /unknown key "maxWindow"/)).toContain('did you mean "maxWindows"?');
    fails(["eval", "--config", join(tmp, "missing.json")], /config file .*missing\.json does not exist/);
  });
});

describe("bad input: one line on stderr, nothing on stdout, exit 1", () => {
  it("missing files", () => {
    fails(["quantize", "--model", join(tmp, "nope"), "--quantizer", "rtn", "--bits", "4", "--out", join(tmp, "never")], /model directory .*nope does not exist — pass --model/);
    fails(["finetune", "--model", q4, "--data", join(tmp, "nope.jsonl"), "--format", "classification", "--out", join(tmp, "never")], /--data .*nope\.jsonl does not exist/);
    fails(["eval", "--model", q4, "--data", join(tmp, "nope.txt"), "--metric", "ppl"], /--data .*nope\.txt does not exist/);
    fails(["generate", "--model", q4, "--adapter", join(tmp, "nope"), "--prompt", "hi"], /adapter directory .*nope does not exist/);
    fails(["info", join(tmp, "nope")], /does not exist/);
    expect(existsSync(join(tmp, "never"))).toBe(false);
  });

  it("malformed JSONL names the line", () => {
    const bad = join(tmp, "bad.jsonl");
    writeFileSync(bad, '{"text": "a", "label": "ham"}\n{"text": "b", "label": "spam"}\n{"text": "c", "label":\n');
    fails(["finetune", "--model", q4, "--data", bad, "--format", "classification", "--out", join(tmp, "never")], /bad\.jsonl:3: invalid JSON/);
    writeFileSync(bad, '{"text": "a", "label": "ham"}\n{"text": "b"}\n');
    fails(["eval", "--model", q4, "--data", bad, "--metric", "accuracy"], /bad\.jsonl:2: missing field "label"/);
    expect(existsSync(join(tmp, "never"))).toBe(false);
  });

  it("an unknown quantizer lists the registered ones", () => {
    fails(["quantize", "--model", TINY, "--quantizer", "gptq", "--bits", "4", "--out", join(tmp, "never")], /unknown quantizer 'gptq'; registered: hqq, nf4, optq, rtn — /);
    fails(["finetune", "--model", TINY, "--data", spamTrain, "--format", "classification", "--out", join(tmp, "never"), "--quantizer", "nf9", "--bits", "4"], /unknown quantizer 'nf9'; registered: hqq, nf4, optq, rtn/);
    // Options a quantizer cannot honour are refused, not ignored.
    fails(["quantize", "--model", TINY, "--quantizer", "optq", "--bits", "4", "--out", join(tmp, "never")], /'optq' needs calibration data .* — pass --calib FILE/);
    // A quantizer's own flag given with another quantizer is named with its owner.
    failsUsage(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--act-order", "--out", join(tmp, "never")], /--act-order is an option of quantizer optq, not of 'rtn' \(modulora quantize --help lists each quantizer's options\)/);
    fails(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--true-sequential=false", "--out", join(tmp, "never")], /--true-sequential is a calibration setting; 'rtn' uses no activations/);
    failsUsage(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--percdamp", "0.1", "--out", join(tmp, "never")], /--percdamp is an option of quantizer optq, not of 'rtn'/);
    fails(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--calib", LM, "--out", join(tmp, "never")], /--calib is a calibration setting; 'rtn' uses no activations — drop --calib/);
    failsUsage(["quantize", "--model", TINY, "--quantizer", "optq", "--bits", "4", "--percdamp", "-1", "--calib", LM, "--out", join(tmp, "never")], /--percdamp/);
    // 16 calibration rows for 64 inputs, undamped: a singular Hessian, reported with the layer and what to change.
    // (It fails after the model has loaded, so progress lines come before the one error line.)
    const singular = cli(["quantize", "--model", TINY, "--quantizer", "optq", "--bits", "4", "--percdamp", "0", "--calib-samples", "1", "--calib-seq-len", "16", "--calib", LM, "--out", join(tmp, "never")]);
    expect(singular.code).toBe(1);
    expect(singular.stdout).toBe("");
    const errLines = singular.stderr.split("\n").filter((l) => l.startsWith("modulora"));
    expect(errLines, singular.stderr).toHaveLength(1);
    expect(errLines[0]).toMatch(/^modulora quantize: quantizing with 'optq' failed: model\.layers\.0\.self_attn\.k_proj: optqQuantize: the Hessian is not positive definite after damping with percdamp = 0; pass a larger percdamp .* — check the quantizer's flags \(--bits, --group-size, --act-order, --static-groups, --percdamp, --block-size; modulora quantize --quantizer optq --help\)/);
    expect(existsSync(join(tmp, "never"))).toBe(false);
    const short = join(tmp, "short-calib.txt");
    writeFileSync(short, "hello world\n");
    fails(["quantize", "--model", TINY, "--quantizer", "optq", "--bits", "4", "--calib", short, "--out", join(tmp, "never")], /calibration file .*short-calib\.txt has \d+ tokens, fewer than one window of --calib-seq-len 512 — use a longer --calib text or a smaller --calib-seq-len/);
  });

  it("an unknown or empty --plugin module", () => {
    fails(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", join(tmp, "never"), "--plugin", "modulora-plugin-that-does-not-exist"], /cannot find plugin module 'modulora-plugin-that-does-not-exist'/);
    fails(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", join(tmp, "never"), "--plugin", "./nope/plugin.mjs"], /plugin module \.\/nope\/plugin\.mjs does not exist/);
    fails(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", join(tmp, "never"), "--plugin", "./packages/cli/test/fixtures/no-quantizer.mjs"], /exports no quantizer/);
  });

  it("an adapter for another model", () => {
    const other = join(tmp, "other-model");
    cpSync(TINY, other, { recursive: true });
    const config = JSON.parse(readFileSync(join(other, "config.json"), "utf8")) as Record<string, unknown>;
    // (2 heads of 128 keep every weight's shape: the config still describes the weights)
    writeFileSync(join(other, "config.json"), JSON.stringify({ ...config, num_attention_heads: 2, num_key_value_heads: 2, head_dim: 128 }));
    fails(["eval", "--model", other, "--adapter", adapter, "--data", spamValid, "--metric", "accuracy"], /trained on another base model .*\(num_attention_heads 4 vs 2, num_key_value_heads 4 vs 2\) — pass the --model the adapter was trained on/);
    writeFileSync(join(other, "config.json"), JSON.stringify({ ...config, rms_norm_eps: 1e-6 }));
    fails(["generate", "--model", other, "--adapter", adapter, "--prompt", "hi"], /trained on another base model .*config\.json differs/);
  });

  it("a corrupt checkpoint (truncated safetensors)", () => {
    const broken = join(tmp, "broken-model");
    mkdirSync(broken);
    for (const f of readdirSync(TINY)) copyFileSync(join(TINY, f), join(broken, f));
    truncateSync(join(broken, "model.safetensors"), 1_000_000);
    fails(["eval", "--model", broken, "--data", LM, "--metric", "ppl", "--json"], /model\.safetensors.*truncated.* — the file is damaged or incomplete/);
    fails(["info", join(broken, "model.safetensors")], /truncated/);
    const brokenAdapter = join(tmp, "broken-adapter");
    cpSync(adapter, brokenAdapter, { recursive: true });
    truncateSync(join(brokenAdapter, "adapter_model.safetensors"), 100);
    fails(["generate", "--model", q4, "--adapter", brokenAdapter, "--prompt", "hi"], /adapter_model\.safetensors.* — the file is damaged/);
  });

  it("an existing --out without --resume or --overwrite", () => {
    fails(["finetune", "--model", q4, "--data", spamTrain, "--format", "classification", "--out", adapter], /output directory .* already exists — pass --resume to continue its training, --overwrite to replace it/);
    fails(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", q4], /output directory .* already exists — pass --overwrite/);
    fails(["export", "--model", q4, "--adapter", adapter, "--out", adapter], /already exists/);
  });

  it("--device cuda without CUDA, and a quantized --model for quantize", () => {
    fails(["generate", "--model", q4, "--prompt", "hi", "--device", "cuda"], /--device cuda: the CUDA backend is not available here: registering backend 'cuda' failed: (this build of @modulora\/kernels has no CUDA backend|the CUDA build of the addon sees no GPU).* — use --device cpu, or build @modulora\/kernels with CUDA/);
    fails(["quantize", "--model", q4, "--quantizer", "rtn", "--bits", "4", "--out", join(tmp, "never")], /already quantized/);
  });
});
