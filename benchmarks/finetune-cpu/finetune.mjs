#!/usr/bin/env node
// LoRA fine-tuning throughput (tokens/s) and peak memory on a LLaMA fixture, ours and PyTorch's
// on the same CPU in the same run. Each configuration runs in its own process under
// /usr/bin/time so peak RSS is per process.
//   node finetune.mjs [--model fixtures/tiny-llama] [--batch 8] [--seq 128] [--steps 8] [--threads 2] [--python /usr/bin/python3]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const model = path.resolve(root, args.model ?? "fixtures/tiny-llama");
const B = args.batch ?? "8", T = args.seq ?? "128", steps = args.steps ?? "8", threads = args.threads ?? "2";
const python = args.python ?? "/usr/bin/python3";
const env = { ...process.env, MODULORA_NUM_THREADS: threads, OMP_NUM_THREADS: threads, OPENBLAS_NUM_THREADS: threads };

function timed(cmd, argv) {
  const r = spawnSync("/usr/bin/time", ["-f", "MAXRSS_KB %M", cmd, ...argv], { env, encoding: "utf8", cwd: here, maxBuffer: 1 << 24 });
  const rss = Number(/MAXRSS_KB (\d+)/.exec(r.stderr)?.[1] ?? NaN);
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  const lines = r.stdout.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  return { lines, peakRssMb: rss / 1024 };
}

const rows = [];
for (const base of ["f32", "rtn4", "rtn3", "rtn2"]) {
  const { lines, peakRssMb } = timed(process.execPath, ["step.mjs", model, base, B, T, steps]);
  rows.push({ ...lines[0], peak_rss_mb: Number(peakRssMb.toFixed(1)) });
  console.log(JSON.stringify(rows[rows.length - 1]));
}
let torch = null;
if (existsSync(python)) {
  try {
    const { lines, peakRssMb } = timed(python, [path.join(root, "benchmarks/baselines/torch_cpu_lora_bench.py"), model, threads, B, T]);
    torch = { check: lines[0], rows: lines.slice(1), peakRssMb };
    for (const r of torch.rows) console.log(JSON.stringify(r));
  } catch (e) {
    console.error(`PyTorch baseline not run: ${e.message.split("\n")[0]}`);
  }
}
const outDir = path.join(here, "results");
mkdirSync(outDir, { recursive: true });
const result = {
  command: `node benchmarks/finetune-cpu/finetune.mjs --model ${path.relative(root, model)} --batch ${B} --seq ${T} --steps ${steps} --threads ${threads}`,
  date: new Date().toISOString(), cpu: os.cpus()[0]?.model, threads: Number(threads), ours: rows, torch,
};
writeFileSync(path.join(outDir, "finetune.json"), JSON.stringify(result, null, 2) + "\n");
const tRow = (base) => torch?.rows.find((r) => r.base === base);
const md = `# LoRA fine-tuning step on ${path.basename(model)}, CPU: ModuLoRA-TS vs PyTorch

Command: \`${result.command}\` — ${result.date}, ${result.cpu}, ${threads} threads.
Step: LoRA r = 8 on all 7 linear layers of every block, AdamW, batch ${B} × ${T} random tokens,
next-token cross-entropy; median step of ${Number(steps) - 2} after 2 warm-ups. PyTorch: ${torch ? torch.rows[0]?.system : "not run"} with OpenBLAS
(\`benchmarks/baselines/torch_cpu_lora_bench.py\`, the same step; its quantized bases are dequantized
on the fly in forward and backward, the ModuLoRA design in PyTorch). Peak RSS per process from \`/usr/bin/time\`
(PyTorch runs its three configurations in one process, so its peak covers all three).

| base | ours tokens/s | PyTorch tokens/s | ours / PyTorch | ours peak RSS MiB | ours peak tensor memory MiB | base linear weights MiB |
|---|---|---|---|---|---|---|
${rows.map((r) => { const t = tRow(r.base); return `| ${r.base} | ${r.tok_s} | ${t ? t.tok_s : "–"} | ${t ? (r.tok_s / t.tok_s).toFixed(2) : "–"} | ${r.peak_rss_mb} | ${r.peak_tensor_mb} | ${r.weights_mb} |`; }).join("\n")}

PyTorch process peak RSS: ${torch ? torch.peakRssMb.toFixed(1) + " MiB" : "–"}; its forward check against the fixture's reference logits: ${torch ? JSON.stringify(torch.check) : "–"}.
The two cores are shared with other work; numbers are medians.
`;
writeFileSync(path.join(outDir, "finetune.md"), md);
console.log(md);
