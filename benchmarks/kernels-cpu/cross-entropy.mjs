#!/usr/bin/env node
// Cross-entropy forward + backward over the vocabulary: the fused, chunked op of @modulora/tensor
// (`crossEntropy`) against the same loss composed of core ops (`crossEntropyReference`), f32, at
// vocab 4096 and 32000 and N = 512 and 2048 tokens. Writes results/cross-entropy.json and .md.
//
// Per case and per implementation, each round times one forward (loss, mean reduction) and one
// backward (dlogits into logits.grad), and records the peak growth of tensor storage and of native
// memory (storage + kernel scratch) over the logits. Rounds alternate which implementation goes
// first (ABAB), so load from other processes hits both; the table reports medians over rounds, the
// fwd+bwd range (min-max), and the speed-up reference / fused within a round (min, median, max).
// The conditions (../conditions.mjs) are recorded; the addon must be the tracked build.
//
// A third row times the native kernels alone (@modulora/kernels crossEntropyForward/Backward) on
// buffers allocated once, which separates the kernels from the engine's allocation of the
// N×V gradient (fresh, zero-filled native memory on every call).
//
// Effective GB/s counts the logits traffic an ideal fused kernel needs: the forward reads the
// logits once (N·V·4 bytes), the backward reads them once and writes dlogits once (2·N·V·4), so
// fwd+bwd = 3·N·V·4 bytes over the median fwd+bwd time. The reference is credited with the same
// bytes (it moves several times more).
//
// usage: node benchmarks/kernels-cpu/cross-entropy.mjs [--rounds N] [--quick] [--out DIR]
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

// This folder's package.json lists only @modulora/kernels; fall back to the workspace build of
// @modulora/tensor (packages/tensor/dist, from `pnpm --filter @modulora/tensor build`).
async function loadTensor() {
  try {
    return await import("@modulora/tensor");
  } catch {
    return await import(path.join(here, "..", "..", "packages", "tensor", "dist", "index.js"));
  }
}
const { conditionsMarkdown, paired, runBenchmark, spread, startConditions } = await import("../conditions.mjs");
const T = await loadTensor();
const K = await import("@modulora/kernels");

// ---- options ----------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { rounds: 7, quick: false, out: path.join(here, "results") };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--rounds") opts.rounds = Number(argv[++i]);
    else if (a === "--quick") opts.quick = true;
    else if (a === "--out") opts.out = path.resolve(argv[++i]);
    else throw new Error(`cross-entropy.mjs: unknown option ${a}`);
  }
  if (opts.quick) opts.rounds = Math.min(opts.rounds, 2);
  return opts;
}

const CASES = [
  [512, 4096],
  [2048, 4096],
  [512, 32000],
  [2048, 32000],
];

// ---- measurement ------------------------------------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** One round of `loss = fn(x, t); backward(loss)`: times and peak growth above the inputs. */
function round(fn, x, t) {
  let fwdMs = 0, bwdMs = 0, peakFwd = 0, peakNative = 0, peakTotal = 0, nativeTotal = 0, loss = NaN;
  T.tidy(() => {
    T.resetPeakMemory();
    const base = T.memory();
    const t0 = performance.now();
    const l = fn(x, t);
    const t1 = performance.now();
    const mid = T.memory();
    T.backward(l);
    const t2 = performance.now();
    const end = T.memory();
    loss = l.item();
    fwdMs = t1 - t0;
    bwdMs = t2 - t1;
    peakFwd = mid.peakBytes - base.bytes;
    peakNative = mid.nativePeakBytes - base.nativeBytes;
    peakTotal = end.peakBytes - base.bytes;
    nativeTotal = end.nativePeakBytes - base.nativeBytes;
  });
  x.zeroGrad();
  return { fwdMs, bwdMs, peakFwd, peakNative, peakTotal, nativeTotal, loss };
}

/** The native kernels alone on preallocated buffers: forward then backward (mean). */
function kernelRound(bufs) {
  const { x, rows, v, t, lse, loss, g, dx } = bufs;
  const t0 = performance.now();
  K.crossEntropyForward(x, rows, v, t, -100, lse, loss);
  const t1 = performance.now();
  K.crossEntropyBackward(x, rows, v, t, -100, lse, g, 0, true, dx);
  const t2 = performance.now();
  return { fwdMs: t1 - t0, bwdMs: t2 - t1, peakFwd: 0, peakNative: 0, peakTotal: 0, nativeTotal: 0, loss: loss.reduce((a, b) => a + b, 0) / loss.length };
}

