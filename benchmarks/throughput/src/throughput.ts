// The GPU throughput benchmark of issue 15: LoRA fine-tuning steps on LLaMA 7B/13B/65B shapes
// with random weights made on the device (frozen `affine` 2/4-bit bases, groups of 128, bf16
// compute, f32 LoRA r=8 on all seven linears, AdamW), with and without activation checkpointing;
// tokens/s of the median step and the allocator's peak; then the PyTorch baselines
// (../baselines/torch_lora_bench.py) in the same command, so every figure is a ratio on one card.
// See ../README.md for the command and the files it writes.
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import {
  AdamW, backward, getBackend, keep, memory, registerSimBackend, resetPeakMemory, resetSimStats, simStats, tensorFrom, tidy,
  type Device, type Tensor,
} from "@modulora/tensor";
import { cudaAddon } from "@modulora/kernels";
// The llama sources (not the package's dist) until @modulora/llama exports random-model.ts: the
// bundle then holds one copy of the model classes, which attachLoRA's dispatchers compare against.
import { attachLoRA, LINEAR_NAMES, randomCodesSource, randomLlama, type LlamaModel } from "@modulora/llama";
import { cardName, cudaIndex, cudaRuntime, isCuda, median, randomIds, SHAPES, type Config } from "./common.js";

export { SHAPES } from "./common.js";


/** The configurations run when --configs is not given: the torch-modulora rows of the baseline. */
const DEFAULT_CONFIGS = ["7b-4", "7b-4-ckpt", "7b-2-ckpt", "13b-4-ckpt", "65b-4-ckpt", "65b-2-ckpt"];

/** The plan entries of torch_lora_bench.py, by the names its TORCH_BENCH_PLAN takes. */
const TORCH_PLAN = new Set([
  "peft-7b-16", "peft-7b-16-ckpt", "custom-7b-16", "custom-7b-4", "custom-7b-4-ckpt", "custom-7b-2-ckpt", "custom-13b-4-ckpt", "custom-65b-4-ckpt", "custom-65b-2-ckpt",
]);

interface Args {
  device: Device;
  out: string;
  configs: string[];
  steps: number;
  warmup: number;
  batch: number | null;
  seq: number | null;
  seed: number;
  baseline: string | null;
  python: string;
  peft: boolean;
  /** TORCH_BENCH_PLAN given explicitly (--baseline-plan), instead of the entries matching the configurations. */
  baselinePlan: string[] | null;
}


/** One row of torch_baselines.json. */
interface TorchRow {
  name: string;
  shape: string;
  bits: number;
  B: number;
  T: number;
  step_s: number;
  tok_s: number;
  peak_gib: number;
}

/** What one configuration measured (the object of summary.json, before the baselines are added). */
interface Result {
  config: string;
  shape: string;
  bits: number;
  batch: number;
  seq: number;
  checkpointing: boolean;
  device: string;
  card: string;
  tokens_per_s: number | null;
  step_s: number | null;
  step_times_s: number[];
  losses: number[];
  peak_gib: number | null;
  /** `peak_gib` in bytes. */
  peak_bytes: number | null;
  peak_reserved_gib: number | null;
  weight_gib: number | null;
  /** Bytes of the frozen weights (packed codes, scales, zeros, embedding, head, norms). */
  weight_bytes: number | null;
  lora_parameters: number | null;
  build_s: number | null;
  /** On `sim`: host → device bytes while the model was built (random weights are made on the device). */
  build_bytes_to_device: number | null;
  codes_source: string;
  warmup: number;
  steps: number;
  error?: string;
  baselines: { name: string; tokens_per_s: number; peak_gib: number; step_s: number }[];
  ratio_vs_torch_modulora: number | null;
  ceiling_bf16_tflops: number | null;
  ceiling_copy_tbps: number | null;
  date: string;
  command: string;
  node: string;
  cuda_runtime: string | null;
}

const GIB = 2 ** 30;

function usage(): string {
  return [
    "usage: node benchmarks/throughput/dist/throughput.mjs --device cuda --out DIR [--configs 7b-4-ckpt,7b-4,...]",
    "       [--steps 6] [--warmup 2] [--batch B] [--seq T] [--seed 0]",
    "       [--baseline benchmarks/baselines/torch_lora_bench.py] [--python python3] [--no-baseline] [--no-peft] [--baseline-plan NAME,...]",
    `configs: SHAPE-BITS[-ckpt], SHAPE one of ${Object.keys(SHAPES).join(", ")}, BITS 2, 3, 4, 8 (affine, groups of 128) or 16 (dense bf16 base)`,
    `default configs: ${DEFAULT_CONFIGS.join(",")}`,
  ].join("\n");
}

