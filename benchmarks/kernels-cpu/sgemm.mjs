#!/usr/bin/env node
// SGEMM benchmark of @modulora/kernels: our kernel against (1) a naive triple loop, (2) OpenBLAS
// through numpy float32 matmul with the same thread count, and (3) the machine's measured FMA
// peak, on square and LLaMA-like shapes (with the transposed products of the backward pass), at
// 1 and 2 threads. Writes results/sgemm.json and results/sgemm.md.
//
// Our calls and OpenBLAS calls alternate round by round in the same command (ABAB: the side that
// goes first flips every round), so load from other processes hits both. Each round times several
// back-to-back calls per side; the round's figure per side is the median call. The table reports,
// per side, the median (min-max) over rounds, and the ratio ours / OpenBLAS over paired rounds
// (min, median, max) -- no best-call figures. The run records its conditions (../conditions.mjs)
// and refuses to publish when numpy's BLAS is not OpenBLAS/MKL/BLIS or when the kernels addon is
// not the tracked build (MODULORA_KERNELS_PATH is refused).
//
// --settle S waits up to S seconds before each shape and thread count for the CPUs to be mostly
// idle (other processes' load), and records the idle share it saw.
//
// usage: node benchmarks/kernels-cpu/sgemm.mjs [--rounds N] [--threads 1,2] [--settle S] [--quick]
//          [--no-naive] [--python python3] [--out DIR]
//        node sgemm.mjs --render results/sgemm.json   (rewrites sgemm.md from a saved run)
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { cpuInfo, gemm, gemmInfo, getNumThreads, setNumThreads } from "@modulora/kernels";

import {
  BUSY_IDLE_SHARE, BenchmarkRefusal, conditionsMarkdown, cpuIdleShare, paired, requireOptimizedBlas, runBenchmark, startConditions,
} from "../conditions.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

// ---- options ----------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { rounds: 7, threads: [1, 2], settle: 3, quick: false, naive: true, python: process.env.PYTHON ?? "python3", out: path.join(here, "results") };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") continue;  // `pnpm run bench -- --quick` passes the separator through
    else if (a === "--rounds") opts.rounds = Number(argv[++i]);
    else if (a === "--threads") opts.threads = argv[++i].split(",").map(Number);
    else if (a === "--settle") opts.settle = Number(argv[++i]);
    else if (a === "--quick") opts.quick = true;
    else if (a === "--no-naive") opts.naive = false;
    else if (a === "--out") opts.out = path.resolve(argv[++i]);
    else if (a === "--python") opts.python = argv[++i];
    else if (a === "--render") opts.render = path.resolve(argv[++i]);
    else throw new BenchmarkRefusal(`unknown option ${a} — see the usage at the top of sgemm.mjs`);
  }
  if (opts.quick) opts.rounds = Math.min(opts.rounds, 2);
  return opts;
}

// ---- shapes -----------------------------------------------------------------------------------

// [label, m, n, k, transA, transB]. The LLaMA-like pair is one MLP projection pair at 2048 tokens
// (hidden 256, intermediate 768); the backward pass of Y = X W needs dX = dY W^T (NT) and
// dW = X^T dY (TN).
const SHAPES = [
  ["512^3", 512, 512, 512, false, false],
  ["1024^3", 1024, 1024, 1024, false, false],
  ["2048^3", 2048, 2048, 2048, false, false],
  ["[2048x256]*[256x768]", 2048, 768, 256, false, false],
  ["[2048x768]*[768x256]", 2048, 256, 768, false, false],
  ["dX = [2048x768]*[256x768]^T", 2048, 256, 768, false, true],
  ["dX = [2048x256]*[768x256]^T", 2048, 768, 256, false, true],
  ["dW = [2048x256]^T*[2048x768]", 256, 768, 2048, true, false],
  ["dW = [2048x768]^T*[2048x256]", 768, 256, 2048, true, false],
];
const QUICK_SHAPES = new Set(["512^3", "[2048x256]*[256x768]", "dW = [2048x256]^T*[2048x768]"]);

