#!/usr/bin/env node
// Compares LoRA adapters trained by data-parallel runs with the single-process reference
// (scripts/gpu/data-parallel.sh): reads adapter_model.safetensors of REF and each OTHER with a
// plain safetensors reader (f32, bf16, f16, f64), and prints for each the largest absolute
// difference, the largest |value| of the reference and the relative Frobenius error
// ‖other − ref‖ / ‖ref‖, with the loss curves' largest relative difference. Exits 1 when one passes
// TOL (default 1e-2: bf16 compute; the data-parallel and accumulated steps differ only in the order
// of their reductions) or its tensors do not match the reference's names and shapes.
// Usage: node scripts/gpu/compare-adapters.mjs [--tol T] [--json FILE] REF OTHER...
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

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
  console.error("usage: node scripts/gpu/compare-adapters.mjs [--tol T] [--json FILE] REF OTHER...");
  process.exit(2);
}

function bf16(u) {
  const b = new Float32Array(new Uint32Array([u << 16]).buffer);
  return b[0];
}

/** name → { shape, values: Float64Array } from a .safetensors file. */
function readSafetensors(file) {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  const base = 8 + n;
  const out = new Map();
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [s, e] = info.data_offsets;
    const bytes = buf.subarray(base + s, base + e);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const size = { F32: 4, F64: 8, BF16: 2, F16: 2 }[info.dtype];
    if (!size) throw new Error(`${file}: ${name} has dtype ${info.dtype}, not a float`);
    const values = new Float64Array(bytes.byteLength / size);
    for (let i = 0; i < values.length; i++) {
      values[i] = info.dtype === "F32" ? dv.getFloat32(i * 4, true)
        : info.dtype === "F64" ? dv.getFloat64(i * 8, true)
        : info.dtype === "BF16" ? bf16(dv.getUint16(i * 2, true))
        : halfToFloat(dv.getUint16(i * 2, true));
    }
    out.set(name, { shape: info.shape, values });
  }
  return out;
}

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
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