function fail(message: string): never {
  process.stderr.write(`throughput: ${message}\n${usage()}\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const a: Args = {
    device: "cuda", out: "", configs: DEFAULT_CONFIGS, steps: 6, warmup: 2, batch: null, seq: null, seed: 0,
    baseline: path.resolve(here, "../../baselines/torch_lora_bench.py"), python: "python3", peft: true, baselinePlan: null,
  };
  const int = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isSafeInteger(n) || n < min) fail(`${flag} takes an integer >= ${min}, got ${v ?? "nothing"}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) fail(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--device": a.device = value(); break;
      case "--out": a.out = value(); break;
      case "--configs": a.configs = value().split(",").map((s) => s.trim()).filter(Boolean); break;
      case "--steps": a.steps = int(flag, argv[++i], 1); break;
      case "--warmup": a.warmup = int(flag, argv[++i], 0); break;
      case "--batch": a.batch = int(flag, argv[++i], 1); break;
      case "--seq": a.seq = int(flag, argv[++i], 2); break;
      case "--seed": a.seed = int(flag, argv[++i], 0); break;
      case "--baseline": a.baseline = path.resolve(value()); break;
      case "--python": a.python = value(); break;
      case "--no-baseline": a.baseline = null; break;
      case "--no-peft": a.peft = false; break;
      case "--baseline-plan": a.baselinePlan = value().split(",").map((s) => s.trim()).filter(Boolean); break;
      case "--help": case "-h": process.stdout.write(`${usage()}\n`); process.exit(0);
      // eslint-disable-next-line no-fallthrough
      default: fail(`unknown argument '${flag}'`);
    }
  }
  if (!a.out) fail("--out DIR is required");
  if (a.configs.length === 0) fail("--configs is empty");
  return a;
}

function parseConfig(name: string, args: Args): Config {
  const m = /^([a-z0-9]+)-(\d+)(-ckpt)?$/.exec(name);
  const shape = m?.[1];
  if (!m || !shape || !(shape in SHAPES)) fail(`unknown configuration '${name}'`);
  const bits = Number(m[2]);
  if (![2, 3, 4, 8, 16].includes(bits)) fail(`configuration '${name}': bits must be 2, 3, 4, 8 or 16`);
  const s = SHAPES[shape]!;
  return { name, shape, bits, checkpointing: !!m[3], batch: args.batch ?? s.batch, seq: args.seq ?? s.seq };
}

/** A small seeded generator for the token ids (xorshift32): B·T ids are the only upload per configuration. */




function synchronize(device: Device): void {
  getBackend(device).synchronize();
}

function emptyCache(device: Device): void {
  if (isCuda(device)) cudaAddon().emptyCache(cudaIndex(device));
}

/** Bytes held by the model's frozen weights (codes and metadata, embedding, head, norms). */
function weightBytes(model: LlamaModel): number {
  const b = (t: Tensor) => t.size * (t.dtype === "bf16" || t.dtype === "f16" ? 2 : t.dtype === "u8" || t.dtype === "i8" ? 1 : t.dtype === "f64" ? 8 : 4);
  let n = b(model.embedTokens) + b(model.norm) + model.lmHead.storageBytes();
  for (const l of model.layers) {
    n += b(l.inputNorm) + b(l.postAttentionNorm);
    for (const name of LINEAR_NAMES) n += l.linears[name].storageBytes();
  }
  return n;
}