// The naive loop runs at ~0.5-2 GFLOP/s: measured only up to 2^30 multiply-adds (not 2048^3).
const NAIVE_MAX_MACS = 2 ** 30;

// ---- helpers ----------------------------------------------------------------------------------

const gflops = (m, n, k, seconds) => (2 * m * n * k) / seconds / 1e9;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};
const round1 = (x) => (x == null ? null : Math.round(x * 10) / 10);
const round3 = (x) => (x == null ? null : Math.round(x * 1000) / 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Waits (at most `seconds`) until the CPUs are at least 85% idle over a second; returns the last reading.
async function settle(seconds) {
  const end = Date.now() + seconds * 1000;
  let idle = cpuIdleShare(1000);
  while (idle != null && idle < BUSY_IDLE_SHARE && Date.now() < end) idle = cpuIdleShare(1000);
  return idle;
}

function randomF32(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 4294967296;
  }
  return a;
}

// Compiles the native helpers (naive loop, FMA peak) with the system C++ compiler.
function buildHelpers() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "modulora-bench-"));
  const cxx = process.env.CXX ?? "g++";
  const build = (src, out, extra) => {
    try {
      execFileSync(cxx, ["-O2", "-std=c++17", ...extra, "-o", path.join(dir, out), path.join(here, "native", src)], {
        stdio: "pipe",
      });
      return path.join(dir, out);
    } catch (err) {
      console.warn(`sgemm.mjs: could not compile ${src} with ${cxx}: ${err.message.split("\n")[0]}`);
      return null;
    }
  };
  return { dir, naive: build("naive_sgemm.cc", "naive_sgemm", []), peak: build("peak_fma.cc", "peak_fma", ["-pthread"]) };
}

function measurePeak(bin, threads) {
  if (!bin) return null;
  const [isa, g] = execFileSync(bin, [String(threads), "0.3"], { encoding: "utf8" }).trim().split(/\s+/);
  return { isa, gflops: Number(g) };
}

function measureNaive(bin, m, n, k, ta, tb) {
  if (!bin || m * n * k > NAIVE_MAX_MACS) return null;
  const reps = m * n * k > 2 ** 28 ? 1 : 2;
  const out = execFileSync(bin, [m, n, k, ta ? 1 : 0, tb ? 1 : 0, reps].map(String), { encoding: "utf8" });
  return gflops(m, n, k, Number(out.trim().split(/\s+/)[0]));
}

// A numpy/OpenBLAS child process pinned to `threads` threads, with the environment's
// OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE overrides removed (for this child only).
class OpenBlasWorker {
  constructor(threads, python) {
    const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    this.proc = spawn(python, [path.join(here, "openblas_worker.py")], {
      env,
      stdio: ["pipe", "pipe", "inherit"],
    });
    this.lines = createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }
  async request(req) {
    this.proc.stdin.write(JSON.stringify(req) + "\n");
    const { value, done } = await this.lines.next();
    if (done) throw new BenchmarkRefusal("the numpy worker exited — is numpy installed for that python (--python)?");
    return JSON.parse(value);
  }
  close() {
    this.proc.stdin.end();
  }
}

function timeOurs(m, n, k, ta, tb, ops, calls) {
  const { a, b, c } = ops;
  const seconds = [];
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    gemm(ta, tb, m, n, k, 1, a, ta ? m : k, 0, b, tb ? k : n, 0, 0, c, n, 0, 1);
    seconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return seconds;
}

