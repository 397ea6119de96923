// `--device sim` (issue 14): the simulated device runs the CPU kernels on storage JavaScript cannot
// reach and counts every host↔device transfer. A fine-tune there must log the same losses as on
// `cpu`, bit for bit, on a full-precision, an RTN and an OPTQ base, and each optimizer step may
// move only the batch in and the loss (with the gradient norm) out — nothing per parameter or per
// layer. Runs the built dist/cli.js in a child process, a few steps on tiny-llama.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSafetensors, saveSafetensors, type Tensor } from "@modulora/tensor";
import { LM, ROOT, TINY, runCli, runCliOk, type CliRun } from "./run-cli.js";

const CALIB = join(ROOT, "fixtures/data/lm/calib-small.txt");
/** tiny-llama's tensors: embed, 4 × (2 norms + 7 linears), norm, lm_head. */
const TINY_TENSORS = 39;

type Run = CliRun;
const SIM = { MODULORA_DEVICE_SIM: "1" };
const cli = (args: readonly string[], env: Record<string, string | undefined> = SIM): Run => runCli(args, { env });
const ok = (args: readonly string[]): Run => runCliOk(args, { env: SIM });

interface StepLine {
  step: number;
  loss: number | null;
  grad_norm: number | null;
}

interface RunJson {
  device: string;
  transfers?: {
    total: { hostToDevice: number; deviceToHost: number; synchronizations: number };
    steps: number;
    perStepMax: { hostToDevice: number; deviceToHost: number; synchronizations: number };
  };
}

let tmp: string;
let train: string;
let rtnBase: string;
let optqBase: string;
let oneLayer: string;

/** The logged training lines of a run, as written (the exact decimal strings of loss and norm). */
function loggedSteps(out: string): string[] {
  return readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => {
    const j = JSON.parse(l) as StepLine;
    return JSON.stringify({ step: j.step, loss: j.loss, grad_norm: j.grad_norm });
  });
}

const runJson = (out: string) => JSON.parse(readFileSync(join(out, "run.json"), "utf8")) as RunJson;

/** Fine-tunes `model` on cpu and on sim with the same flags; returns both output directories. */
function finetuneBoth(name: string, model: string, extra: readonly string[] = []): { cpu: string; sim: string; simRun: Run } {
  const args = (out: string, device: string) => [
    "finetune", "--model", model, "--data", train, "--format", "classification", "--out", out,
    "--steps", "3", "--batch-size", "2", "--seq-len", "32", "--rank", "4", "--device", device, ...extra,
  ];
  const cpu = join(tmp, `${name}-cpu`);
  const sim = join(tmp, `${name}-sim`);
  const cpuRun = ok(args(cpu, "cpu"));
  expect(cpuRun.stdout).not.toContain("sim transfers");
  const simRun = ok(args(sim, "sim"));
  return { cpu, sim, simRun };
}

/**
 * The per-step bound: per micro-batch the batch goes in (input ids and labels: 2 copies), and once
 * per optimizer step the summed loss comes out with the gradient norm (1 read, 1 sync). Nothing
 * else — no weight, no LoRA factor, no optimizer state — crosses in a step.
 */
