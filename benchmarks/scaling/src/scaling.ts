// The data-parallel scaling benchmark of issue 20: LoRA fine-tuning steps through the Trainer on
// LLaMA shapes with random frozen 2/4-bit bases (as ../../throughput does), on 1 GPU without data
// parallel (the reference) and on N = 1, 2, 4, 8 GPUs with the Trainer's dataParallel over NCCL,
// one process per GPU started by spawnLocalRanks. Tokens/s is the global tokens of a step over the
// median step time; the scaling efficiency is tokens/s(N) / (N × tokens/s of the reference).
// See ../README.md for the command and the files it writes.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Trainer, type Batch, type DataSource } from "@modulora/core";
import { dataParallel, NcclCommunicator, resolveLaunch, spawnLocalRanks, TcpCommunicator, type Communicator } from "@modulora/distributed";
import { cudaAddon, cudaInfo, ncclInfo } from "@modulora/kernels";
import { attachLoRA, randomLlama } from "@modulora/llama";
import { getBackend, tensorFrom, tidy, type Device } from "@modulora/tensor";
import { cardName, cudaIndex, cudaRuntime, isCuda, median, randomIds, SHAPES, type Config } from "../../throughput/src/common.js";

const GIB = 2 ** 30;
const RANK_ENV = "MODULORA_SCALING_RUN";


/** What one run (one world size, or the reference) measured; rank 0's figures. */
interface Row {
  config: string;
  mode: "reference" | "data-parallel";
  world: number;
  backend: string | null;
  tokens_per_step: number;
  step_s: number | null;
  tokens_per_s: number | null;
  efficiency: number | null;
  peak_gib: number | null;
  step_times_s: number[];
  losses: number[];
  error?: string;
}

interface Args {
  device: "cuda" | "cpu";
  configs: Config[];
  worlds: number[];
  steps: number;
  warmup: number;
  backend: "nccl" | "tcp";
  out: string;
  seed: number;
}

function usage(): string {
  return "usage: node dist/scaling.mjs [--device cuda|cpu] [--configs 7b-4-ckpt,65b-2-ckpt] [--devices 1,2,4,8] [--steps 6] [--warmup 2] [--backend nccl|tcp] [--seed 0] --out DIR\n";
}

function fail(message: string): never {
  process.stderr.write(`scaling: ${message}\n${usage()}`);
  process.exit(2);
}

function parseConfig(name: string): Config {
  const m = /^(tiny|7b|13b|65b)-([24])(-ckpt)?$/.exec(name);
  if (!m) fail(`unknown configuration '${name}': use <tiny|7b|13b|65b>-<2|4>[-ckpt]`);
  const shape = SHAPES[m[1]!]!;
  return { name, shape: m[1]!, bits: Number(m[2]), checkpointing: !!m[3], batch: shape.batch, seq: shape.seq };
}

function parseArgs(argv: string[]): Args {
  const a: Args = { device: "cuda", configs: [], worlds: [1, 2, 4, 8], steps: 6, warmup: 2, backend: "nccl", out: "", seed: 0 };
  let configs = "7b-4-ckpt,65b-2-ckpt";
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => argv[++i] ?? fail(`${flag} needs a value`);
    const int = (v: string) => (/^[1-9]\d*$/.test(v) ? Number(v) : fail(`${flag} must be a positive integer, got '${v}'`));
    if (flag === "--device") { const v = value(); if (v !== "cuda" && v !== "cpu") fail("--device is cuda or cpu"); a.device = v; }
    else if (flag === "--configs") configs = value();
    else if (flag === "--devices") a.worlds = value().split(",").map(int);
    else if (flag === "--steps") a.steps = int(value());
    else if (flag === "--warmup") a.warmup = Number(value());
    else if (flag === "--backend") { const v = value(); if (v !== "nccl" && v !== "tcp") fail("--backend is nccl or tcp"); a.backend = v; }
    else if (flag === "--seed") a.seed = int(value());
    else if (flag === "--out") a.out = value();
    else fail(`unknown flag ${flag}`);
  }
  if (!a.out) fail("--out DIR is required");
  if (!Number.isInteger(a.warmup) || a.warmup < 0) fail("--warmup must be a non-negative integer");
  a.configs = configs.split(",").map(parseConfig);
  if (a.device === "cpu" && a.backend === "nccl") a.backend = "tcp";
  return a;
}

/** What a rank process is told to run (through the environment). */
interface RankJob {
  config: Config;
  dataParallel: boolean;
  backend: "nccl" | "tcp";
  device: "cuda" | "cpu";
  steps: number;
  warmup: number;
  seed: number;
}

/** The communicator of a rank: NCCL on its GPU, or TCP. */
async function connect(job: RankJob, launch: ReturnType<typeof resolveLaunch>, device: Device): Promise<Communicator> {
  const common = { rank: launch.rank, worldSize: launch.worldSize, masterAddr: launch.masterAddr, masterPort: launch.masterPort, timeoutMs: 600_000 };
  if (job.backend === "tcp") return TcpCommunicator.connect(common);
  return NcclCommunicator.connect({ ...common, device });
}