// ---- main -------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.render) {
    const report = JSON.parse(readFileSync(opts.render, "utf8"));
    const threads = [...new Set(report.results.map((r) => r.threads))];
    writeFileSync(path.join(path.dirname(opts.render), "sgemm.md"), markdown(report, { threads }));
    return;
  }
  const shapes = opts.quick ? SHAPES.filter((s) => QUICK_SHAPES.has(s[0])) : SHAPES;
  const cond = startConditions({ threads: opts.threads.join(",") });
  const threadsBefore = getNumThreads();
  const helpers = buildHelpers();
  const workers = new Map(opts.threads.map((t) => [t, new OpenBlasWorker(t, opts.python)]));
  const openblas = {};
  for (const [t, w] of workers) openblas[t] = requireOptimizedBlas(await w.request({ op: "info" }), `numpy (${opts.python}, ${t} thread(s))`);

  const peakBefore = Object.fromEntries(opts.threads.map((t) => [t, measurePeak(helpers.peak, t)]));
  const results = [];
  for (const [label, m, n, k, ta, tb] of shapes) {
    const naive = opts.naive ? measureNaive(helpers.naive, m, n, k, ta, tb) : null;
    const ops = { a: randomF32(m * k, 1), b: randomF32(k * n, 2), c: new Float32Array(m * n) };
    for (const threads of opts.threads) {
      const idleBefore = opts.settle > 0 ? await settle(opts.settle) : null;
      setNumThreads(threads);
      const worker = workers.get(threads);
      // About 0.1 s of calls per side and round (estimated at 150 GFLOP/s per thread).
      const calls = Math.max(2, Math.min(40, Math.ceil(0.1 / ((2 * m * n * k) / (150e9 * threads)))));
      timeOurs(m, n, k, ta, tb, ops, 1);  // warm-up: thread pool, packing buffers, page faults
      await worker.request({ op: "time", m, n, k, ta, tb, calls: 1 });
      const ours = [], blas = [];  // GFLOP/s of each round's median call
      for (let r = 0; r < opts.rounds; r++) {
        const g = (xs) => gflops(m, n, k, median(xs));
        if (r % 2 === 0) {
          ours.push(g(timeOurs(m, n, k, ta, tb, ops, calls)));
          blas.push(g((await worker.request({ op: "time", m, n, k, ta, tb, calls })).seconds));
        } else {
          blas.push(g((await worker.request({ op: "time", m, n, k, ta, tb, calls })).seconds));
          await sleep(0);  // (the worker already waited for OpenBLAS's threads to go idle)
          ours.push(g(timeOurs(m, n, k, ta, tb, ops, calls)));
        }
      }
      const p = paired(ours, blas, { higherIsBetter: true });
      const row = {
        shape: label, m, n, k, transA: ta, transB: tb, threads, rounds: opts.rounds, callsPerRound: calls,
        idleBefore: idleBefore == null ? null : Math.round(idleBefore * 100) / 100,
        ours: p.ours, openblas: p.baseline, ratio: p.ratio, ratiosByRound: p.ratios.map(round3),
        oursByRound: ours.map(round1), openblasByRound: blas.map(round1), naive: threads === 1 ? naive : null,
      };
      results.push(row);
      console.log(
        `${label.padEnd(30)} ${threads}T  ours ${row.ours.median.toFixed(1).padStart(6)}  openblas ${row.openblas.median
          .toFixed(1)
          .padStart(6)}  ratio min ${row.ratio.min.toFixed(3)} median ${row.ratio.median.toFixed(3)}` +
          (row.naive ? `  naive ${row.naive.toFixed(2)}` : ""),
      );
    }
  }
  const peakAfter = Object.fromEntries(opts.threads.map((t) => [t, measurePeak(helpers.peak, t)]));
  for (const w of workers.values()) w.close();
  setNumThreads(threadsBefore);
  rmSync(helpers.dir, { recursive: true, force: true });

  const peak = {};
  for (const t of opts.threads) {
    const vals = [peakBefore[t]?.gflops, peakAfter[t]?.gflops].filter((x) => x != null);
    peak[t] = vals.length ? Math.max(...vals) : null;
  }
  const s1 = (s) => ({ median: round1(s.median), min: round1(s.min), max: round1(s.max), n: s.n });
  const s3 = (s) => ({ median: round3(s.median), min: round3(s.min), max: round3(s.max), n: s.n });
  const report = {
    benchmark: "sgemm",
    conditions: cond.finish({ numpy: openblas }),
    kernel: gemmInfo(),
    cpuFeatures: cpuInfo(),
    peak: {
      isa: peakBefore[opts.threads[0]]?.isa ?? null,
      measuredGflops: peak,
      before: peakBefore,
      after: peakAfter,
      method:
        "native/peak_fma.cc: per thread 24 independent zmm FMA chains (12 ymm without AVX-512), no memory " +
        "traffic, best of 5 trials of ~0.3 s; taken before and after the run, the higher one is used.",
    },
    method: {
      timing: `${opts.rounds} rounds per shape and thread count; each round times back-to-back calls of ours and of ` +
        "OpenBLAS, alternating which goes first; a round's figure per side is its median call. Per side: median, min " +
        "and max over rounds; ratio = ours / OpenBLAS of the same round, min, median and max over rounds. " +
        `Before each shape and thread count the run waited up to ${opts.settle} s for the CPUs to be 85% idle ` +
        "(idleBefore: the idle share it saw, other processes share this machine).",
      openblasEnv: "OPENBLAS_NUM_THREADS=<threads>, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for the numpy child",
      naive: `native/naive_sgemm.cc, g++ -O2 baseline x86-64, one thread, shapes up to ${NAIVE_MAX_MACS} multiply-adds`,
    },
    results: results.map((r) => ({
      ...r,
      ours: s1(r.ours), openblas: s1(r.openblas), ratio: s3(r.ratio),
      naive: r.naive == null ? null : Math.round(r.naive * 100) / 100,
      oursPctOfPeak: peak[r.threads] ? round1((100 * r.ours.median) / peak[r.threads]) : null,
      openblasPctOfPeak: peak[r.threads] ? round1((100 * r.openblas.median) / peak[r.threads]) : null,
    })),
  };
  mkdirSync(opts.out, { recursive: true });
  writeFileSync(path.join(opts.out, "sgemm.json"), JSON.stringify(report, null, 2) + "\n");
  writeFileSync(path.join(opts.out, "sgemm.md"), markdown(report, opts));
  console.log(`wrote ${path.join(opts.out, "sgemm.json")} and sgemm.md`);
}

