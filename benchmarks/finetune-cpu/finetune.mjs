#!/usr/bin/env node
// LoRA fine-tuning throughput (tokens/s) and peak memory on a LLaMA fixture, ours and PyTorch's
// on the same CPU in the same command, alternated: in every round each base runs once as ours and
// once as PyTorch, each in its own process (so peak RSS is per process), and the order flips
// from one round to the next (AB BA AB ...), so a burst of load from other processes hits both.
// Per side and base: the median step time of `--steps` timed steps after `--warmup` warm-ups in
// that process gives one tokens/s figure per round; the table reports the median and the range
// over rounds, and the ratio ours / PyTorch over paired rounds (min, median, max).
//
// Refuses (exit 1, nothing written) when PyTorch's BLAS is not OpenBLAS/MKL/BLIS (see
// ../baselines/README.md) or when the kernels addon is not the tracked build.
//
//   node benchmarks/finetune-cpu/finetune.mjs [--model fixtures/tiny-llama] [--batch 8] [--seq 128]
//     [--rounds 5] [--steps 6] [--warmup 2] [--threads 2] [--bases f32,rtn4,rtn3,rtn2]
//     [--python /usr/bin/python3] [--out DIR]
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import {
  BenchmarkRefusal, conditionsMarkdown, fmtSpread, paired, probePython, repoRoot, requireOptimizedBlas, runBenchmark,
  spread, startConditions,
} from "../conditions.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const model = path.resolve(repoRoot, args.model ?? "fixtures/tiny-llama");
const B = args.batch ?? "8", T = args.seq ?? "128", steps = args.steps ?? "6", warmup = args.warmup ?? "2", threads = args.threads ?? "2";
const rounds = Number(args.rounds ?? 5);
const bases = (args.bases ?? "f32,rtn4,rtn3,rtn2").split(",");
const python = args.python ?? "/usr/bin/python3";
const outDir = path.resolve(args.out ?? path.join(here, "results"));
const torchScript = path.join(repoRoot, "benchmarks/baselines/torch_cpu_lora_bench.py");
// OMP_WAIT_POLICY=PASSIVE: PyTorch's OpenMP threads must not spin beside OpenBLAS's pthreads
// (see the baseline's docstring); it is set for our processes too, which use no OpenMP.
const env = {
  ...process.env, MODULORA_NUM_THREADS: threads, OMP_NUM_THREADS: threads, OPENBLAS_NUM_THREADS: threads, OMP_WAIT_POLICY: "PASSIVE",
};

function timed(cmd, argv) {
  const r = spawnSync("/usr/bin/time", ["-f", "MAXRSS_KB %M", cmd, ...argv], { env, encoding: "utf8", cwd: here, maxBuffer: 1 << 24 });
  const rss = Number(/MAXRSS_KB (\d+)/.exec(r.stderr)?.[1] ?? NaN);
  if (r.status !== 0) {
    const tail = r.stderr.replace(/MAXRSS_KB \d+\n?/, "").trim().split("\n").slice(-3).join(" ");
    throw new BenchmarkRefusal(`${path.basename(cmd)} ${path.basename(argv[0])} exited with ${r.status}: ${tail}`);
  }
  const lines = r.stdout.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  return { lines, peakRssMb: Math.round((rss / 1024) * 10) / 10 };
}

function ours(base) {
  const { lines, peakRssMb } = timed(process.execPath, ["step.mjs", model, base, B, T, steps, warmup]);
  return { ...lines[0], peak_rss_mb: peakRssMb };
}

function torch(base, check) {
  const { lines, peakRssMb } = timed(python, [torchScript, model, "--threads", threads, "--batch", B, "--seq", T, "--steps", steps, "--warmup", warmup, "--bases", base, ...(check ? ["--check"] : [])]);
  const probe = lines.find((l) => l.probe);
  requireOptimizedBlas(probe?.probe, "the PyTorch baseline");
  return { row: { ...lines.find((l) => l.system), peak_rss_mb: peakRssMb }, probe: probe.probe, env: probe.env, check: lines.find((l) => "check_max_abs_logit_diff_vs_hf" in l) };
}

