#!/usr/bin/env node
// Fused dequantize-matmul of @modulora/kernels (affine 2/3/4-bit, group 128; NF4-style 4-bit
// codebook with double-quantized absmax, block 64) at LLaMA-like shapes, forward (Y = X Ŵᵀ) and
// input gradient (dX = dY Ŵ), against
//   (a) dequantize-then-dense: the whole Ŵ dequantized natively into an f32 matrix allocated once,
//       then SGEMM; timed as dequantize + gemm (the dequantize alone is reported too);
//   (t) row tiles: 256 rows of Ŵ dequantized into one reused buffer, then SGEMM into that slice
//       of the result (the simple alternative to the fused kernel, driven from JS);
//   (b) dense SGEMM on an f32 weight alone: the floor.
// Times are medians of several calls after a warm-up; the methods of one shape and pass are
// interleaved call by call (rotating order), and ratios ("x dense") are taken within a repetition
// and summarised by their median and range over repetitions. Memory: the native scratch a method needs,
// measured in a fresh child process per method (thread caches start empty there), plus the f32
// matrices it allocates in JS.
//
// The conditions (../conditions.mjs) are recorded; the addon must be the tracked build
// (kernels/build/Release; MODULORA_KERNELS_PATH is refused).
//
// usage: node benchmarks/kernels-cpu/quant-matmul.mjs [--reps N] [--quick] [--out DIR]
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as K from "@modulora/kernels";

import { BUSY_IDLE_SHARE, conditionsMarkdown, median, runBenchmark, spread, startConditions } from "../conditions.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);

if (typeof K.affineMatmul !== "function" || typeof K.native().affineMatmul !== "function") {
  throw new Error("quant-matmul.mjs: this @modulora/kernels build has no quantized matmul; rebuild it (pnpm --filter @modulora/kernels build)");
}

// ---- shapes and formats -------------------------------------------------------------------------

// [label, M tokens, in, out]
const SHAPES_FULL = [
  ["tiny-llama up [256 -> 768]", 1024, 256, 768],
  ["tiny-llama down [768 -> 256]", 1024, 768, 256],
  ["7B-like [4096 -> 4096]", 512, 4096, 4096],
];
const SHAPES_QUICK = [SHAPES_FULL[0], ["[2048 -> 2048]", 256, 2048, 2048]];

const FORMATS = [
  { label: "affine 2-bit g128", kind: "affine", bits: 2 },
  { label: "affine 3-bit g128", kind: "affine", bits: 3 },
  { label: "affine 4-bit g128", kind: "affine", bits: 4 },
  { label: "codebook 4-bit b64 dq", kind: "codebook", bits: 4 },
];

// ---- helpers ------------------------------------------------------------------------------------

function parseArgs(argv) {
  const o = { reps: 7, quick: false, out: path.join(here, "results"), probe: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--reps") o.reps = Number(argv[++i]);
    else if (a === "--quick") o.quick = true;
    else if (a === "--out") o.out = path.resolve(argv[++i]);
    else if (a === "--probe") o.probe = JSON.parse(argv[++i]);
    else throw new Error(`quant-matmul.mjs: unknown option ${a}`);
  }
  if (o.quick) o.reps = Math.min(o.reps, 3);
  return o;
}

const round = (x, d = 1) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);
const MiB = (b) => b / 2 ** 20;