function runCase(n, v, rounds) {
  const x = T.randn([n, v], { seed: 7, requiresGrad: true });
  const targetsData = new Int32Array(n);
  for (let i = 0; i < n; i++) targetsData[i] = (i * 7919 + 13) % v;
  const t = T.tensor(targetsData);
  const bufs = {
    x: x.dataSync(), rows: { shape: [n], strides: [v] }, v, t: targetsData, // the raw kernel runs on a host copy
    lse: new Float32Array(n), loss: new Float32Array(n), g: new Float32Array([1]), dx: new Float32Array(n * v),
  };
  const impls = { fused: () => round(T.crossEntropy, x, t), reference: () => round(T.crossEntropyReference, x, t), kernel: () => kernelRound(bufs) };
  const samples = { fused: [], reference: [], kernel: [] };
  // warm-up (page faults of first allocations, JIT)
  for (const name of Object.keys(impls)) impls[name]();
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? ["reference", "kernel", "fused"] : ["fused", "kernel", "reference"];
    for (const name of order) samples[name].push(impls[name]());
  }
  T.dispose([x, t]);
  const logitsBytes = n * v * 4;
  const out = {};
  for (const [name, s] of Object.entries(samples)) {
    const fwd = median(s.map((e) => e.fwdMs));
    const bwd = median(s.map((e) => e.bwdMs));
    const total = median(s.map((e) => e.fwdMs + e.bwdMs));
    out[name] = {
      fwdMs: fwd, bwdMs: bwd, totalMs: total, totalMsSpread: spread(s.map((e) => e.fwdMs + e.bwdMs)),
      gbps: (3 * logitsBytes) / (total * 1e-3) / 1e9,
      peakFwdBytes: Math.max(...s.map((e) => e.peakFwd)),
      peakFwdNativeBytes: Math.max(...s.map((e) => e.peakNative)),
      peakFwdBwdBytes: Math.max(...s.map((e) => e.peakTotal)),
      peakFwdBwdNativeBytes: Math.max(...s.map((e) => e.nativeTotal)),
      loss: s[0].loss,
      samples: s,
    };
  }
  const tot = (name) => samples[name].map((e) => e.fwdMs + e.bwdMs);
  const speedup = paired(tot("fused"), tot("reference"), { higherIsBetter: false }).ratio;
  return { n, v, dtype: "f32", logitsBytes, speedupFwdBwd: speedup, ...out };
}

// ---- report -----------------------------------------------------------------------------------

const mib = (b) => (b / 2 ** 20).toFixed(b < 2 ** 20 ? 3 : 1);
const ms = (x) => x.toFixed(x < 10 ? 2 : 1);

function markdown(meta, results) {
  const lines = [];
  lines.push("# Cross-entropy forward + backward (f32)", "");
  lines.push(`ISA path ${meta.machine.isa}, ${meta.machine.threads} kernel threads. Rounds: ${meta.rounds} per case after a warm-up, alternating order; times are medians over rounds, fwd+bwd also with its range (min–max); speed-up = reference / fused fwd+bwd within a round, min / median / max over rounds.`, "");
  lines.push("Effective GB/s = 3·N·V·4 bytes (forward reads the logits; backward reads them and writes dlogits) / median fwd+bwd time, for both implementations. Peak extra = growth of tensor storage above the logits (peakBytes), forward only and over forward+backward (the latter includes the N×V gradient itself); native peak (storage + kernel scratch) in the JSON.", "");
  lines.push("| N | V | logits MiB | impl | fwd ms | bwd ms | fwd+bwd ms (min–max) | eff. GB/s | peak extra fwd MiB | peak extra fwd+bwd MiB | fused speed-up min / median / max |");
  lines.push("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of results) {
    for (const name of ["fused", "kernel", "reference"]) {
      const e = r[name];
      const label = { fused: "crossEntropy (fused op)", kernel: "native kernels only, preallocated", reference: "crossEntropyReference" }[name];
      const peaks = name === "kernel" ? "– | –" : `${mib(e.peakFwdBytes)} | ${mib(e.peakFwdBwdBytes)}`;
      const su = name === "fused" ? `${r.speedupFwdBwd.min.toFixed(2)} / **${r.speedupFwdBwd.median.toFixed(2)}** / ${r.speedupFwdBwd.max.toFixed(2)}` : "";
      lines.push(`| ${r.n} | ${r.v} | ${mib(r.logitsBytes)} | ${label} | ${ms(e.fwdMs)} | ${ms(e.bwdMs)} | ${ms(e.totalMs)} (${ms(e.totalMsSpread.min)}–${ms(e.totalMsSpread.max)}) | ${e.gbps.toFixed(1)} | ${peaks} | ${su} |`);
    }
  }
  lines.push("", "## Interpretation", "");
  lines.push(...meta.interpretation.map((s) => `- ${s}`));
  lines.push("", ...conditionsMarkdown(meta.conditions));
  return lines.join("\n") + "\n";
}

