// The quantizers as the CLI offers them: every built-in one listed with its own flags (made from
// the plugin's declared options, not written into the CLI), a user plugin's options as flags
// (parsed, checked by the plugin's schema, recorded in quantize_config.json and in modulora.json),
// and a LoRA fine-tune of tiny-llama quantized by each built-in quantizer.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { optionFlag } from "@modulora/core";
import { BUILTIN_QUANTIZERS } from "../src/plugins.js";
import { CLI, LM, ROOT, TINY, runCli, runCliOk, type CliRun } from "./run-cli.js";

const PLUGIN = "./packages/cli/test/fixtures/options-plugin.mjs";
const CALIB = join(ROOT, "fixtures/data/lm/calib-small.txt");

function fails(args: readonly string[], pattern: RegExp, code = 1): string {
  const r = runCli(args);
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe("");
  const lines = r.stderr.split("\n").filter((l) => l.startsWith("modulora"));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  return lines[0]!;
}

/** A usage error (the command line itself is wrong): as {@link fails}, with exit code 2. */
const failsUsage = (args: readonly string[], pattern: RegExp): string => fails(args, pattern, 2);

const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;

let tmp: string;
let spam: string;

beforeAll(() => {
  expect(existsSync(CLI), "build the CLI first (pnpm exec tsup)").toBe(true);
  tmp = mkdtempSync(join(tmpdir(), "modulora-quantizers-"));
  const lines = readFileSync(join(ROOT, "fixtures/data/spam/train.jsonl"), "utf8").split("\n").filter((l) => l.trim());
  const stride = Math.floor(lines.length / 16);
  spam = join(tmp, "spam.jsonl");
  writeFileSync(spam, `${lines.filter((_, i) => i % stride === 0).slice(0, 16).join("\n")}\n`);
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("the quantizers' own flags", () => {
  it("quantize --help lists every built-in quantizer with the flags its plugin declares", () => {
    expect(BUILTIN_QUANTIZERS.map((p) => p.name).sort()).toEqual(["hqq", "nf4", "optq", "rtn"]);
    const help = runCliOk(["quantize", "--help"]).stdout;
    const section = help.slice(help.indexOf("Quantizers ("));
    for (const p of BUILTIN_QUANTIZERS) {
      expect(section).toContain(`  ${p.name} — ${p.description}`);
      expect(section).toContain(`group size ${p.defaultGroupSize ?? 128}`);
      for (const o of p.options ?? []) expect(section, `${p.name} --${optionFlag(o)}`).toMatch(new RegExp(`\\n {6}--${o.type === "boolean" && !optionFlag(o).startsWith("no-") ? "\\[no-\\]" : ""}${optionFlag(o)}\\b.*${o.help.slice(0, 20).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
    }
    // With --quantizer, the command's own table gains that quantizer's flags (and only those).
    const optq = runCliOk(["quantize", "--quantizer", "optq", "--help"]).stdout;
    const own = optq.slice(optq.indexOf("Options of quantizer optq:"), optq.indexOf("Quantizers ("));
    expect(own).toMatch(/--\[no-\]act-order .*desc_act/);
    expect(own).toMatch(/--percdamp N .*\(default: 0\.01\)/);
    expect(own).not.toContain("--table");
    // finetune takes them too, for on-the-fly quantization.
    expect(runCliOk(["finetune", "--quantizer", "hqq", "--help"]).stdout).toContain("Options of quantizer hqq:");
  });

  it("a user plugin's options: flags and --config keys, defaults, the plugin's own checks, recorded with the checkpoint", () => {
    const out = join(tmp, "q-opts");
    const r = runCliOk(["quantize", "--model", TINY, "--plugin", PLUGIN, "--quantizer", "opts-test", "--bits", "4", "--mode", "shrink", "--factor", "0.5", "--no-write", "--out", out]);
    // the plugin's default group size (64), and the options that differ from their defaults
    expect(r.stdout).toContain("with opts-test (4-bit, group 64, mode shrink, factor 0.5, no-write)");
    expect(readJson(join(out, "quantize_config.json"))).toMatchObject({
      quant_method: "gptq", group_size: 64, meta: { quantizer: ["modulora-ts:opts-test"], options: { bits: 4, groupSize: 64, mode: "shrink", factor: 0.5, dryRun: true } },
    });
    // what reached quantize(): the resolved options under the plugin's own keys
    const cfg = join(tmp, "opts.json");
    writeFileSync(cfg, JSON.stringify({ model: TINY, plugin: [PLUGIN], quantizer: "opts-test", bits: 3, mode: "report", "no-write": true, out: join(tmp, "never") }));
    fails(["quantize", "--config", cfg], /options: \{"bits":3,"groupSize":64,"mode":"report","dryRun":true/);
    // the schema's bounds and choices, and the plugin's own check, each naming the flag
    failsUsage(["quantize", "--model", TINY, "--plugin", PLUGIN, "--quantizer", "opts-test", "--bits", "4", "--mode", "shrink", "--factor", "3", "--out", join(tmp, "never")], /--factor must be at most 2, got "3"/);
    failsUsage(["quantize", "--model", TINY, "--plugin", PLUGIN, "--quantizer", "opts-test", "--bits", "4", "--mode", "fast", "--out", join(tmp, "never")], /--mode must be one of plain, shrink, report/);
    fails(
      ["quantize", "--model", TINY, "--plugin", PLUGIN, "--quantizer", "opts-test", "--bits", "4", "--factor", "0.5", "--out", join(tmp, "never")],
      /quantizer 'opts-test': --factor = 0\.5: only means something with --mode shrink; add --mode shrink or drop --factor — modulora quantize --quantizer opts-test --help lists its options/,
    );
    // --sym only for quantizers with a symmetric mode
    fails(["quantize", "--model", TINY, "--plugin", PLUGIN, "--quantizer", "opts-test", "--bits", "4", "--sym", "--out", join(tmp, "never")], /quantizer 'opts-test' has no symmetric mode — drop --sym/);
    // another plugin's flag, without its quantizer
    failsUsage(["quantize", "--model", TINY, "--plugin", PLUGIN, "--quantizer", "rtn", "--bits", "4", "--factor", "0.5", "--out", join(tmp, "never")], /--factor is an option of quantizer opts-test, not of 'rtn'/);
    expect(existsSync(join(tmp, "never"))).toBe(false);
  });

  it("a plugin whose option would shadow a command's flag is refused, naming both", () => {
    const bad = join(tmp, "shadow-plugin.mjs");
    writeFileSync(bad, `import { rtnQuantizer } from "@modulora/quantizer-rtn";
export default { ...rtnQuantizer, name: "shadow-test", options: [{ name: "seed", type: "int", help: "a seed of its own" }] };\n`);
    // (a module outside the workspace cannot import @modulora packages: put it beside the CLI's tests)
    const inside = join(ROOT, "packages/cli/test/fixtures/.shadow-plugin.mjs");
    writeFileSync(inside, readFileSync(bad, "utf8"));
    try {
      fails(["quantize", "--model", TINY, "--plugin", inside, "--quantizer", "shadow-test", "--bits", "4", "--out", join(tmp, "never")], /quantizer 'shadow-test' declares option --seed, which modulora quantize already has — rename the option in the plugin/);
    } finally {
      rmSync(inside, { force: true });
    }
  });

  it("finetune quantizing on the fly records the plugin's options, and eval re-applies them", () => {
    const out = join(tmp, "ft-opts");
    const r = runCliOk(["finetune", "--model", TINY, "--plugin", PLUGIN, "--quantizer", "opts-test", "--bits", "4", "--mode", "shrink", "--factor", "0.5", "--data", spam, "--format", "classification", "--steps", "2", "--batch-size", "4", "--seq-len", "64", "--out", out]);
    expect(r.stderr).toContain("quantized on the fly: opts-test 4-bit, group 64, mode shrink, factor 0.5,");
    const meta = readJson(join(out, "modulora.json"));
    expect(JSON.stringify(meta)).toContain('"quantized_on_the_fly":{"quantizer":"opts-test","bits":4,"group_size":64,"options":{"mode":"shrink","factor":0.5,"dryRun":false}}');
    const e = runCliOk(["eval", "--model", TINY, "--plugin", PLUGIN, "--adapter", out, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "1", "--json"]);
    expect(e.stderr).toContain("quantizing the base as the adapter was trained (opts-test, 4-bit, group 64)");
  });
});

describe("a LoRA fine-tune of tiny-llama quantized by each built-in quantizer", () => {
  const runs: [string, string[]][] = [
    ["rtn", ["--bits", "3", "--group-size", "64"]],
    ["optq", ["--bits", "3", "--act-order", "--calib", CALIB, "--calib-samples", "4", "--calib-seq-len", "64"]],
    ["nf4", ["--bits", "4"]],
    ["hqq", ["--bits", "3", "--iterations", "5"]],
  ];
  it.each(runs)("%s: quantize, then finetune; the loss falls and the adapter is written", (name, flags) => {
    const q = join(tmp, `q-${name}`);
    runCliOk(["quantize", "--model", TINY, "--quantizer", name, ...flags, "--out", q]);
    const out = join(tmp, `ft-${name}`);
    runCliOk(["finetune", "--model", q, "--data", spam, "--format", "classification", "--steps", "8", "--batch-size", "4", "--seq-len", "64", "--lr", "2e-3", "--out", out]);
    const losses = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { loss?: number }).filter((m) => m.loss !== undefined).map((m) => m.loss!);
    expect(losses.length).toBeGreaterThanOrEqual(8);
    const head = (losses[0]! + losses[1]!) / 2;
    const tail = (losses.at(-1)! + losses.at(-2)!) / 2;
    expect(tail, losses.join(", ")).toBeLessThan(head);
    expect(existsSync(join(out, "adapter_model.safetensors"))).toBe(true);
    expect(readJson(join(out, "modulora.json"))).toMatchObject({ quantization: { quantizer: name } });
  });
});