function lcg(seed) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
}
function randomF32(n, seed) {
  const r = lcg(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() / 4294967296 - 0.5;
  return a;
}

/** A random quantized weight of the given format: any bit pattern is a valid code. */
function makeWeight(f, inF, out) {
  const r = lcg(inF * 31 + out + f.bits);
  if (f.kind === "affine") {
    const groups = inF / 128;
    const qweight = new Int32Array((Math.ceil(inF / 32) * f.bits) * out);
    for (let i = 0; i < qweight.length; i++) qweight[i] = r() | 0;
    const scales = new Uint16Array(groups * out);
    for (let i = 0; i < scales.length; i++) scales[i] = 0x1c00 | (r() & 0x3ff); // ~[2^-8, 2^-7)
    const zeros = new Uint8Array(groups * out);
    for (let i = 0; i < zeros.length; i++) zeros[i] = r() & ((1 << f.bits) - 1);
    return { outFeatures: out, inFeatures: inF, bits: f.bits, groupSize: 128, groups, qweight, scales, zeroKind: "int", zeros };
  }
  const blockSize = 64, blocks = (out * inF) / blockSize;
  const codes = new Uint8Array(out * Math.ceil((inF * f.bits) / 8));
  for (let i = 0; i < codes.length; i++) codes[i] = r() & 255;
  const levels = Float32Array.from({ length: 1 << f.bits }, (_, q) => -1 + (2 * q) / ((1 << f.bits) - 1));
  const absmaxCodes = new Uint8Array(blocks);
  for (let i = 0; i < blocks; i++) absmaxCodes[i] = r() & 255;
  const supers = Math.ceil(blocks / 256);
  return {
    outFeatures: out, inFeatures: inF, bits: f.bits, blockSize, codes, levels, absmaxCodes,
    absmaxScale: new Float32Array(supers).fill(1e-4), absmaxOffset: new Float32Array(supers).fill(0.01),
  };
}

function storageBytes(w) {
  return Object.values(w).reduce((s, v) => s + (ArrayBuffer.isView(v) ? v.byteLength : 0), 0);
}

const ops = (f) =>
  f.kind === "affine"
    ? { fwd: K.affineMatmul, bwd: K.affineMatmulInputGrad, deq: K.affineDequantize }
    : { fwd: K.codebookMatmul, bwd: K.codebookMatmulInputGrad, deq: K.codebookDequantize };

const TILE_ROWS = 256;

/**
 * The callable of one (method, direction) at one shape. Buffers are allocated here, once.
 * dir "fwd": Y[M, out] = X Ŵᵀ; "bwd": dX[M, in] = dY Ŵ.
 */
function makeRun(method, dir, f, [, M, inF, out]) {
  const a = dir === "fwd" ? randomF32(M * inF, 1) : randomF32(M * out, 2);
  const c = new Float32Array(dir === "fwd" ? M * out : M * inF);
  const product = (W) =>
    dir === "fwd"
      ? K.gemm(false, true, M, out, inF, 1, a, inF, 0, W, inF, 0, 0, c, out, 0)
      : K.gemm(false, false, M, inF, out, 1, a, out, 0, W, inF, 0, 0, c, inF, 0);
  if (method === "dense") {
    const W = randomF32(out * inF, 3);
    return { run: () => product(W), jsBytes: W.byteLength };
  }
  const w = makeWeight(f, inF, out);
  const o = ops(f);
  if (method === "fused") return { run: () => (dir === "fwd" ? o.fwd : o.bwd)(w, a, M, c), jsBytes: 0 };
  if (method === "dequant") {
    const W = new Float32Array(out * inF);
    return { run: () => (o.deq(w, 0, out, W), product(W)), deqOnly: () => o.deq(w, 0, out, W), jsBytes: W.byteLength };
  }
  // "tiles": 256 rows of Ŵ at a time into one buffer, then the slice of the product they feed.
  const T = new Float32Array(TILE_ROWS * inF);
  const run = () => {
    for (let r0 = 0; r0 < out; r0 += TILE_ROWS) {
      const rows = Math.min(TILE_ROWS, out - r0);
      const tile = T.subarray(0, rows * inF);
      o.deq(w, r0, r0 + rows, tile);
      if (dir === "fwd") K.gemm(false, true, M, rows, inF, 1, a, inF, 0, tile, inF, 0, 0, c.subarray(r0), out, 0);
      else K.gemm(false, false, M, inF, rows, 1, a.subarray(r0), out, 0, tile, inF, 0, r0 ? 1 : 0, c, inF, 0);
    }
  };
  return { run, jsBytes: T.byteLength };
}

/**
 * Medians of `reps` timed calls of every entry, interleaved round by round (each round in a
 * rotated order), so load from other processes on the shared cores hits all methods alike.
 */
function timeInterleaved(fns, reps) {
  for (const fn of fns) fn(); // warm-up: thread caches, page faults
  const ts = fns.map(() => []);
  for (let rep = 0; rep < reps; rep++) {
    for (let k = 0; k < fns.length; k++) {
      const i = (k + rep) % fns.length;
      const t0 = process.hrtime.bigint();
      fns[i]();
      ts[i].push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }
  return ts;  // ts[method][rep], seconds
}

/** Native bytes a method needs beyond its inputs: peak growth of one call in a fresh process. */
function probeMemory(method, dir, fIndex, shapeIndex, quick) {
  const arg = JSON.stringify({ method, dir, fIndex, shapeIndex, quick });
  const outText = execFileSync(process.execPath, [self, "--probe", arg], { encoding: "utf8", env: process.env });
  return JSON.parse(outText.trim().split("\n").pop());
}

function runProbe(p) {
  const shapes = p.quick ? SHAPES_QUICK : SHAPES_FULL;
  const { run } = makeRun(p.method, p.dir, FORMATS[p.fIndex ?? 0], shapes[p.shapeIndex]);
  K.resetPeakMemory();
  const before = K.nativeMemoryStats().bytes;
  run();
  const s = K.nativeMemoryStats();
  console.log(JSON.stringify({ peakGrowth: s.peakBytes - before, scratchAfter: s.scratchBytes }));
}


// ---- main ---------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.probe) return runProbe(opts.probe);
  const shapes = opts.quick ? SHAPES_QUICK : SHAPES_FULL;
  const threads = K.getNumThreads();
  const cond = startConditions({ threads });
  const rows = [];
  for (const [si, shape] of shapes.entries()) {
    const [label, M, inF, out] = shape;
    const flop = 2 * M * inF * out;
    for (const dir of ["fwd", "bwd"]) {
      // Every (format, method) of this shape and pass, timed together.
      const entries = [{ fi: 0, f: null, method: "dense", r: makeRun("dense", dir, null, shape) }];
      for (const [fi, f] of FORMATS.entries())
        for (const method of ["fused", "tiles", "dequant"]) entries.push({ fi, f, method, r: makeRun(method, dir, f, shape) });
      const fns = entries.map((e) => e.r.run);
      const deqIndex = new Map();
      for (const [k, e] of entries.entries()) if (e.r.deqOnly) deqIndex.set(k, fns.push(e.r.deqOnly) - 1);
      const perRep = timeInterleaved(fns, opts.reps);
      const times = perRep.map(median);
      const denseT = times[0];
      for (const [k, e] of entries.entries()) {
        const t = times[k];
        const vsDense = spread(perRep[k].map((x, rep) => x / perRep[0][rep]));
        const mem = probeMemory(e.method, dir, e.fi, si, opts.quick);
        rows.push({
          shape: label, M, in: inF, out, dir, format: e.f ? e.f.label : "dense f32",
          method: { dense: "dense sgemm (floor)", fused: "fused", tiles: "256-row tiles + sgemm", dequant: "dequantize all + sgemm" }[e.method],
          seconds: t, secondsMin: Math.min(...perRep[k]), secondsMax: Math.max(...perRep[k]), dequantizeSeconds: deqIndex.has(k) ? times[deqIndex.get(k)] : null, gflops: flop / t / 1e9,
          vsDense: vsDense.median, vsDenseMin: vsDense.min, vsDenseMax: vsDense.max, nativeExtraMiB: MiB(mem.peakGrowth), jsExtraMiB: MiB(e.r.jsBytes),
          weightMiB: e.f ? MiB(storageBytes(makeWeight(e.f, inF, out))) : MiB(out * inF * 4),
        });
        console.log(`${label} ${dir} ${e.f ? e.f.label : "dense"} ${e.method}: ${(t * 1e3).toFixed(2)} ms (${vsDense.median.toFixed(2)}x dense)`);
      }
    }
  }
  writeResults(opts, rows, threads, cond.finish());
}

function writeResults(opts, rows, threads, conditions) {
  mkdirSync(opts.out, { recursive: true });
  const info = { quant: K.quantMatmulInfo(), gemm: K.gemmInfo() };
  const json = {
    benchmark: "quant-matmul", conditions, threads, reps: opts.reps, statistic: "median",
    cpu: { logicalCpus: conditions.machine.cpusAvailable },
    loadAverage1m: { start: conditions.loadavg.before[0], end: conditions.loadavg.after[0] },
    kernels: info,
    rows: rows.map((r) => ({
      ...r, seconds: round(r.seconds, 6), secondsMin: round(r.secondsMin, 6), secondsMax: round(r.secondsMax, 6),
      dequantizeSeconds: round(r.dequantizeSeconds, 6), gflops: round(r.gflops, 1),
      vsDense: round(r.vsDense, 3), vsDenseMin: round(r.vsDenseMin, 3), vsDenseMax: round(r.vsDenseMax, 3), nativeExtraMiB: round(r.nativeExtraMiB, 2), jsExtraMiB: round(r.jsExtraMiB, 2),
      weightMiB: round(r.weightMiB, 2),
    })),
  };
  writeFileSync(path.join(opts.out, "quant-matmul.json"), JSON.stringify(json, null, 2) + "\n");

  const lines = ["# Fused dequantize-matmul (CPU)", ""];
  lines.push(...runHeader(json), "");
  lines.push(...table(json.rows), "");
  lines.push("## Summary", "", ...summary(json.rows), "");
  lines.push("## Interpretation", "", ...interpret(json), "");
  lines.push(...conditionsMarkdown(conditions));
  writeFileSync(path.join(opts.out, "quant-matmul.md"), lines.join("\n"));
  console.log(`wrote ${path.join(opts.out, "quant-matmul.json")} and quant-matmul.md`);
}

function runHeader(run) {
  const q = run.kernels.quant;
  return [
    `${run.threads} kernel threads (machine and load under Conditions). Decode path \`${q.isa}\` ` +
      `(gemm micro-kernel ${q.mr}x${q.nr}; decoded blocks kc ${q.kc} x nc ${q.nc}; mc ${q.mc}).`,
    `Times are the **median** of ${run.reps} calls per method after a warm-up, the methods of one shape and pass ` +
      "interleaved call by call (rotating order), so load from other processes hits them alike. GFLOP/s counts " +
      "2·M·in·out; \"x dense\" is the time over dense f32 SGEMM at the same shape and pass, taken within each " +
      "repetition: median (min–max) over repetitions. Native extra = peak " +
      "native memory growth of one call in a fresh process (thread scratch); JS extra = f32 buffers the method " +
      "allocates; weight = bytes the weight is stored in (codes and all metadata).",
  ];
}

function table(rows) {
  const lines = [
    "| shape | M | pass | format | method | ms (min–max) | GFLOP/s | x dense (min–max) | dequantize ms | native extra MiB | JS extra MiB | weight MiB |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    lines.push(`| ${r.shape} | ${r.M} | ${r.dir === "fwd" ? "forward" : "input grad"} | ${r.format} | ${r.method} | ` +
      `${(r.seconds * 1e3).toFixed(2)} (${(r.secondsMin * 1e3).toFixed(2)}–${(r.secondsMax * 1e3).toFixed(2)}) | ${r.gflops} | ` +
      `${r.vsDense.toFixed(2)} (${r.vsDenseMin.toFixed(2)}–${r.vsDenseMax.toFixed(2)}) | ` +
      `${r.dequantizeSeconds == null ? "" : (r.dequantizeSeconds * 1e3).toFixed(2)} | ${r.nativeExtraMiB} | ${r.jsExtraMiB} | ${r.weightMiB} |`);
  }
  return lines;
}

