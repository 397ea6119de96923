// `--dtype bf16|f32` (issue 14, item 5): a bf16 frozen base and bf16 activations, f32 LoRA factors
// and optimizer state. A bf16 fine-tune runs and logs losses near the f32 run's, records its dtype
// in run.json, writes an f32 adapter, and the same bf16 run on `sim` logs the same losses bit for
// bit; eval, generate and quantize take the flag; any other value is refused with the choices.
// Runs the built dist/cli.js in a child process, a few steps on tiny-llama.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SafetensorsReader } from "@modulora/tensor";
import { LM, ROOT, TINY, runCli, runCliOk } from "./run-cli.js";

const SIM = { env: { MODULORA_DEVICE_SIM: "1" } };
const cli = (args: readonly string[]) => runCli(args, SIM);
const ok = (args: readonly string[]) => runCliOk(args, SIM);

const losses = (out: string) => readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step?: number; loss?: number | null }).filter((j) => typeof j.loss === "number").map((j) => j.loss!);

let tmp: string;
let train: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-cli-dtype-"));
  const lines = readFileSync(join(ROOT, "fixtures/data/spam/train.jsonl"), "utf8").split("\n").filter((l) => l.trim());
  train = join(tmp, "train.jsonl");
  writeFileSync(train, `${lines.filter((_, i) => i % 20 === 0).slice(0, 16).join("\n")}\n`);
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const finetune = (out: string, extra: readonly string[], model = TINY) => ok([
  "finetune", "--model", model, "--data", train, "--format", "classification", "--out", out,
  "--steps", "4", "--batch-size", "2", "--seq-len", "32", "--rank", "4", ...extra,
]);

describe("--dtype", () => {
  it("finetune --dtype bf16 tracks f32, records the dtype, writes f32 LoRA factors; sim = cpu bit for bit", () => {
    const f = join(tmp, "f32");
    const h = join(tmp, "bf16");
    const s = join(tmp, "bf16-sim");
    finetune(f, []);
    finetune(h, ["--dtype", "bf16"]);
    finetune(s, ["--dtype", "bf16", "--device", "sim"]);
    const lf = losses(f);
    const lh = losses(h);
    expect(lh).toHaveLength(4);
    // A few steps of bf16 rounding (see packages/llama/test/bf16.test.ts for the 50-step bound).
    lf.forEach((l, i) => expect(Math.abs(lh[i]! - l), `step ${i + 1}`).toBeLessThanOrEqual(8 * 2 ** -8 * l));
    expect(lh).not.toEqual(lf);
    expect(losses(s)).toEqual(lh);
    const run = (dir: string) => JSON.parse(readFileSync(join(dir, "run.json"), "utf8")) as { dtype: string; device: string };
    expect(run(f).dtype).toBe("f32");
    expect(run(h)).toMatchObject({ dtype: "bf16", device: "cpu" });
    const reader = SafetensorsReader.open(join(h, "adapter_model.safetensors"));
    try {
      const dtypes = new Set(reader.names().map((n) => reader.entry(n).dtype));
      expect([...dtypes]).toEqual(["f32"]);
    } finally {
      reader.close();
    }
  });

  it("eval, generate and quantize run with --dtype bf16", () => {
    const ppl = (extra: string[]) => JSON.parse(ok(["eval", "--model", TINY, "--data", LM, "--metric", "ppl", "--seq-len", "32", "--max-windows", "2", "--json", ...extra]).stdout) as { nll: number };
    const nf = ppl([]).nll;
    const nh = ppl(["--dtype", "bf16"]).nll;
    // A mean over 62 tokens of f32 cross-entropies of bf16 logits: well inside a few u relative.
    expect(Math.abs(nh - nf)).toBeLessThanOrEqual(4 * 2 ** -8 * nf);
    expect(nh).not.toBe(nf);
    expect(ok(["generate", "--model", TINY, "--prompt", "The quick brown", "--max-new-tokens", "4", "--dtype", "bf16"]).stdout.length).toBeGreaterThan(0);
    const q = join(tmp, "rtn-bf16");
    ok(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", q, "--dtype", "bf16"]);
    // An RTN base (quantized from the bf16 weights) under bf16 activations trains.
    const ft = join(tmp, "rtn-bf16-ft");
    finetune(ft, ["--dtype", "bf16"], q);
    const l = losses(ft);
    expect(l).toHaveLength(4);
    for (const x of l) expect(Number.isFinite(x)).toBe(true);
  });

  it("--dtype f16 is refused, naming the flag and the choices", () => {
    for (const cmd of [["finetune", "--model", TINY, "--data", train, "--format", "classification", "--out", join(tmp, "never")], ["eval", "--model", TINY, "--data", LM, "--metric", "ppl"], ["generate", "--model", TINY, "--prompt", "x"]]) {
      const r = cli([...cmd, "--dtype", "f16"]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/--dtype must be one of f32, bf16, got "f16"/);
    }
  });
});
