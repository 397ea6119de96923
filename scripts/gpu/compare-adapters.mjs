#!/usr/bin/env node
// Compares LoRA adapters trained by data-parallel runs with the single-process reference
// (scripts/gpu/data-parallel.sh): reads adapter_model.safetensors of REF and each OTHER
// (@modulora/tensor's loadSafetensors; bundled as benchmarks/scaling/dist/compare-adapters.mjs for
// the GPU host), and prints for each the largest absolute
// difference, the largest |value| of the reference and the relative Frobenius error
// ‖other − ref‖ / ‖ref‖, with the loss curves' largest relative difference. Exits 1 when one passes
// TOL (default 1e-2: bf16 compute; the data-parallel and accumulated steps differ only in the order
// of their reductions) or its tensors do not match the reference's names and shapes.
// Usage: node benchmarks/scaling/dist/compare-adapters.mjs [--tol T] [--json FILE] REF OTHER...
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadSafetensors } from "@modulora/tensor";

const args = process.argv.slice(2);
let tol = 1e-2;
let jsonOut = null;
const dirs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--tol") tol = Number(args[++i]);
  else if (args[i] === "--json") jsonOut = args[++i];
  else dirs.push(args[i]);
}
if (dirs.length < 2 || !(tol > 0)) {
  console.error("usage: node benchmarks/scaling/dist/compare-adapters.mjs [--tol T] [--json FILE] REF OTHER...");
  process.exit(2);
}

/** name → { shape, values: Float64Array } from an adapter's .safetensors file. */
function readSafetensors(file) {
  const tensors = loadSafetensors(file);
  const out = new Map([...tensors].map(([name, t]) => [name, { shape: [...t.shape], values: t.toFloat64Array() }]));
  for (const t of tensors.values()) t.dispose();
  return out;
}

const losses = (dir) => {
  try {
    return readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => typeof m.loss === "number").map((m) => m.loss);
  } catch {
    return [];
  }
};

const ref = readSafetensors(join(dirs[0], "adapter_model.safetensors"));
const refLoss = losses(dirs[0]);
const rows = [];
let ok = true;
for (const dir of dirs.slice(1)) {
  let row;
  try {
    const other = readSafetensors(join(dir, "adapter_model.safetensors"));
    const names = [...ref.keys()].sort();
    if (JSON.stringify(names) !== JSON.stringify([...other.keys()].sort())) throw new Error("the tensor names differ from the reference's");
    let maxAbs = 0, scale = 0, num = 0, den = 0;
    for (const name of names) {
      const a = ref.get(name), b = other.get(name);
      if (JSON.stringify(a.shape) !== JSON.stringify(b.shape)) throw new Error(`${name}: shape [${b.shape}] against the reference's [${a.shape}]`);
      for (let i = 0; i < a.values.length; i++) {
        const d = b.values[i] - a.values[i];
        maxAbs = Math.max(maxAbs, Math.abs(d));
        scale = Math.max(scale, Math.abs(a.values[i]));
        num += d * d;
        den += a.values[i] * a.values[i];
      }
    }
    const rel = Math.sqrt(num / den);
    const l = losses(dir);
    const lossRel = l.length === refLoss.length && l.length ? Math.max(...l.map((x, i) => Math.abs(x - refLoss[i]) / Math.abs(refLoss[i]))) : null;
    const pass = Number.isFinite(rel) && rel <= tol;
    row = { dir, tensors: names.length, max_abs_diff: maxAbs, max_abs_ref: scale, rel_frobenius: rel, loss_max_rel_diff: lossRel, steps: l.length, pass };
  } catch (err) {
    row = { dir, error: err.message, pass: false };
  }
  ok &&= row.pass;
  rows.push(row);
  console.log(`${row.pass ? "ok  " : "FAIL"} ${dir}: ${row.error ?? `rel ${row.rel_frobenius.toExponential(3)} (tol ${tol}), max |Δ| ${row.max_abs_diff.toExponential(3)} of max |ref| ${row.max_abs_ref.toExponential(3)}, loss curves ${row.loss_max_rel_diff === null ? "—" : row.loss_max_rel_diff.toExponential(3)} over ${row.steps} steps`}`);
}
if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify({ reference: dirs[0], tolerance: tol, rows }, null, 1)}\n`);
process.exit(ok ? 0 : 1);