const FUSED = "fused", TILES = "256-row tiles + sgemm", DEQ = "dequantize all + sgemm";
const span = (xs) => (xs.length ? `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}` : "–");

/** Per shape and pass, over the four formats: fused / dense, dequantize-all / fused, tiles / fused. */
function summary(rows) {
  const lines = ["| shape | pass | fused / dense | dequantize all + sgemm / fused | 256-row tiles / fused |", "|---|---|---|---|---|"];
  const keys = [...new Set(rows.map((r) => `${r.shape}\u0000${r.dir}`))];
  for (const key of keys) {
    const [shape, dir] = key.split("\u0000");
    const here = rows.filter((r) => r.shape === shape && r.dir === dir);
    const fused = here.filter((r) => r.method === FUSED);
    const vs = (method) =>
      here.filter((r) => r.method === method).map((r) => r.seconds / fused.find((f) => f.format === r.format).seconds);
    lines.push(`| ${shape} | ${dir === "fwd" ? "forward" : "input grad"} | ${span(fused.map((r) => r.vsDense))} | ` +
      `${span(vs(DEQ))} | ${span(vs(TILES))} |`);
  }
  return lines;
}

/** Ranges of the headline ratios over one run's rows. */
function ratios(rows) {
  const fused = rows.filter((r) => r.method === FUSED);
  const largest = Math.max(...rows.map((r) => r.in * r.out));
  const big = (rs) => rs.filter((r) => r.in * r.out === largest);
  const vsFused = (rs, method) =>
    rs.filter((r) => r.method === method)
      .map((r) => r.seconds / rows.find((f) => f.method === FUSED && f.shape === r.shape && f.dir === r.dir && f.format === r.format).seconds);
  return {
    fused: span(fused.map((r) => r.vsDense)),
    fusedFwd: span(fused.filter((r) => r.dir === "fwd").map((r) => r.vsDense)),
    fusedBwd: span(fused.filter((r) => r.dir === "bwd").map((r) => r.vsDense)),
    fusedBig: span(big(fused).map((r) => r.vsDense)),
    deq: span(vsFused(rows, DEQ)),
    deqBig: span(vsFused(big(rows), DEQ)),
    deqMs: span(big(rows).filter((r) => r.dequantizeSeconds != null).map((r) => r.dequantizeSeconds * 1e3)),
    tiles: span(vsFused(rows, TILES)),
    tilesBig: span(vsFused(big(rows), TILES)),
  };
}