/** Builds one configuration's model, runs warm-up + timed steps, frees everything. */
function runConfig(cfg: Config, args: Args, base: Omit<Result, "config" | "shape" | "bits" | "batch" | "seq" | "checkpointing" | "step_times_s" | "losses" | "baselines">): Result {
  const r: Result = { config: cfg.name, shape: cfg.shape, bits: cfg.bits, batch: cfg.batch, seq: cfg.seq, checkpointing: cfg.checkpointing, ...base, step_times_s: [], losses: [], baselines: [] };
  const device = args.device;
  let model: LlamaModel | null = null;
  let opt: AdamW | null = null;
  let ids: Tensor | null = null;
  const log = (s: string) => process.stdout.write(`[${cfg.name}] ${s}\n`);
  try {
    emptyCache(device);
    if (device === "sim") resetSimStats();
    const t0 = performance.now();
    const shape = SHAPES[cfg.shape]!;
    model = randomLlama({ ...shape, maxPositionEmbeddings: Math.max(4096, cfg.seq) }, { device, dtype: "bf16", bits: cfg.bits, groupSize: 128, seed: args.seed });
    const adapter = attachLoRA(model, { r: 8, alpha: 16, dropout: 0, seed: args.seed });
    synchronize(device);
    r.build_s = (performance.now() - t0) / 1000;
    if (device === "sim") r.build_bytes_to_device = simStats().bytesToDevice;
    r.weight_bytes = weightBytes(model);
    r.weight_gib = r.weight_bytes / GIB;
    const params = adapter.parameters();
    r.lora_parameters = params.reduce((s, p) => s + p.size, 0);
    log(`built in ${r.build_s.toFixed(1)} s: weights ${r.weight_gib.toFixed(2)} GiB, ${r.lora_parameters} LoRA parameters`);
    ids = keep(tensorFrom(randomIds(cfg.batch * cfg.seq, shape.vocabSize, args.seed), { shape: [cfg.batch, cfg.seq], dtype: "i32", device }));
    opt = new AdamW(params, { lr: 1e-4 });
    synchronize(device);
    // Like torch.cuda.reset_peak_memory_stats() before the steps: the peak includes the weights.
    resetPeakMemory(device); // the cuda backend's resetPeak: the allocator's peakInUse and peakReserved
    const times: number[] = [];
    for (let i = 0; i < args.warmup + args.steps; i++) {
      synchronize(device);
      const start = performance.now();
      const loss = tidy(() => {
        const l = model!.loss(ids!, ids!, { checkpointing: cfg.checkpointing, training: true });
        backward(l);
        return keep(l.detach());
      });
      opt.step();
      opt.zeroGrad();
      let value: number;
      try {
        value = loss.item(); // reads the loss: waits for the step
      } finally {
        loss.dispose();
      }
      synchronize(device);
      const s = (performance.now() - start) / 1000;
      times.push(s);
      r.losses.push(value);
      log(`${i < args.warmup ? "warm-up" : "step"} ${i + 1}: ${s.toFixed(3)} s, loss ${value.toFixed(4)}`);
    }
    r.step_times_s = times.slice(args.warmup);
    r.step_s = median(r.step_times_s);
    r.tokens_per_s = (cfg.batch * cfg.seq) / r.step_s;
    if (isCuda(device)) {
      // The caching allocator's counters (what cudaMemory(device) of @modulora/tensor reports).
      const s = cudaAddon().memory(cudaIndex(device));
      r.peak_bytes = s.peakInUse;
      r.peak_reserved_gib = s.peakReserved / GIB;
    } else {
      r.peak_bytes = memory(device).nativePeakBytes;
    }
    r.peak_gib = r.peak_bytes / GIB;
    log(`median ${r.step_s.toFixed(3)} s, ${Math.round(r.tokens_per_s)} tokens/s, peak ${r.peak_gib.toFixed(2)} GiB${r.peak_reserved_gib !== null ? ` (reserved ${r.peak_reserved_gib.toFixed(2)} GiB)` : ""}`);
  } catch (err) {
    r.error = err instanceof Error ? err.message : String(err);
    log(`failed: ${r.error}`);
  } finally {
    for (const free of [() => opt?.dispose(), () => ids?.dispose(), () => model?.dispose()]) {
      try {
        free();
      } catch {
        // already freed, or a failure half-way through building: nothing more to release
      }
    }
    try {
      synchronize(device);
      emptyCache(device);
    } catch {
      // the device is in an error state: the next configuration reports it
    }
  }
  return r;
}

/** The plan entries of the torch script that give the baselines of our configurations. */
function torchPlan(configs: Config[], peft: boolean): string[] {
  const names = new Set<string>();
  for (const c of configs) {
    const s = SHAPES[c.shape]!;
    if (c.batch !== s.batch || c.seq !== s.seq) continue; // the script's rows are at the default B × T only
    const own = `custom-${c.shape}-${c.bits}${c.checkpointing ? "-ckpt" : ""}`;
    if (TORCH_PLAN.has(own)) names.add(own);
    if (peft) for (const p of [`peft-${c.shape}-16`, `peft-${c.shape}-16-ckpt`]) if (TORCH_PLAN.has(p)) names.add(p);
  }
  return [...names];
}

