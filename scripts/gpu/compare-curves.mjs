#!/usr/bin/env node
// Compares the loss curves of tiny-llama fine-tuned on the CPU and on the GPU (scripts/gpu/
// tiny-llama.sh): for each dtype, the per-step losses of `cpu-<dtype>.metrics.jsonl` and
// `cuda-<dtype>.metrics.jsonl` in DIR, the largest and mean relative difference, and whether the
// largest is within the dtype's tolerance (bf16: 2e-2, the rounding of bf16 activations compounded
// over 50 steps; f32: 2e-3). Writes DIR/curves.json and DIR/curves.md; exits 1 on a miss.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node scripts/gpu/compare-curves.mjs DIR");
  process.exit(1);
}
const TOLERANCE = { bf16: 2e-2, f32: 2e-3 };
const read = (f) => readFileSync(f, "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((r) => typeof r.loss === "number");
const out = [];
let ok = true;
for (const dtype of ["bf16", "f32"]) {
  const fc = join(dir, `cpu-${dtype}.metrics.jsonl`), fg = join(dir, `cuda-${dtype}.metrics.jsonl`);
  if (!existsSync(fc) || !existsSync(fg)) {
    out.push({ dtype, error: `missing ${existsSync(fc) ? fg : fc}` });
    ok = false;
    continue;
  }
  const cpu = read(fc), gpu = read(fg);
  const n = Math.min(cpu.length, gpu.length);
  let max = 0, sum = 0, worst = 0;
  const steps = [];
  for (let i = 0; i < n; i++) {
    const rel = Math.abs(gpu[i].loss - cpu[i].loss) / Math.abs(cpu[i].loss);
    steps.push({ step: cpu[i].step, cpu: cpu[i].loss, cuda: gpu[i].loss, rel });
    sum += rel;
    if (rel > max) (max = rel), (worst = cpu[i].step);
  }
  const passed = n === 50 && cpu.length === gpu.length && max <= TOLERANCE[dtype];
  ok &&= passed;
  out.push({ dtype, steps: n, maxRelDiff: max, worstStep: worst, meanRelDiff: sum / n, tolerance: TOLERANCE[dtype], passed, first: steps[0], last: steps[n - 1], curve: steps });
}
writeFileSync(join(dir, "curves.json"), JSON.stringify(out, null, 1) + "\n");
const md = ["| dtype | steps | first loss cpu / cuda | last loss cpu / cuda | max rel. diff (step) | mean rel. diff | tolerance | |", "|---|---|---|---|---|---|---|---|"];
for (const r of out) {
  if (r.error) md.push(`| ${r.dtype} | ${r.error} | | | | | | FAIL |`);
  else md.push(`| ${r.dtype} | ${r.steps} | ${r.first.cpu.toFixed(4)} / ${r.first.cuda.toFixed(4)} | ${r.last.cpu.toFixed(4)} / ${r.last.cuda.toFixed(4)} | ${r.maxRelDiff.toExponential(2)} (${r.worstStep}) | ${r.meanRelDiff.toExponential(2)} | ${r.tolerance} | ${r.passed ? "ok" : "FAIL"} |`);
}
writeFileSync(join(dir, "curves.md"), md.join("\n") + "\n");
console.log(md.join("\n"));
process.exit(ok ? 0 : 1);