/** One rank: builds the model, trains warmup + steps through the Trainer, prints rank 0's figures. */
async function rankMain(job: RankJob): Promise<void> {
  const launch = resolveLaunch();
  const device: Device = job.device === "cuda" ? `cuda:${launch.localRank}` : "cpu";
  getBackend(device);
  const cfg = job.config;
  const shape = SHAPES[cfg.shape]!;
  const comm = job.dataParallel ? await connect(job, launch, device) : null;
  const model = randomLlama({ ...shape, maxPositionEmbeddings: Math.max(4096, cfg.seq) }, { device, dtype: "bf16", bits: cfg.bits, groupSize: 128, seed: job.seed });
  const adapter = attachLoRA(model, { r: 8, alpha: 16, dropout: 0, seed: job.seed });
  const parameters = new Map([...adapter.layers].flatMap(([name, l]) => [[`${name}.lora_A`, l.loraA], [`${name}.lora_B`, l.loraB]] as const));
  interface IdBatch extends Batch { ids: Int32Array }
  const n = cfg.batch * cfg.seq;
  const data: DataSource<IdBatch> = {
    length: 1_000_000,
    *epoch(epoch, start) {
      for (let i = start; i < 1_000_000; i++) yield { ids: randomIds(n, shape.vocabSize, job.seed + 7919 * i + 104729 * epoch), tokens: n };
    },
  };
  const marks: number[] = [];
  const losses: number[] = [];
  if (isCuda(device)) cudaAddon().resetPeak(cudaIndex(device));
  const trainer = new Trainer<IdBatch>({
    parameters,
    dtype: "bf16",
    loss: (b) => tidy(() => {
      const ids = tensorFrom(b.ids, { shape: [cfg.batch, cfg.seq], dtype: "i32", device });
      return model.loss(ids, ids, { checkpointing: cfg.checkpointing, training: true });
    }),
    data,
    steps: job.warmup + job.steps,
    lr: 1e-4,
    seed: job.seed,
    handleSigint: false,
    ...(comm ? { dataParallel: dataParallel(comm) } : {}),
    onEvent: (e) => {
      if (e.type === "start") marks.push(performance.now());
      if (e.type === "step") {
        marks.push(performance.now());
        losses.push(e.loss);
      }
    },
  });
  try {
    await trainer.fit();
  } finally {
    trainer.dispose();
    model.dispose();
    await comm?.close();
  }
  const times = marks.slice(1).map((t, i) => (t - marks[i]!) / 1000);
  const peak = isCuda(device) ? cudaAddon().memory(cudaIndex(device)).peakInUse / GIB : null;
  if (launch.rank === 0) process.stdout.write(`SCALING ${JSON.stringify({ times: times.slice(job.warmup), losses, peak })}\n`);
}

async function runOne(args: Args, cfg: Config, world: number, dp: boolean, self: string): Promise<Row> {
  const tokensPerStep = world * cfg.batch * cfg.seq;
  const row: Row = { config: cfg.name, mode: dp ? "data-parallel" : "reference", world, backend: dp ? args.backend : null, tokens_per_step: tokensPerStep, step_s: null, tokens_per_s: null, efficiency: null, peak_gib: null, step_times_s: [], losses: [] };
  const job: RankJob = { config: cfg, dataParallel: dp, backend: args.backend, device: args.device, steps: args.steps, warmup: args.warmup, seed: args.seed };
  let result: { times: number[]; losses: number[]; peak: number | null } | null = null;
  const label = `${cfg.name} ${dp ? `dp ×${world}` : "reference"}`;
  const tail: string[] = [];
  try {
    await spawnLocalRanks(world, [process.execPath, self], {
      env: { [RANK_ENV]: JSON.stringify(job) },
      onLine: (rank, stream, line) => {
        if (line.startsWith("SCALING ")) result = JSON.parse(line.slice(8));
        else if (stream === "stderr") { tail.push(`[rank ${rank}] ${line}`); if (tail.length > 20) tail.shift(); }
      },
    });
  } catch (err) {
    row.error = `${(err as Error).message}${tail.length ? `\n${tail.join("\n")}` : ""}`;
  }
  if (result) {
    const r = result as { times: number[]; losses: number[]; peak: number | null };
    row.step_times_s = r.times;
    row.losses = r.losses;
    row.step_s = median(r.times);
    row.tokens_per_s = tokensPerStep / row.step_s;
    row.peak_gib = r.peak;
  } else row.error ??= "rank 0 printed no result";
  process.stdout.write(`[${label}] ${row.error ? `failed: ${row.error}` : `median step ${row.step_s!.toFixed(3)} s, ${Math.round(row.tokens_per_s!)} tokens/s, peak ${row.peak_gib?.toFixed(2) ?? "—"} GiB`}\n`);
  return row;
}

const fmt = (v: number | null, d = 0) => (v === null ? "—" : v.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }));