interface TorchOutput {
  ceiling_bf16_tflops: number;
  ceiling_copy_tbps: number;
  results: TorchRow[];
}

/** Runs the torch script as a child (its output shown and kept in DIR/torch_baseline.log); null when it wrote no results. */
async function runBaseline(args: Args, plan: string[]): Promise<{ out: TorchOutput | null; note: string }> {
  const script = args.baseline!;
  if (!existsSync(script)) return { out: null, note: `the baseline script ${script} does not exist` };
  const log = createWriteStream(path.join(args.out, "torch_baseline.log"));
  const target = path.join(args.out, "torch_baselines.json");
  rmSync(target, { force: true }); // a file left by an earlier run must not pass for this one's
  process.stdout.write(`[baseline] ${args.python} ${script} with TORCH_BENCH_PLAN=${plan.join(",")}\n`);
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(args.python, [script], { env: { ...process.env, TORCH_BENCH_PLAN: plan.join(","), OUT: args.out }, stdio: ["ignore", "pipe", "pipe"] });
    const tee = (chunk: Buffer) => {
      log.write(chunk);
      process.stdout.write(chunk);
    };
    child.stdout.on("data", tee);
    child.stderr.on("data", tee);
    child.on("error", (err) => {
      tee(Buffer.from(`[baseline] could not start ${args.python}: ${err.message}\n`));
      resolve(null);
    });
    child.on("close", (c) => resolve(c));
  });
  await new Promise<void>((resolve) => log.end(resolve));
  if (!existsSync(target)) return { out: null, note: `the baseline exited with ${code} and wrote no ${target}` };
  const out = JSON.parse(readFileSync(target, "utf8")) as TorchOutput;
  return { out, note: code === 0 ? "" : `the baseline exited with ${code}` };
}

const fmt = (x: number | null, digits = 0) => (x === null || !Number.isFinite(x) ? "—" : x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }));

function markdown(results: Result[], torch: TorchOutput | null, note: string): string {
  const r0 = results[0]!;
  const lines = [
    "# LoRA fine-tuning throughput (issue 15)",
    "",
    `Card: **${r0.card}**. Date: ${r0.date}. Node ${r0.node}, CUDA runtime ${r0.cuda_runtime ?? "none"}.`,
    "",
    "LLaMA shapes with random weights made on the device; frozen `affine` base (groups of 128, integer zeros, f16 scales; bits 16: a dense bf16 base), bf16 compute,",
    `LoRA r=8 alpha 16 on all seven linears of every block (f32 factors), AdamW lr 1e-4, random token ids, ${r0.warmup} warm-up steps then the median of ${r0.steps} timed steps (each with a device synchronize before and after).`,
    "Peak = the caching allocator's peak bytes in use from before the first step (weights included), as torch's `max_memory_allocated`.",
    "",
    "| config | batch × seq | ckpt | tokens/s | peak GiB | reserved GiB | torch-modulora tokens/s | torch-modulora peak GiB | ratio | hf-peft (bf16 base) tokens/s |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const tm = r.baselines.find((b) => b.name.startsWith("torch-modulora"));
    const peft = r.baselines.filter((b) => b.name.startsWith("hf-peft")).map((b) => `${fmt(b.tokens_per_s)} (${b.name})`).join(", ") || "—";
    const ours = r.error ? `failed: ${r.error.slice(0, 80)}` : fmt(r.tokens_per_s);
    lines.push(`| ${r.config} | ${r.batch} × ${r.seq} | ${r.checkpointing ? "yes" : "no"} | ${ours} | ${fmt(r.peak_gib, 2)} | ${fmt(r.peak_reserved_gib, 2)} | ${tm ? fmt(tm.tokens_per_s) : "—"} | ${tm ? fmt(tm.peak_gib, 2) : "—"} | ${fmt(r.ratio_vs_torch_modulora, 2)} | ${peft} |`);
  }
  lines.push("", "ratio = our tokens/s ÷ torch-modulora's (same shape, bits, batch × seq and checkpointing), both measured in this command on this card.", "");
  if (torch) lines.push(`Ceilings measured by the torch script in the same command: bf16 matmul 8192³ ${fmt(torch.ceiling_bf16_tflops)} TFLOP/s, device copy ${fmt(torch.ceiling_copy_tbps, 2)} TB/s.`, "");
  if (note) lines.push(`Baseline: ${note}.`, "");
  lines.push("Command:", "", "```", r0.command, "```", "");
  lines.push(`Packed codes drawn by: ${r0.codes_source}.`, "");
  return lines.join("\n");
}

