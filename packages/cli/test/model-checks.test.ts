// What `modulora eval`, `generate` and `info` refuse instead of printing a wrong answer (issue 13's
// reliability review), run as users run them: the built dist/cli.js in a child process, on
// copies of fixtures/tiny-llama. Each case failed before its fix (the issue says how).
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as T from "@modulora/tensor";
import { attachLoRA, loadLlama, quantizeModel, saveAdapter, saveQuantizedModel } from "@modulora/llama";
import { rtnQuantizer } from "@modulora/quantizer-rtn";

import { LM, ROOT, TINY, runCli } from "./run-cli.js";
const rawConfig = JSON.parse(readFileSync(join(TINY, "config.json"), "utf8")) as Record<string, unknown>;

// The timeout only turns a hang (such as the one num_hidden_layers 10000000 caused) into a failure.
const cli = (args: readonly string[]) => runCli(args, { timeoutMs: 120_000, env: { MODULORA_NUM_THREADS: "1" } });

/** Exit 1, nothing on stdout, one line `modulora <cmd>: …` on stderr matching `pattern`. */
function fails(args: readonly string[], pattern: RegExp, code = 1): string {
  const r = cli(args);
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe("");
  const lines = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("loading") && !l.startsWith("loaded"));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^modulora ${args[0]}: `));
  expect(lines[0]).toMatch(pattern);
  return lines[0]!;
}

/** A usage error (the command line itself is wrong): as {@link fails}, with exit code 2. */
const failsUsage = (args: readonly string[], pattern: RegExp): string => fails(args, pattern, 2);

let tmp: string;
/** A copy of tiny-llama with config.json keys overridden. */
function tinyCopy(name: string, override: Record<string, unknown> = {}): string {
  const dir = join(tmp, name);
  cpSync(TINY, dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...rawConfig, ...override }));
  return dir;
}

let libraryAdapter: string; // trained (B random) on tiny-llama quantized in memory with RTN 4-bit
let q4: string; // the same quantization, saved as a checkpoint
let diverged: string; // an adapter with |w| = 1e30 (what --lr 1e30 saved)

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-model-checks-"));
  // The library flow of the issue: quantizeModel, attachLoRA, saveAdapter with no extra.quantizer.
  const { model } = loadLlama(TINY);
  await quantizeModel(model, rtnQuantizer, { bits: 4, groupSize: 64, measureError: false });
  q4 = join(tmp, "q4");
  saveQuantizedModel(model, q4, { sourceDir: TINY, plugin: rtnQuantizer });
  const a = attachLoRA(model, { targets: ["q_proj", "v_proj"], seed: 3 });
  T.noGrad(() => {
    let s = 1;
    for (const l of a.layers.values()) T.tidy(() => T.assign(l.loraB, T.randn(l.loraB.shape, { seed: s++, std: 0.02 })));
  });
  libraryAdapter = join(tmp, "library-adapter");
  saveAdapter(a, libraryAdapter, { baseModelNameOrPath: null });
  a.detach();
  model.dispose();

  const dense = loadLlama(TINY).model;
  const d = attachLoRA(dense, { targets: ["q_proj", "v_proj", "down_proj"] });
  T.noGrad(() => {
    for (const l of d.layers.values()) for (const p of [l.loraA, l.loraB]) T.tidy(() => T.assign(p, T.full(p.shape, 1e30)));
  });
  diverged = join(tmp, "diverged");
  saveAdapter(d, diverged, { baseModelNameOrPath: null });
  d.detach();
  dense.dispose();
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("the adapter's recorded base against --model", () => {
  it("the library flow records the quantizer, and eval refuses the full-precision base, naming both", () => {
    const meta = JSON.parse(readFileSync(join(libraryAdapter, "modulora.json"), "utf8")) as Record<string, unknown>;
    expect(meta["quantization"]).toEqual({ quantizer: "rtn", format: "affine", bits: 4, group_size: 64, symmetric: false, layers: 8 });
    const line = fails(["eval", "--model", TINY, "--adapter", libraryAdapter, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "1"],
      /adapter .*library-adapter was trained on a base that is rtn affine, 4-bit, group 64, asymmetric \(8 layers\), but --model .*tiny-llama is full precision — pass the --model the adapter was trained on/);
    expect(line).not.toContain("\n");
    fails(["generate", "--model", TINY, "--adapter", libraryAdapter, "--prompt", "hi"], /trained on a base that is rtn affine, 4-bit.*but --model .* is full precision/);
  });

  it("on the base it was trained on (the saved RTN checkpoint) it evaluates", () => {
    const r = cli(["eval", "--model", q4, "--adapter", libraryAdapter, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "1", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(Number.isFinite((JSON.parse(r.stdout) as { value: number }).value)).toBe(true);
  });

  it("another bit width is refused before loading, naming both", () => {
    const q2 = join(tmp, "q2");
    expect(cli(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "2", "--group-size", "64", "--out", q2]).code).toBe(0);
    fails(["eval", "--model", q2, "--adapter", libraryAdapter, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "1"],
      /trained on a base that is rtn affine, 4-bit, group 64, asymmetric \(8 layers\), but --model .*q2 is quantized \(gptq, 2-bit, group 64, rtn\)/);
  });

  it("an adapter trained on a full-precision base is refused on a quantized model", () => {
    fails(["eval", "--model", q4, "--adapter", diverged, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "1"],
      /adapter .*diverged was trained on a base that is full precision \(not quantized\), but --model .*q4 is quantized \(gptq, 4-bit, group 64, rtn\)/);
  });
});

describe("non-finite values never become a printed metric", () => {
  it("eval on an adapter with |w| = 1e30 fails (it printed \"value\": null with exit 0)", () => {
    fails(["eval", "--model", TINY, "--adapter", diverged, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "1", "--json"],
      /^modulora eval: ppl: evaluatePerplexity: the negative log-likelihood of window 0 is NaN: the model's outputs are not finite .* — check the model with modulora info/);
  });

  it("a NaN weight is refused at load, naming the tensor", () => {
    const dir = tinyCopy("nan-weights");
    const t = T.loadSafetensors(join(TINY, "model.safetensors"));
    const name = "model.layers.0.mlp.up_proj.weight";
    const w = new Float32Array(t.get(name)!.dataSync() as Float32Array);
    w[7] = NaN;
    t.get(name)!.dispose();
    t.set(name, T.tensor(w, [768, 256]));
    T.saveSafetensors(join(dir, "model.safetensors"), t);
    T.dispose([...t.values()]);
    fails(["eval", "--model", dir, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "1"],
      /tensor "model\.layers\.0\.mlp\.up_proj\.weight" holds NaN at element 7 \(1 of 196608 values are not finite\).* — restore the weights from the original model/);
  });
});

describe("config against weights, and context length, before loading", () => {
  it("num_hidden_layers 10000000 fails at once with the counts (it ran 51 s and 3 GB)", () => {
    const dir = tinyCopy("many-layers", { num_hidden_layers: 10_000_000 });
    fails(["eval", "--model", dir, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "1"],
      /config\.json num_hidden_layers is 10000000, but the weights hold blocks 0–3 \(4 layers\).* — the config\.json does not describe these weights/);
    fails(["info", dir], /num_hidden_layers is 10000000, but the weights hold blocks 0–3 \(4 layers\).* — restore the config\.json that came with the weights/);
  });

  it("a Mistral sliding_window 16 refuses --seq-len 64 (it computed full attention), naming the option", () => {
    const dir = tinyCopy("mistral", { architectures: ["MistralForCausalLM"], model_type: "mistral", sliding_window: 16 });
    fails(["eval", "--model", dir, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "1"],
      /--seq-len 64 is 64 tokens, longer than the model's context of 16 \(sliding_window 16 in config\.json: Mistral attends to the last 16 positions.*\) — lower --seq-len to 16 or less/);
    const r = cli(["eval", "--model", dir, "--data", LM, "--metric", "ppl", "--seq-len", "16", "--max-windows", "2", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const out = join(tmp, "never");
    fails(["finetune", "--model", dir, "--data", join(ROOT, "fixtures/data/spam/train.jsonl"), "--format", "classification", "--seq-len", "64", "--steps", "1", "--out", out],
      /--seq-len 64 is 64 tokens, longer than the model's context of 16 \(sliding_window 16 .* — lower --seq-len to 16 or less/);
    expect(existsSync(out)).toBe(false);
    fails(["generate", "--model", dir, "--prompt", "hello there", "--max-new-tokens", "64"], /the prompt \(\d+ tokens\) plus --max-new-tokens 64 is \d+ tokens, longer than the model's context of 16 .* — lower --max-new-tokens to \d+ or less/);
  });

  it("max_position_embeddings bounds --seq-len too", () => {
    const dir = tinyCopy("short-context", { max_position_embeddings: 32 });
    fails(["eval", "--model", dir, "--data", LM, "--metric", "ppl", "--seq-len", "64"], /--seq-len 64 is 64 tokens, longer than the model's context of 32 \(max_position_embeddings 32 in config\.json\) — lower --seq-len to 32 or less/);
  });

  it("a shard named ../x in the index is refused by the preflight with the loader's own message", () => {
    const dir = join(tmp, "sharded");
    mkdirSync(dir);
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) cpSync(join(TINY, f), join(dir, f));
    // the file exists outside the directory: the old preflight opened it, the loader refused it
    cpSync(join(TINY, "model.safetensors"), join(tmp, "outside.safetensors"));
    const names = Object.keys(JSON.parse(readFileSync(join(TINY, "model.safetensors")).subarray(8, 8 + Number(readFileSync(join(TINY, "model.safetensors")).readBigUInt64LE(0))).toString("utf8")) as object).filter((k) => k !== "__metadata__");
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: Object.fromEntries(names.map((n) => [n, "../outside.safetensors"])) }));
    const line = fails(["eval", "--model", dir, "--data", LM, "--metric", "ppl", "--seq-len", "64"], /model\.safetensors\.index\.json: tensor ".*" maps to "\.\.\/outside\.safetensors", which is not a file name in the directory/);
    expect(line).toMatch(/^modulora eval: model .*sharded: /); // the preflight, not "cannot load model" after opening the file
    fails(["info", dir], /maps to "\.\.\/outside\.safetensors", which is not a file name in the directory/);
  });
});

describe("modulora info", () => {
  it("escapes control characters in tensor names (they reached the terminal raw)", () => {
    const path = join(tmp, "evil.safetensors");
    T.saveSafetensors(path, new Map([["evil\u001b[2J\u001b[31mname\u202e", T.zeros([2])]]));
    const r = cli(["info", path]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("evil\\x1b[2J\\x1b[31mname\\u202e  f32 [2]");
    expect(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202e]/.test(r.stdout)).toBe(false);
    const j = cli(["info", path, "--json"]);
    expect((JSON.parse(j.stdout) as { list: { name: string }[] }).list[0]!.name).toBe("evil\u001b[2J\u001b[31mname\u202e");
  });
});