function geomean(xs) {
  return Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
}

function markdown(rep, opts) {
  const lines = [];
  const k = rep.kernel;
  const c = rep.conditions;
  lines.push("# SGEMM benchmark: @modulora/kernels vs OpenBLAS");
  lines.push("");
  lines.push(`- Our kernel: ${k.isa}, register tile ${k.mr}x${k.nr}, blocking kc=${k.kc}, mc=${k.mc}, nc=${k.nc}`);
  for (const [t, info] of Object.entries(c.numpy)) {
    const ob = info.blas.openblas;
    lines.push(`- Baseline, ${t} thread(s): numpy ${info.numpy} (${info.python}) on **${info.blas.kind}** \`${path.basename(info.blas.provider)}\`` +
      (ob ? `, core kernel **${ob.corename}**, ${ob.threads} thread(s), \`${ob.config}\`` : ""));
  }
  lines.push(`- OpenBLAS environment: ${rep.method.openblasEnv}, so it picks its own kernel for this CPU (listed above)`);
  const peaks = Object.entries(rep.peak.measuredGflops).map(([t, g]) => `${t} thread(s): ${g?.toFixed(1)} GFLOP/s`);
  lines.push(`- Measured FMA peak (${rep.peak.isa}): ${peaks.join(", ")}`);
  lines.push("");
  lines.push(
    `GFLOP/s = 2mnk / time, single precision. ${rep.method.timing} ops: NN = A*B, NT = A*B^T, TN = A^T*B (row-major ` +
      "operands, as stored). naive: single-threaded triple loop. CPU idle before: share of the CPUs idle just before " +
      "that row was measured (other processes share the machine).",
  );
  lines.push("");
  lines.push("| shape (m x n x k) | op | threads | ours GFLOP/s | OpenBLAS GFLOP/s | ratio min | ratio median | ratio max | ours % peak | OpenBLAS % peak | naive | CPU idle before |");
  lines.push("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  const sp = (s) => `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;
  for (const r of rep.results) {
    const op = `${r.transA ? "T" : "N"}${r.transB ? "T" : "N"}`;
    lines.push(
      `| ${r.shape} (${r.m}x${r.n}x${r.k}) | ${op} | ${r.threads} | ${sp(r.ours)} | ${sp(r.openblas)} | ` +
        `${r.ratio.min.toFixed(2)} | **${r.ratio.median.toFixed(2)}** | ${r.ratio.max.toFixed(2)} | ${r.oursPctOfPeak ?? "-"} | ${r.openblasPctOfPeak ?? "-"} | ` +
        `${r.naive == null ? (r.threads === 1 ? "not run" : "-") : r.naive.toFixed(2)} | ` +
        `${r.idleBefore == null ? "-" : `${Math.round(r.idleBefore * 100)}%`} |`,
    );
  }
  lines.push("");
  lines.push("## Reading it");
  lines.push("");
  const threads = opts.threads ?? [...new Set(rep.results.map((r) => r.threads))];
  for (const t of threads) {
    const rows = rep.results.filter((r) => r.threads === t);
    if (!rows.length) continue;
    const med = rows.map((r) => r.ratio.median);
    const worst = rows.reduce((a, b) => (a.ratio.median <= b.ratio.median ? a : b));
    lines.push(
      `- ${t} thread(s): per-shape median ratio ours/OpenBLAS ${Math.min(...med).toFixed(2)}–${Math.max(...med).toFixed(2)} ` +
        `(geometric mean ${geomean(med).toFixed(2)}), lowest on ${worst.shape}; the lowest single round of any shape: ` +
        `${Math.min(...rows.map((r) => r.ratio.min)).toFixed(2)}. Ours reaches ${Math.min(...rows.map((r) => r.oursPctOfPeak)).toFixed(0)}-` +
        `${Math.max(...rows.map((r) => r.oursPctOfPeak)).toFixed(0)}% of the measured FMA peak (median rounds).`,
    );
  }
  const naiveRows = rep.results.filter((r) => r.naive != null);
  if (naiveRows.length) {
    const speedups = naiveRows.map((r) => r.ours.median / r.naive);
    lines.push(
      `- The naive triple loop (single thread, baseline SSE2, measured only up to 2^30 multiply-adds, so not at 2048^3) ` +
        `runs at ${Math.min(...naiveRows.map((r) => r.naive)).toFixed(2)}-${Math.max(...naiveRows.map((r) => r.naive)).toFixed(2)} GFLOP/s; ` +
        `the blocked kernel is ${Math.min(...speedups).toFixed(0)}-${Math.max(...speedups).toFixed(0)}x faster on one thread.`,
    );
  }
  lines.push(
    "- Peak: the FMA microbenchmark measures what the vector units sustain with no memory traffic (the 2-thread " +
      "figure assumes both logical CPUs are free; on a busy machine it and the % of peak columns are only indicative).",
  );
  lines.push(
    "- Noise: the machine may be shared, so single calls vary by tens of percent; the two sides alternate round by " +
      "round and the ratio is taken within a round. OpenBLAS's 2-thread workers spin after each call, so its worker " +
      "waits 0.3 s before handing the cores back to ours.",
  );
  lines.push("");
  lines.push(...conditionsMarkdown(c));
  return lines.join("\n");
}

await runBenchmark("sgemm", main);