async function main(): Promise<void> {
  // The bundle runs from the tree: without an override, load the tree's addon.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const givenAddon = process.env["MODULORA_KERNELS_ADDON"];
  const treeAddon = path.resolve(here, "../../../kernels/build/Release/modulora_kernels.node");
  if (!process.env["MODULORA_KERNELS_ADDON"] && !process.env["MODULORA_KERNELS_PATH"] && existsSync(treeAddon)) process.env["MODULORA_KERNELS_ADDON"] = treeAddon;

  const args = parseArgs(process.argv.slice(2));
  const configs = args.configs.map((c) => parseConfig(c, args));
  if (args.device === "sim") registerSimBackend();
  mkdirSync(args.out, { recursive: true });
  const command = [...(givenAddon ? [`MODULORA_KERNELS_ADDON=${givenAddon}`] : []), "node", path.relative(process.cwd(), fileURLToPath(import.meta.url)) || fileURLToPath(import.meta.url), ...process.argv.slice(2)].join(" ");
  const date = new Date().toISOString();
  getBackend(args.device); // an unavailable device fails here, with the registry's reason
  const base = {
    device: args.device, card: cardName(args.device), tokens_per_s: null, step_s: null, peak_gib: null, peak_bytes: null, peak_reserved_gib: null, weight_gib: null, weight_bytes: null, lora_parameters: null,
    build_s: null, build_bytes_to_device: null, codes_source: randomCodesSource(), warmup: args.warmup, steps: args.steps, ratio_vs_torch_modulora: null,
    ceiling_bf16_tflops: null, ceiling_copy_tbps: null, date, command, node: process.version, cuda_runtime: cudaRuntime(),
  };
  const results = configs.map((c) => runConfig(c, args, base));

  let torch: TorchOutput | null = null;
  let note = "";
  if (args.baseline) {
    const plan = args.baselinePlan ?? torchPlan(configs, args.peft);
    if (plan.length === 0) note = "no configuration has a row in torch_lora_bench.py's plan: not run";
    else ({ out: torch, note } = await runBaseline(args, plan));
  } else {
    note = "not run (--no-baseline)";
  }
  if (torch) {
    for (const r of results) {
      r.ceiling_bf16_tflops = torch.ceiling_bf16_tflops;
      r.ceiling_copy_tbps = torch.ceiling_copy_tbps;
      const same = (t: TorchRow) => t.shape === r.shape && t.B === r.batch && t.T === r.seq;
      const rows = torch.results.filter((t) => same(t) && ((t.name === `torch-modulora${r.checkpointing ? "-ckpt" : ""}` && t.bits === r.bits) || t.name.startsWith("hf-peft")));
      r.baselines = rows.map((t) => ({ name: t.name, tokens_per_s: t.tok_s, peak_gib: t.peak_gib, step_s: t.step_s }));
      const tm = r.baselines.find((b) => b.name.startsWith("torch-modulora"));
      r.ratio_vs_torch_modulora = tm && r.tokens_per_s !== null ? r.tokens_per_s / tm.tokens_per_s : null;
    }
  }
  writeFileSync(path.join(args.out, "summary.json"), `${JSON.stringify(results, null, 1)}\n`);
  writeFileSync(path.join(args.out, "summary.md"), markdown(results, torch, note));

  if (note) process.stdout.write(`baseline: ${note}\n`);
  process.stdout.write(`wrote ${path.join(args.out, "summary.json")} and summary.md\n`);
  process.stdout.write(`\n${results[0]!.card}\n`);
  process.stdout.write(`${"config".padEnd(14)} ${"tok/s".padStart(9)} ${"peakGiB".padStart(8)} ${"torch".padStart(9)} ${"ratio".padStart(6)}\n`);
  for (const r of results) {
    const tm = r.baselines.find((b) => b.name.startsWith("torch-modulora"));
    process.stdout.write(`${r.config.padEnd(14)} ${(r.error ? "failed" : fmt(r.tokens_per_s)).padStart(9)} ${fmt(r.peak_gib, 2).padStart(8)} ${(tm ? fmt(tm.tokens_per_s) : "—").padStart(9)} ${fmt(r.ratio_vs_torch_modulora, 2).padStart(6)}\n`);
  }
  process.exitCode = results.some((r) => r.error) ? 1 : 0;
}

main().catch((err: unknown) => {
  process.stderr.write(`throughput: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