function expectStepTransfers(r: RunJson, gradAccum = 1): void {
  expect(r.device).toBe("sim");
  expect(r.transfers!.steps).toBe(3);
  expect(r.transfers!.perStepMax).toEqual({ hostToDevice: 2 * gradAccum, deviceToHost: 1, synchronizations: 1 });
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-cli-device-"));
  const lines = readFileSync(join(ROOT, "fixtures/data/spam/train.jsonl"), "utf8").split("\n").filter((l) => l.trim());
  // Both labels (the file is sorted by label): every 20th line.
  train = join(tmp, "train.jsonl");
  writeFileSync(train, `${lines.filter((_, i) => i % 20 === 0).slice(0, 16).join("\n")}\n`);
  rtnBase = join(tmp, "rtn");
  ok(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", rtnBase]);
  optqBase = join(tmp, "optq");
  ok(["quantize", "--model", TINY, "--quantizer", "optq", "--bits", "4", "--calib", CALIB, "--calib-samples", "4", "--calib-seq-len", "32", "--out", optqBase]);
  // tiny-llama cut to its first block: the per-step counts must not depend on the depth.
  oneLayer = join(tmp, "tiny-1-layer");
  mkdirSync(oneLayer);
  const all = loadSafetensors(join(TINY, "model.safetensors"));
  const kept = new Map<string, Tensor>([...all].filter(([n]) => !/^model\.layers\.[1-9]\d*\./.test(n)));
  saveSafetensors(join(oneLayer, "model.safetensors"), kept);
  for (const t of all.values()) t.dispose();
  const config = JSON.parse(readFileSync(join(TINY, "config.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(join(oneLayer, "config.json"), JSON.stringify({ ...config, num_hidden_layers: 1 }));
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) copyFileSync(join(TINY, f), join(oneLayer, f));
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("--device sim", () => {
  it("is refused unless MODULORA_DEVICE_SIM=1, saying how to enable it; cuda is refused with the reason where the addon has no CUDA", () => {
    const r = cli(["finetune", "--model", TINY, "--data", train, "--format", "classification", "--out", join(tmp, "never"), "--device", "sim"], { MODULORA_DEVICE_SIM: undefined });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim()).toBe(
      "modulora finetune: --device sim is the simulated test device (the CPU kernels on private storage, counting host↔device transfers) and is off by default — set MODULORA_DEVICE_SIM=1 in the environment to use it, or use --device cpu",
    );
    const g = cli(["generate", "--model", TINY, "--prompt", "x", "--device", "sim"], { MODULORA_DEVICE_SIM: "0" });
    expect(g.code).toBe(1);
    expect(g.stderr).toMatch(/^modulora generate: --device sim .* set MODULORA_DEVICE_SIM=1/);
    const c = cli(["eval", "--model", TINY, "--data", LM, "--metric", "ppl", "--device", "cuda"]);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/^modulora eval: --device cuda: the CUDA backend is not available here: registering backend 'cuda' failed: (this build of @modulora\/kernels has no CUDA backend|the CUDA build of the addon sees no GPU).* — use --device cpu, or build @modulora\/kernels with CUDA/);
  });

  it("finetune, full-precision base: the same losses as cpu, bit for bit; 2 copies in and 1 out per step; the counts are printed", () => {
    const { cpu, sim, simRun } = finetuneBoth("fp", TINY);
    expect(loggedSteps(sim)).toEqual(loggedSteps(cpu));
    expect(loggedSteps(sim)).toHaveLength(3);
    const r = runJson(sim);
    expectStepTransfers(r);
    // In all: the weights once (one copy per tensor) and the batches; nothing else goes in.
    expect(r.transfers!.total.hostToDevice).toBe(TINY_TENSORS + 3 * 2);
    expect(simRun.stdout).toMatch(/^sim transfers: 45 host→device \([\d.]+ MiB\), \d+ device→host \([\d.]+ MiB\), \d+ synchronizations; per optimizer step \(at most, over 3 steps\): 2 host→device, 1 device→host, 1 synchronizations$/m);
    expect(runJson(cpu).device).toBe("cpu");
    expect(runJson(cpu).transfers).toBeUndefined();
  });

  it("finetune, RTN base (and gradient accumulation): the same losses as cpu; the loss is read once per optimizer step", () => {
    const { cpu, sim } = finetuneBoth("rtn", rtnBase, ["--grad-accum", "2"]);
    expect(loggedSteps(sim)).toEqual(loggedSteps(cpu));
    expectStepTransfers(runJson(sim), 2);
  });

  it("finetune, OPTQ base: the same losses as cpu", () => {
    const { cpu, sim } = finetuneBoth("optq", optqBase);
    expect(loggedSteps(sim)).toEqual(loggedSteps(cpu));
    expectStepTransfers(runJson(sim));
  });

  it("finetune quantizing on the fly (RTN on the device): the same losses as cpu", () => {
    const { cpu, sim } = finetuneBoth("fly", TINY, ["--quantizer", "rtn", "--bits", "4"]);
    expect(loggedSteps(sim)).toEqual(loggedSteps(cpu));
    expectStepTransfers(runJson(sim));
  });

  it("the per-step counts do not grow with the number of layers (1 block vs 4)", () => {
    const { cpu, sim } = finetuneBoth("one-layer", oneLayer);
    expect(loggedSteps(sim)).toEqual(loggedSteps(cpu));
    const r = runJson(sim);
    expect(r.transfers!.perStepMax).toEqual(runJson(join(tmp, "fp-sim")).transfers!.perStepMax);
    expect(r.transfers!.total.hostToDevice).toBe(1 + 9 + 1 + 1 + 3 * 2);
  });

  it("quantize --device sim (OPTQ: calibration statistics on the device) writes the same checkpoint as cpu", () => {
    const out = join(tmp, "optq-quantized-on-sim");
    const r = ok(["quantize", "--model", TINY, "--quantizer", "optq", "--bits", "4", "--calib", CALIB, "--calib-samples", "4", "--calib-seq-len", "32", "--out", out, "--device", "sim"]);
    expect(r.stderr).toMatch(/sim transfers: \d+ host→device/);
    expect(Buffer.compare(readFileSync(join(out, "model.safetensors")), readFileSync(join(optqBase, "model.safetensors")))).toBe(0);
  });

  it("eval (with and without an adapter) and generate on sim give what they give on cpu", () => {
    const ppl = (device: string) => JSON.parse(ok(["eval", "--model", rtnBase, "--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "2", "--json", "--device", device]).stdout) as Record<string, unknown>;
    expect(ppl("sim")).toEqual(ppl("cpu"));
    // With an adapter (loaded onto the device) trained above.
    const acc = (device: string) => JSON.parse(ok(["eval", "--model", TINY, "--adapter", join(tmp, "fp-sim"), "--data", train, "--metric", "accuracy", "--seq-len", "32", "--json", "--device", device]).stdout) as Record<string, unknown>;
    expect(acc("sim")).toEqual(acc("cpu"));
    const gen = (device: string) => ok(["generate", "--model", TINY, "--prompt", "The", "--max-new-tokens", "6", "--seed", "1", "--device", device]);
    const g = gen("sim");
    expect(g.stdout).toBe(gen("cpu").stdout);
    expect(g.stderr).toMatch(/sim transfers: 45 host→device .*, 6 device→host/);
  });
});
