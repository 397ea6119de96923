// CLI conventions, through the built CLI in a child process: --json prints exactly one JSON object
// on every command that prints results; generate streams the text of @modulora/llama's generate
// (non-ASCII included) and stops on Ctrl-C; usage errors exit 2 and runtime errors 1, in the
// process and through the documented `pnpm --silent modulora` invocation.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generate, generateTokens, loadLlama } from "@modulora/llama";
import { CLI, ROOT, TINY, runCli, runCliOk, type CliRun } from "./run-cli.js";

let tmp: string;
beforeAll(() => {
  expect(existsSync(CLI), "build the CLI first (pnpm exec tsup)").toBe(true);
  tmp = mkdtempSync(join(tmpdir(), "modulora-conventions-"));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The one JSON object a --json run prints: one line, nothing else on stdout. */
function onlyJson(r: CliRun): Record<string, unknown> {
  expect(r.stdout.endsWith("}\n"), r.stdout).toBe(true);
  expect(r.stdout.trim().split("\n")).toHaveLength(1);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/** The greedy continuation of `prompt` on tiny-llama, by the library. */
async function libraryGreedy(prompt: string, maxNewTokens: number): Promise<{ text: string; ids: number[]; promptTokens: number; stoppedBy: string }> {
  const { model, tokenizer } = loadLlama(TINY);
  try {
    return await generate(model, tokenizer, prompt, { maxNewTokens }).result();
  } finally {
    model.dispose();
  }
}

describe("--json on every command that prints results", () => {
  it("quantize, finetune and export print one object each, matching what they wrote", () => {
    const q4 = join(tmp, "q4");
    const q = onlyJson(runCliOk(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", q4, "--json"]));
    const config = JSON.parse(readFileSync(join(q4, "config.json"), "utf8")) as { quantization_config: { quant_method: string } };
    expect(q).toMatchObject({ out: q4, quantMethod: config.quantization_config.quant_method, quantizer: "rtn", bits: 4, groupSize: 128, symmetric: false, bitsPerWeight: 4.1875 });
    expect(q["layers"]).toHaveLength(28);
    expect((q["layers"] as { name: string; bits: number }[])[0]).toMatchObject({ name: "model.layers.0.self_attn.q_proj", bits: 4, bitsPerWeight: 4.1875 });
    expect(q["bytes"] as number).toBeGreaterThan(0);
    const report = JSON.parse(readFileSync(join(q4, "quantization_report.json"), "utf8")) as unknown;
    expect(JSON.stringify(report)).toContain("model.layers.0.self_attn.q_proj");

    const lines = readFileSync(join(ROOT, "fixtures/data/spam/train.jsonl"), "utf8").split("\n").filter((l) => l.trim());
    const train = join(tmp, "train.jsonl");
    writeFileSync(train, `${lines.filter((_, i) => i % 40 === 0).slice(0, 8).join("\n")}\n`);
    const adapter = join(tmp, "adapter");
    const f = onlyJson(runCliOk(["finetune", "--model", q4, "--data", train, "--format", "classification", "--out", adapter, "--steps", "2", "--batch-size", "2", "--seq-len", "48", "--json"]));
    const run = JSON.parse(readFileSync(join(adapter, "run.json"), "utf8")) as Record<string, unknown>;
    expect(f).toMatchObject({ out: adapter, steps: 2, lastLoss: run["lastLoss"], tokens: run["tokens"], device: "cpu", dtype: "f32", resumedFrom: null, checkpoints: readdirSync(adapter).some((d) => d.startsWith("checkpoint-")) });
    expect(f["files"]).toEqual(expect.arrayContaining(["adapter_config.json", "adapter_model.safetensors", "modulora.json", "metrics.jsonl", "run.json"]));
    expect(f["tokensPerSecond"]).toBeCloseTo((run["tokens"] as number) / (run["seconds"] as number), 6);

    const merged = join(tmp, "merged");
    const e = onlyJson(runCliOk(["export", "--model", q4, "--adapter", adapter, "--out", merged, "--json"]));
    expect(e).toMatchObject({ out: merged, dtype: "bf16" });
    expect(e["files"]).toEqual(expect.arrayContaining(["model.safetensors", "config.json", "tokenizer.json"]));
    for (const file of e["files"] as string[]) expect(existsSync(join(merged, file)), file).toBe(true);

    const i = onlyJson(runCliOk(["info", adapter, "--json"]));
    expect(i).toMatchObject({ kind: "adapter" });
    // Without --json the same commands print text, not JSON.
    expect(runCliOk(["info", adapter]).stdout.startsWith("{")).toBe(false);
  });

  it("generate --json: the text and token counts of the library's generate", async () => {
    const prompt = "café 日本語 ✓";
    const want = await libraryGreedy(prompt, 16);
    const g = onlyJson(runCliOk(["generate", "--model", TINY, "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "16", "--json"]));
    expect(Object.keys(g)).toEqual(["text", "promptTokens", "newTokens", "stoppedBy", "seconds", "tokensPerSecond"]);
    expect(g).toMatchObject({ text: want.text, promptTokens: want.promptTokens, newTokens: want.ids.length, stoppedBy: want.stoppedBy });
  });
});

describe("modulora generate streams whole characters", () => {
  it("prints exactly the library's text (a non-ASCII prompt), with no U+FFFD and a final newline", async () => {
    const prompt = "日本語のテキスト: café ✓";
    const want = await libraryGreedy(prompt, 24);
    const r = runCliOk(["generate", "--model", TINY, "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "24"]);
    expect(r.stdout).toBe(`${want.text}\n`);
    expect(r.stdout.includes("\uFFFD")).toBe(want.text.includes("\uFFFD"));
    expect(r.stderr).toMatch(new RegExp(`${want.ids.length} tokens in [\\d.]+ s .*stopped by ${want.stoppedBy}`));
  });

  it("Ctrl-C stops between two tokens: the text so far, a newline, exit code 130", async () => {
    const prompt = "The quick brown";
    // The premise: greedy generation runs the whole budget (no EOS), so only the signal can stop it early.
    const { model, tokenizer } = loadLlama(TINY);
    const full = generateTokens(model, tokenizer.encode(prompt), { maxNewTokens: 300, stopTokens: [...model.config.eosTokenIds, tokenizer.eosTokenId!] });
    model.dispose();
    expect(full.stoppedBy).toBe("max-tokens");
    const child = spawn(process.execPath, [CLI, "generate", "--model", TINY, "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "300"], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (!stdout) child.kill("SIGINT");
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/stopped by interrupted/);
    expect(stderr).toMatch(/modulora generate: interrupted\n/);
    expect(stdout.endsWith("\n")).toBe(true);
    const text = stdout.slice(0, -1);
    const whole = (await libraryGreedy(prompt, 300)).text;
    expect(whole.startsWith(text)).toBe(true);
    expect(text.length).toBeGreaterThan(0);
    expect(text.length).toBeLessThan(whole.length);
  });
});

describe("exit codes", () => {
  it("the built CLI: 2 for a usage error, 1 for a runtime error, nothing on stdout", () => {
    for (const [args, code] of [[["generate", "--model", TINY, "--prompt"], 2], [["quantize", "--model", TINY, "--bitz", "4"], 2], [[], 2], [["info", join(tmp, "nope")], 1], [["generate", "--model", join(tmp, "nope"), "--prompt", "x"], 1]] as const) {
      const r = runCli(args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(code);
      expect(r.stdout).toBe("");
    }
  });

  it("pnpm --silent modulora (the documented invocation with pnpm 12) passes arguments, stdout and exit codes through untouched", () => {
    const pnpm = (args: string[]) => spawnSync("pnpm", ["--silent", "modulora", ...args], { cwd: ROOT, encoding: "utf8", env: { ...process.env, FORCE_COLOR: "0" } });
    const help = pnpm(["--help"]);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toBe(runCliOk(["--help"]).stdout);
    expect(help.stderr).toBe("");
    // Flags shaped like pnpm's own reach the CLI verbatim.
    const info = pnpm(["info", "--json", TINY]);
    expect(info.stdout).toBe(runCliOk(["info", "--json", TINY]).stdout);
    expect(pnpm(["info", TINY, "--dir", tmp]).stderr).toContain("modulora info: unknown option --dir");
    const usage = pnpm(["quantise"]);
    expect(usage.status).toBe(2);
    expect(usage.stdout).toBe("");
    // Our line first; pnpm adds at most its one ELIFECYCLE line (docs/cli.md says so).
    const ours = runCli(["quantise"]).stderr;
    expect(usage.stderr.startsWith(ours), usage.stderr).toBe(true);
    expect(usage.stderr.slice(ours.length)).toMatch(/^(\[ELIFECYCLE\] Command failed with exit code 2\.\n)?$/);
    expect(pnpm(["info", join(tmp, "nope")]).status).toBe(1);
  });
});
