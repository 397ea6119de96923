// The bundled throughput benchmark (dist/throughput.mjs, built by `pnpm build`) on the tiny shape:
// on the CPU and on `sim` for 1 warm-up + 2 steps, the structure of summary.json/summary.md,
// finite losses, no weight-sized upload while the model is built (sim counts every host → device
// byte), and the merge of a baseline's torch_baselines.json (a stand-in script). No timing is asserted.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const bundle = path.resolve(here, "../dist/throughput.mjs");
const addon = path.join(root, "kernels/build/Release/modulora_kernels.node");
const tmp = mkdtempSync(path.join(os.tmpdir(), "bench-throughput-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function run(args: string[]) {
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run "pnpm --filter @modulora/bench-throughput build" first`);
  const r = spawnSync(process.execPath, [bundle, ...args], {
    cwd: root, encoding: "utf8", timeout: 100_000,
    env: { ...process.env, MODULORA_KERNELS_ADDON: addon, MODULORA_NUM_THREADS: process.env["MODULORA_NUM_THREADS"] ?? "2" },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Row {
  config: string; shape: string; bits: number; batch: number; seq: number; checkpointing: boolean; card: string; device: string;
  tokens_per_s: number; step_s: number; step_times_s: number[]; losses: number[]; peak_gib: number; peak_bytes: number; weight_bytes: number;
  build_bytes_to_device: number | null; baselines: { name: string; tokens_per_s: number; peak_gib: number }[]; ratio_vs_torch_modulora: number | null;
  date: string; command: string; node: string; error?: string;
}

function summary(dir: string): Row[] {
  const rows = JSON.parse(readFileSync(path.join(dir, "summary.json"), "utf8")) as Row[];
  expect(Array.isArray(rows)).toBe(true);
  return rows;
}

function checkRows(rows: Row[], device: string): void {
  expect(rows.map((r) => r.config)).toEqual(["tiny-4-ckpt", "tiny-2"]);
  expect(rows.map((r) => [r.shape, r.bits, r.batch, r.seq, r.checkpointing])).toEqual([["tiny", 4, 2, 32, true], ["tiny", 2, 2, 32, false]]);
  for (const r of rows) {
    expect(r.error).toBeUndefined();
    expect(r.device).toBe(device);
    expect(r.card).toMatch(new RegExp(`^${device}: `));
    expect(r.losses).toHaveLength(3);
    for (const l of r.losses) {
      expect(Number.isFinite(l)).toBe(true);
      expect(Math.abs(l - Math.log(256))).toBeLessThan(0.5); // random weights: about uniform over the vocabulary
    }
    expect(r.step_times_s).toHaveLength(2);
    expect(r.step_s).toBe([...r.step_times_s].sort((a, b) => a - b)[1]);
    expect(r.tokens_per_s).toBeCloseTo(64 / r.step_s, 6);
    expect(r.peak_gib).toBeGreaterThan(0);
    expect(r.peak_bytes).toBeGreaterThanOrEqual(r.weight_bytes); // the peak counts the weights
    expect(r.baselines).toEqual([]);
    expect(r.ratio_vs_torch_modulora).toBeNull();
    expect(r.command).toContain("--configs tiny-4-ckpt,tiny-2");
    expect(Number.isNaN(Date.parse(r.date))).toBe(false);
    expect(r.node).toBe(process.version);
  }
}

const ARGS = ["--configs", "tiny-4-ckpt,tiny-2", "--warmup", "1", "--steps", "2", "--no-baseline"];

describe("throughput benchmark, tiny shape", () => {
  it("runs on the CPU and writes summary.json (an array) and summary.md", () => {
    const out = path.join(tmp, "cpu");
    const r = run(["--device", "cpu", "--out", out, ...ARGS]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    checkRows(summary(out), "cpu");
    const md = readFileSync(path.join(out, "summary.md"), "utf8");
    expect(md).toContain("| config | batch × seq | ckpt | tokens/s | peak GiB |");
    expect(md).toContain("| tiny-4-ckpt | 2 × 32 | yes |");
    expect(md).toContain("node benchmarks/throughput/dist/throughput.mjs --device cpu");
    // the short table comes last on stdout
    expect(r.stdout).toMatch(/config +tok\/s +peakGiB +torch +ratio\ntiny-4-ckpt +[\d,]+ /);
  });

  it("runs on sim with the CPU's losses, uploading (almost) nothing while the model is built", () => {
    const out = path.join(tmp, "sim");
    const r = run(["--device", "sim", "--out", out, ...ARGS]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const rows = summary(out);
    checkRows(rows, "sim");
    for (const row of rows) {
      expect(row.build_bytes_to_device).not.toBeNull();
      expect(row.build_bytes_to_device!).toBeLessThan(0.01 * row.weight_bytes);
    }
    const cpu = summary(path.join(tmp, "cpu"));
    expect(rows.map((x) => x.losses)).toEqual(cpu.map((x) => x.losses));
  });

  it("runs the baseline as a child with TORCH_BENCH_PLAN and OUT, and merges its rows", () => {
    const out = path.join(tmp, "baseline");
    const fake = path.join(tmp, "fake_bench.mjs");
    // A stand-in for torch_lora_bench.py, run by `--python node`: it records its environment and
    // writes torch_baselines.json as the real script does.
    writeFileSync(fake, `
import { writeFileSync } from "node:fs";
import { join } from "node:path";
console.log("plan=" + process.env.TORCH_BENCH_PLAN);
const row = (name, bits, tok_s) => ({ name, shape: "tiny", bits, B: 2, T: 32, step_s: 64 / tok_s, tok_s, peak_gib: 0.5, mfu_4N_vs_measured: 0 });
writeFileSync(join(process.env.OUT, "torch_baselines.json"), JSON.stringify({ ceiling_bf16_tflops: 790, ceiling_copy_tbps: 3.01, results: [
  row("hf-peft-lora", 16, 900), row("torch-modulora-ckpt", 4, 100), row("torch-modulora", 4, 200), row("torch-modulora", 2, 300), row("torch-modulora-ckpt", 2, 400),
] }));
`);
    const r = run(["--device", "cpu", "--out", out, "--configs", "tiny-4-ckpt,tiny-2", "--warmup", "1", "--steps", "2", "--python", process.execPath, "--baseline", fake, "--baseline-plan", "custom-7b-4-ckpt,peft-7b-16"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("plan=custom-7b-4-ckpt,peft-7b-16");
    expect(readFileSync(path.join(out, "torch_baseline.log"), "utf8")).toContain("plan=custom-7b-4-ckpt,peft-7b-16");
    const [ckpt, plain] = summary(out);
    expect(ckpt!.baselines.map((b) => [b.name, b.tokens_per_s])).toEqual([["hf-peft-lora", 900], ["torch-modulora-ckpt", 100]]);
    expect(plain!.baselines.map((b) => [b.name, b.tokens_per_s])).toEqual([["hf-peft-lora", 900], ["torch-modulora", 300]]);
    expect(ckpt!.ratio_vs_torch_modulora).toBeCloseTo(ckpt!.tokens_per_s / 100, 9);
    expect(plain!.ratio_vs_torch_modulora).toBeCloseTo(plain!.tokens_per_s / 300, 9);
    const md = readFileSync(path.join(out, "summary.md"), "utf8");
    expect(md).toContain("bf16 matmul 8192³ 790 TFLOP/s, device copy 3.01 TB/s");
  });

  it("refuses an unknown configuration", () => {
    const r = run(["--device", "cpu", "--out", path.join(tmp, "bad"), "--configs", "tiny-5", "--no-baseline"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("throughput: configuration 'tiny-5': bits must be 2, 3, 4, 8 or 16");
  });
});