/** "a–b" with `digits` decimals, or one number when both ends print the same. */
function range(xs, digits) {
  const lo = Math.min(...xs).toFixed(digits), hi = Math.max(...xs).toFixed(digits);
  return lo === hi ? lo : `${lo}–${hi}`;
}

function interpret(results) {
  const notes = [];
  const speedups = results.map((r) => r.speedupFwdBwd.median);
  const lows = results.map((r) => r.speedupFwdBwd.min);
  notes.push(`The fused op is ${range(speedups, 1)}× faster than the composed reference for forward+backward (median over paired rounds per case; the slowest paired round of any case: ${Math.min(...lows).toFixed(1)}×).`);
  const fwdPeaks = results.map((r) => r.fused.peakFwdBytes / r.n);
  notes.push(`Fused forward peak growth is ${range(fwdPeaks, 0)} bytes per row (lse and per-row losses): O(N), independent of V. Its forward+backward peak is the one N×V gradient plus O(N).`);
  const refRatio = results.map((r) => r.reference.peakFwdBytes / r.logitsBytes);
  notes.push(`The reference's forward alone grows by ${range(refRatio, 1)}× the logits (x − max, exp(x − max), the saved tensors of the tape).`);
  const kgb = results.map((r) => r.kernel.gbps);
  notes.push(`The native kernels alone reach ${range(kgb, 1)} GB/s effective (bound by exp, a 16-lane polynomial on the AVX-512 path, and by memory traffic).`);
  const bwdRatio = results.map((r) => r.fused.bwdMs / r.kernel.bwdMs);
  notes.push(`Through the engine, the fused op's backward takes ${range(bwdRatio, 1)}× the time of the backward kernel alone on preallocated buffers (medians); the difference is allocating and zero-filling the N×V gradient (first-touch page faults) and the engine's bookkeeping. The reference pays the allocation several times over.`);
  notes.push("When the load average under Conditions is high, other jobs shared the cores: the numbers move by tens of percent from run to run, so read them as medians, not as a peak.");
  return notes;
}

// ---- main -------------------------------------------------------------------------------------

await runBenchmark("cross-entropy", async () => {
const opts = parseArgs(process.argv.slice(2));
const cond = startConditions({ threads: T.getNumThreads() });
const info = T.cpuInfo();
const meta = {
  benchmark: "cross-entropy",
  machine: {
    cpu: os.cpus()[0]?.model ?? "unknown CPU",
    cores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    isa: info.active,
    threads: T.getNumThreads(),
    node: process.version,
  },
  rounds: opts.rounds,
};
const results = [];
for (const [n, v] of CASES) {
  const r = runCase(n, v, opts.rounds);
  results.push(r);
  console.log(`N=${n} V=${v}: fused ${ms(r.fused.totalMs)} ms (${r.fused.gbps.toFixed(1)} GB/s, fwd peak +${mib(r.fused.peakFwdBytes)} MiB), reference ${ms(r.reference.totalMs)} ms (fwd peak +${mib(r.reference.peakFwdBytes)} MiB); loss ${r.fused.loss.toFixed(5)} vs ${r.reference.loss.toFixed(5)}`);
}
meta.conditions = cond.finish();
meta.interpretation = interpret(results);
mkdirSync(opts.out, { recursive: true });
writeFileSync(path.join(opts.out, "cross-entropy.json"), JSON.stringify({ ...meta, results }, null, 2) + "\n");
writeFileSync(path.join(opts.out, "cross-entropy.md"), markdown(meta, results));
console.log(`wrote ${path.join(opts.out, "cross-entropy.json")} and cross-entropy.md`);
});
