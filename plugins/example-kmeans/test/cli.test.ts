// The plugin as users load it into the CLI: the built dist/cli.js in a child process with
// `--plugin <this package's dist/index.js>`, quantizing tiny-llama and fine-tuning on the result.
// (turbo builds this package, and the CLI it depends on, before these tests run.)
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLI = join(ROOT, "packages/cli/dist/cli.js");
const PLUGIN = fileURLToPath(new URL("../dist/index.js", import.meta.url));
const TINY = join(ROOT, "fixtures/tiny-llama");
let tmp: string;
let text: string;

/** Runs `modulora ...args` from the repository root. */
function cli(args: readonly string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000, env: { ...process.env, FORCE_COLOR: "0" } });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function ok(args: readonly string[]) {
  const r = cli(args);
  if (r.code !== 0) throw new Error(`modulora ${args.join(" ")} exited ${r.code}:\n${r.stderr}`);
  return r;
}
const json = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Record<string, any>;

beforeAll(() => {
  expect(existsSync(CLI), `${CLI} is missing: pnpm --filter @modulora/cli build`).toBe(true);
  expect(existsSync(PLUGIN), `${PLUGIN} is missing: pnpm --filter @modulora/example-kmeans build`).toBe(true);
  expect(existsSync(join(TINY, "model.safetensors")), `fixture missing: ${TINY}`).toBe(true);
  tmp = mkdtempSync(join(tmpdir(), "modulora-kmeans-cli-"));
  // a few kB of the bundled language-model text: enough for a few steps of 2 × 32 tokens
  text = join(tmp, "train.txt");
  writeFileSync(text, readFileSync(join(ROOT, "fixtures/data/lm/valid.txt"), "utf8").slice(0, 4000));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("modulora --plugin example-kmeans", () => {
  it("quantize: tiny-llama at 2 bits, per row (the plugin's default group size), recorded with the plugin's options", () => {
    const r = ok(["quantize", "--model", TINY, "--plugin", PLUGIN, "--quantizer", "example-kmeans", "--bits", "2", "--out", join(tmp, "q2")]);
    // 2-bit codes + 4 f32 levels per row: 2.5 bits on [256, 256] and [768, 256], 2.1667 on [256, 768]
    expect(r.stdout).toMatch(/model\.layers\.0\.self_attn\.q_proj\s+2\s+2\.5000/);
    expect(r.stdout).toMatch(/model\.layers\.0\.mlp\.down_proj\s+2\s+2\.1667/);
    expect(r.stdout).toMatch(/quantized 28 layers with example-kmeans \(2-bit, group row\): 2\.4231 bits\/weight/);
    const qc = json(join(tmp, "q2", "quantize_config.json"));
    expect(qc).toMatchObject({ quant_method: "modulora", formats: ["custom"], bits: [2], plugin: "example-kmeans" });
    expect(qc["meta"]["options"]).toEqual({ bits: 2, groupSize: "row", iterations: 10 });
  });

  it("finetune on the quantized checkpoint (the plugin loaded to read it) writes the adapter", () => {
    const out = join(tmp, "adapter");
    const r = ok([
      "finetune", "--model", join(tmp, "q2"), "--plugin", PLUGIN, "--data", text, "--format", "text", "--out", out,
      "--steps", "3", "--batch-size", "2", "--seq-len", "32", "--lr", "2e-3",
    ]);
    expect(r.stdout).toMatch(/trained 3 steps/);
    for (const f of ["adapter_config.json", "adapter_model.safetensors", "modulora.json", "metrics.jsonl"]) expect(existsSync(join(out, f)), f).toBe(true);
    expect(json(join(out, "modulora.json"))["quantization"]).toMatchObject({ quantizer: "example-kmeans", format: "custom", bits: 2, layers: 28 });
    const steps = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step?: number; loss?: number }).filter((m) => m.loss !== undefined);
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3]);
    for (const m of steps) expect(Number.isFinite(m.loss)).toBe(true);
  });

  it("without --plugin the checkpoint cannot be read, and the error says to load the plugin", () => {
    const r = cli(["finetune", "--model", join(tmp, "q2"), "--data", text, "--format", "text", "--out", join(tmp, "never"), "--steps", "1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/example-kmeans/);
    expect(r.stderr).toMatch(/--plugin/);
    expect(existsSync(join(tmp, "never"))).toBe(false);
  });

  it("finetune quantizing on the fly, with the plugin's own --iterations flag, records the options in modulora.json", () => {
    const out = join(tmp, "fly");
    ok([
      "finetune", "--model", TINY, "--plugin", PLUGIN, "--quantizer", "example-kmeans", "--bits", "2", "--iterations", "3",
      "--data", text, "--format", "text", "--out", out, "--steps", "2", "--batch-size", "2", "--seq-len", "32",
    ]);
    expect(json(join(out, "modulora.json"))["quantized_on_the_fly"]).toEqual({ quantizer: "example-kmeans", bits: 2, group_size: "row", options: { iterations: 3 } });
    const bad = cli(["quantize", "--model", TINY, "--plugin", PLUGIN, "--quantizer", "example-kmeans", "--bits", "2", "--iterations", "0", "--out", join(tmp, "never")]);
    expect(bad.code).toBe(2); // a flag value out of range is a usage error
    expect(bad.stderr).toMatch(/--iterations/);
  });
});