/** Sentences computed from the rows, so a re-run keeps the text true. */
function interpret(run) {
  const a = ratios(run.rows);
  const both = (key) => `${a[key]}x`;
  const all = run.rows;
  const largest = run.rows.reduce((x, r) => (r.in * r.out > x.in * x.out ? r : x));
  const dims = `${largest.in} x ${largest.out}`;
  const big = run.rows.filter((r) => r.in * r.out === largest.in * largest.out && r.method === DEQ);
  const out = [];
  out.push(`- **Fused vs the dense floor.** Over every shape, pass and format the fused kernels take ${both("fused")} ` +
    `the dense f32 SGEMM time; forward ${both("fusedFwd")}, input gradient ${both("fusedBwd")}, ${dims} ` +
    `${both("fusedBig")}. The product is gemm's micro-kernel on packed panels either way; decoding costs about one ` +
    "to two cycles per weight, against M/16 vector FMAs per weight in the product (32–64 at M = 512–1024), so the " +
    "decode is a few percent. The forward can come out ahead because dense SGEMM with a transposed B transposes " +
    "while packing, while affine codes decode straight into panel order (along `out`); the affine input gradient " +
    "and the codebook forward decode along their codes' own direction and transpose 8 x 8 tiles into the panels. " +
    "At the tiny-llama shapes the threads split the narrow result's 256 columns and each packs all of X: a few " +
    "percent that dense SGEMM, free to split rows instead, does not pay.");
  out.push(`- **Dequantize everything, then SGEMM** takes ${both("deq")} the fused time; at ${dims} ` +
    `${both("deqBig")}, where dequantizing alone costs ${a.deqMs} ms. It ` +
    `holds the whole f32 matrix (${Math.max(...big.map((r) => r.jsExtraMiB)).toFixed(0)} MiB at ${dims}, against ` +
    `${Math.min(...big.map((r) => r.weightMiB)).toFixed(1)}–${Math.max(...big.map((r) => r.weightMiB)).toFixed(1)} MiB ` +
    "of stored weight). At the tiny-llama sizes the whole matrix is 0.75 MiB and dequantizes in a fraction of a " +
    "millisecond, so there the two are within noise.");
  out.push(`- **256-row tiles + SGEMM** (the simple bounded-memory alternative) takes ${both("tiles")} the fused time; ` +
    `at ${dims} ${both("tilesBig")}: every tile is written, then read again by SGEMM's own packing, and X is ` +
    "repacked once per tile instead of once per packed block.");
  const fusedMem = all.filter((r) => r.method === FUSED).map((r) => r.nativeExtraMiB);
  out.push(`- **Memory.** The fused kernels' native scratch peaks at ${Math.max(...fusedMem).toFixed(2)} MiB over all ` +
    "shapes (per-thread packed X and Ŵ blocks, bounded by the block sizes, not the layer size); no f32 copy of Ŵ " +
    "exists at any time.");
  const idle = run.conditions.cpuIdleBefore;
  out.push(`- **Noise.** ${run.threads} kernel threads on ${run.cpu.logicalCpus} logical CPUs, ` +
    (idle == null ? "CPU idle share not measured" : `CPUs ${Math.round(idle * 100)}% idle just before the run`) +
    (idle != null && idle < BUSY_IDLE_SHARE
      ? ": other work shared the cores, so single ratios move by ±10–20% (more during load spikes) between runs; " +
        "medians of interleaved calls keep the comparisons within one shape and pass fair, not the absolute times."
      : ": no other work was running when it started; single calls still vary by a few percent, hence medians of interleaved calls."));
  return out;
}

await runBenchmark("quant-matmul", main);