await runBenchmark("finetune-cpu", async () => {
  // Checked before anything else: a reference-BLAS PyTorch never gets timed.
  const probe = requireOptimizedBlas(probePython(python, env), "the PyTorch baseline");
  const cond = startConditions({ threads: Number(threads) });
  const runs = Object.fromEntries(bases.map((b) => [b, []]));
  let check = null;
  for (let r = 0; r < rounds; r++) {
    for (const base of bases) {
      const oursFirst = r % 2 === 0;
      const pair = {};
      for (const side of oursFirst ? ["ours", "torch"] : ["torch", "ours"]) {
        if (side === "ours") pair.ours = ours(base);
        else {
          const t = torch(base, r === 0 && base === bases[0]);
          pair.torch = t.row;
          check ??= t.check ?? null;
        }
      }
      pair.order = oursFirst ? "ours, torch" : "torch, ours";
      runs[base].push(pair);
      console.log(`round ${r + 1}/${rounds} ${base.padEnd(5)} ours ${pair.ours.tok_s} tok/s, PyTorch ${pair.torch.tok_s} tok/s (${pair.order})`);
    }
  }
  const results = bases.map((base) => {
    const rs = runs[base];
    const p = paired(rs.map((x) => x.ours.tok_s), rs.map((x) => x.torch.tok_s), { higherIsBetter: true });
    return {
      base: rs[0].ours.base, rounds: rs.length,
      oursTokS: p.ours, torchTokS: p.baseline, ratio: p.ratio, ratiosByRound: p.ratios.map((x) => Math.round(x * 1000) / 1000),
      oursPeakRssMb: spread(rs.map((x) => x.ours.peak_rss_mb)), torchPeakRssMb: spread(rs.map((x) => x.torch.peak_rss_mb)),
      oursPeakTensorMb: spread(rs.map((x) => x.ours.peak_tensor_mb)), weightsMb: rs[0].ours.weights_mb,
      runs: rs,
    };
  });
  const conditions = cond.finish({ pytorch: probe, pytorchForwardCheck: check });
  const result = {
    benchmark: "finetune-cpu",
    setup: { model: path.relative(repoRoot, model), batch: Number(B), seq: Number(T), steps: Number(steps), warmup: Number(warmup), rounds, bases },
    conditions, results,
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, "finetune.json"), JSON.stringify(result, null, 2) + "\n");
  const md = markdown(result);
  writeFileSync(path.join(outDir, "finetune.md"), md);
  console.log(md);
});

function markdown({ setup, conditions, results }) {
  const r2 = (x) => x.toFixed(2);
  return `# LoRA fine-tuning step on ${path.basename(setup.model)}, CPU: ModuLoRA-TS vs PyTorch

Step: LoRA r = 8 on all 7 linear layers of every block, AdamW, batch ${setup.batch} × ${setup.seq} random tokens,
next-token cross-entropy. PyTorch: \`benchmarks/baselines/torch_cpu_lora_bench.py\`, the same step; its
quantized bases are dequantized on the fly in forward and backward (the ModuLoRA design in PyTorch).

Protocol: ${setup.rounds} rounds; in each, every base runs once as ours and once as PyTorch, each in a fresh
process, alternating which goes first (ABAB). One figure per process: tokens/s of its median step over
${setup.steps} timed steps after ${setup.warmup} warm-ups. Tokens/s columns: median over rounds (min–max).
Ratio = ours / PyTorch in the same round; min, median and max over the ${setup.rounds} paired rounds.
Peak RSS per process from \`/usr/bin/time\`, median over rounds.

| base | ours tokens/s | PyTorch tokens/s | ratio min | ratio median | ratio max | ours peak RSS MiB | PyTorch peak RSS MiB | ours peak tensor MiB | base linear weights MiB |
|---|---|---|---:|---:|---:|---:|---:|---:|---:|
${results.map((r) => `| ${r.base} | ${fmtSpread(r.oursTokS)} | ${fmtSpread(r.torchTokS)} | ${r2(r.ratio.min)} | **${r2(r.ratio.median)}** | ${r2(r.ratio.max)} | ${r.oursPeakRssMb.median.toFixed(0)} | ${r.torchPeakRssMb.median.toFixed(0)} | ${r.oursPeakTensorMb.median.toFixed(0)} | ${r.weightsMb} |`).join("\n")}

PyTorch's forward check against the fixture's reference logits (max |Δlogit|): ${conditions.pytorchForwardCheck ? conditions.pytorchForwardCheck.check_max_abs_logit_diff_vs_hf.toExponential(2) : "–"}.

${conditionsMarkdown(conditions, { "PyTorch baseline": conditions.pytorch }).join("\n")}`;
}