function markdown(rows: Row[], meta: Record<string, unknown>): string {
  const lines = [
    `# Data-parallel scaling (${meta["card"]} × ${meta["gpus"]})`,
    "",
    `Command: \`${meta["command"]}\` (${meta["date"]}). Node ${meta["node"]}, CUDA runtime ${meta["cuda_runtime"] ?? "—"}, NCCL ${meta["nccl"] ?? "—"}, NCCL_NVLS_ENABLE=${meta["nccl_nvls_enable"]}.`,
    "",
    "Random frozen bases (affine codes, groups of 128, bf16 compute), LoRA r=8 alpha 16 on all seven linears (f32 factors), AdamW through the Trainer, one process per GPU;",
    `each rank computes one micro-batch of the shape's batch × seq per step; ${meta["warmup"]} warm-up steps, then the median of ${meta["steps"]} steps.`,
    "Efficiency = tokens/s(N) / (N × tokens/s of the reference: one GPU, no data parallel).",
    "",
    "| config | mode | GPUs | backend | tokens/step | step s | tokens/s | efficiency | peak GiB (rank 0) |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    lines.push(`| ${r.config} | ${r.mode} | ${r.world} | ${r.backend ?? "—"} | ${r.tokens_per_step} | ${r.error ? "failed" : fmt(r.step_s, 3)} | ${fmt(r.tokens_per_s)} | ${fmt(r.efficiency, 3)} | ${fmt(r.peak_gib, 2)} |`);
  }
  const failed = rows.filter((r) => r.error);
  if (failed.length) lines.push("", ...failed.map((r) => `- ${r.config} ×${r.world} failed: ${r.error!.split("\n")[0]}`));
  return `${lines.join("\n")}\n`;
}

async function main(): Promise<void> {
  const job = process.env[RANK_ENV];
  if (job) return rankMain(JSON.parse(job) as RankJob);
  const self = fileURLToPath(import.meta.url);
  // The bundle runs from the tree: without an override, the tree's addon (the ranks inherit the variable).
  const treeAddon = path.resolve(path.dirname(self), "../../../kernels/build/Release/modulora_kernels.node");
  if (!process.env["MODULORA_KERNELS_ADDON"] && !process.env["MODULORA_KERNELS_PATH"] && existsSync(treeAddon)) process.env["MODULORA_KERNELS_ADDON"] = treeAddon;
  const args = parseArgs(process.argv.slice(2));
  mkdirSync(args.out, { recursive: true });
  const gpus = args.device === "cuda" ? cudaInfo().devices.length : Infinity;
  if (args.device === "cuda" && gpus === 0) fail(`no CUDA device: ${cudaInfo().reason ?? "unknown reason"}`);
  const nccl = ncclInfo();
  const meta = {
    card: args.device === "cuda" ? cardName("cuda:0") : cardName("cpu"), gpus: args.device === "cuda" ? gpus : "CPU processes",
    command: ["node", path.relative(process.cwd(), self) || self, ...process.argv.slice(2)].join(" "), date: new Date().toISOString(), node: process.version,
    cuda_runtime: args.device === "cuda" ? cudaRuntime() : null, nccl: nccl.available ? nccl.version : null, nccl_nvls_enable: process.env["NCCL_NVLS_ENABLE"] ?? "unset (0 in the ranks)",
    warmup: args.warmup, steps: args.steps, skipped: [] as string[],
  };
  const rows: Row[] = [];
  for (const cfg of args.configs) {
    const ref = await runOne(args, cfg, 1, false, self);
    rows.push(ref);
    for (const w of args.worlds) {
      if (w > gpus) {
        meta.skipped.push(`${cfg.name} ×${w}: this host has ${gpus} GPUs`);
        continue;
      }
      const r = await runOne(args, cfg, w, true, self);
      if (r.tokens_per_s !== null && ref.tokens_per_s !== null) r.efficiency = r.tokens_per_s / (w * ref.tokens_per_s);
      rows.push(r);
    }
  }
  writeFileSync(path.join(args.out, "summary.json"), `${JSON.stringify({ ...meta, rows }, null, 1)}\n`);
  writeFileSync(path.join(args.out, "summary.md"), markdown(rows, meta) + (meta.skipped.length ? `\nNot run: ${meta.skipped.join("; ")}.\n` : ""));
  process.stdout.write(`\n${meta.card} × ${meta.gpus}\n${"config".padEnd(12)} ${"mode".padEnd(14)} ${"GPUs".padStart(4)} ${"tok/s".padStart(9)} ${"eff".padStart(6)}\n`);
  for (const r of rows) process.stdout.write(`${r.config.padEnd(12)} ${r.mode.padEnd(14)} ${String(r.world).padStart(4)} ${(r.error ? "failed" : fmt(r.tokens_per_s)).padStart(9)} ${fmt(r.efficiency, 3).padStart(6)}\n`);
  process.exitCode = rows.some((r) => r.error) ? 1 : 0;
}

main().catch((err: unknown) => {
  process.stderr.write(`scaling: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
