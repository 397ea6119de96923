#!/usr/bin/env node
// Runs the CPU benchmarks one after the other from the tracked tree, each with the settings its
// committed results were produced with, and writes their results/*.json and *.md.
//
//   pnpm build && node benchmarks/run-cpu.mjs [finetune] [kernels] [sgemm attention cross-entropy block quant-matmul]
//
// With no argument it runs everything (finetune-cpu, then the five kernels-cpu benchmarks).
// Each benchmark records its own conditions and refuses to publish a figure from an untracked
// kernels build or a reference-BLAS baseline (see conditions.mjs). Stops at the first failure.
import { spawnSync } from "node:child_process";
import path from "node:path";

import { repoRoot } from "./conditions.mjs";

// [name, script, arguments]: the exact commands behind the committed results.
export const BENCHMARKS = [
  ["finetune", "benchmarks/finetune-cpu/finetune.mjs", ["--rounds", "5", "--steps", "6", "--warmup", "2", "--threads", "2"]],
  ["sgemm", "benchmarks/kernels-cpu/sgemm.mjs", ["--rounds", "7", "--threads", "1,2"]],
  ["attention", "benchmarks/kernels-cpu/attention.mjs", ["--rounds", "9", "--reps", "3"]],
  ["cross-entropy", "benchmarks/kernels-cpu/cross-entropy.mjs", ["--rounds", "7"]],
  ["block", "benchmarks/kernels-cpu/block.mjs", ["--batch", "8", "--seq", "128", "--rounds", "9"]],
  ["quant-matmul", "benchmarks/kernels-cpu/quant-matmul.mjs", ["--reps", "7"]],
];
const KERNELS = ["sgemm", "attention", "cross-entropy", "block", "quant-matmul"];

const wanted = process.argv.slice(2).flatMap((a) => (a === "kernels" ? KERNELS : [a]));
const unknown = wanted.filter((w) => !BENCHMARKS.some(([n]) => n === w));
if (unknown.length) {
  console.error(`run-cpu: unknown benchmark ${unknown.join(", ")} — choose from finetune, kernels, ${KERNELS.join(", ")}`);
  process.exit(1);
}
for (const [name, script, args] of BENCHMARKS) {
  if (wanted.length && !wanted.includes(name)) continue;
  console.log(`\n=== ${name}: node ${script} ${args.join(" ")}`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [path.join(repoRoot, script), ...args], { cwd: repoRoot, stdio: "inherit" });
  console.log(`=== ${name}: exit ${r.status}, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (r.status !== 0) process.exit(r.status ?? 1);
}
