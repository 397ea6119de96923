#!/usr/bin/env node
// Forward + backward of one tiny-llama-shaped LLaMA block (hidden 256, 4 heads of 64, MLP 768,
// RMSNorm, RoPE, causal attention, SwiGLU, residuals), full-precision weights trained, on the
// CPU. Reports the time of the whole step, GFLOP/s, and where the time goes: each op of the
// block run alone on the same shapes (forward + backward), so the parts add up to the whole.
// No baseline: figures are medians over rounds with their range (min-max); the conditions
// (../conditions.mjs) are recorded and the addon must be the tracked build.
//
//   node block.mjs [--batch 8] [--seq 128] [--rounds 7] [--out results]
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as T from "@modulora/tensor";

import { conditionsMarkdown, runBenchmark, spread, startConditions } from "../conditions.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const B = Number(args.batch ?? 8), S = Number(args.seq ?? 128), rounds = Number(args.rounds ?? 7);
const outDir = path.resolve(args.out ?? path.join(here, "results"));
const cond = await new Promise((resolve) => runBenchmark("block", () => resolve(startConditions({ threads: T.getNumThreads() }))));
const d = 256, H = 4, Dh = 64, F = 768, N = B * S;

const p = (shape, seed, std = 0.05) => T.randn(shape, { seed, std, requiresGrad: true });
const w = { an: T.ones([d], { requiresGrad: true }), q: p([d, d], 1), k: p([d, d], 2), v: p([d, d], 3), o: p([d, d], 4), mn: T.ones([d], { requiresGrad: true }), g: p([F, d], 5), u: p([F, d], 6), dn: p([d, F], 7) };
const x = T.randn([B, S, d], { seed: 9, requiresGrad: true });
const pos = T.arange(S, undefined, 1, { dtype: "i32" });
const params = [...Object.values(w), x];

function block(inp) {
  const h = T.rmsnorm(inp, w.an, 1e-5);
  const q = T.reshape(T.matmul(h, w.q, { transB: true }), [B, S, H, Dh]);
  const k = T.reshape(T.matmul(h, w.k, { transB: true }), [B, S, H, Dh]);
  const v = T.reshape(T.matmul(h, w.v, { transB: true }), [B, S, H, Dh]);
  const a = T.attention(T.rope(q, pos), T.rope(k, pos), v, { causal: true });
  const x2 = T.add(inp, T.matmul(T.reshape(a, [B, S, d]), w.o, { transB: true }));
  const h2 = T.rmsnorm(x2, w.mn, 1e-5);
  return T.add(x2, T.matmul(T.swiglu(T.matmul(h2, w.g, { transB: true }), T.matmul(h2, w.u, { transB: true })), w.dn, { transB: true }));
}

function median(a) {
  const s = [...a].sort((m, n) => m - n);
  return s[Math.floor(s.length / 2)];
}

const spreads = {};
/** Median ms of fn() over rounds (after one warm-up), each call inside tidy; the range goes to spreads[label]. */
function time(fn, label) {
  for (let w = 0; w < 2; w++) T.tidy(fn);
  const ts = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    T.tidy(fn);
    ts.push(performance.now() - t0);
    for (const t of params) t.zeroGrad();
  }
  if (label) spreads[label] = spread(ts);
  return median(ts);
}

// (the whole step first: it also warms the allocator cache and the GEMM buffers for the rest)
const step = time(() => T.backward(T.sum(block(x))), "stepMs");
const fwd = time(() => {
  block(x);
}, "forwardMs");

// Per-op parts on the block's shapes, forward + backward each.
const parts = {};
// Inputs are made once, outside the timed region (random numbers are generated in JS).
const leaves = new Map();
const leaf = (shape, seed) => {
  if (!leaves.has(seed)) {
    const t = T.keep(T.randn(shape, { seed, requiresGrad: true }));
    leaves.set(seed, t);
    params.push(t);
  }
  return leaves.get(seed);
};
for (const [shape, seed] of [[[B, S, d], 1], [[B, S, d], 2], [[B, S, F], 3], [[B, S, H, Dh], 4], [[B, S, H, Dh], 5], [[B, S, H, Dh], 6], [[B, S, d], 7], [[B, S, d], 8], [[B, S, H, Dh], 9], [[B, S, H, Dh], 10], [[B, S, F], 11], [[B, S, F], 12], [[B, S, d], 13], [[B, S, d], 14], [[B, S, d], 15], [[B, S, d], 16]]) leaf(shape, seed);
const bwd = (y) => T.backward(T.sum(y));
parts["matmul (7 projections)"] = time(() => {
  const h = leaf([B, S, d], 1);
  for (const m of [w.q, w.k, w.v]) bwd(T.matmul(h, m, { transB: true }));
  bwd(T.matmul(leaf([B, S, d], 2), w.o, { transB: true }));
  for (const m of [w.g, w.u]) bwd(T.matmul(h, m, { transB: true }));
  bwd(T.matmul(leaf([B, S, F], 3), w.dn, { transB: true }));
});
parts["attention"] = time(() => bwd(T.attention(leaf([B, S, H, Dh], 4), leaf([B, S, H, Dh], 5), leaf([B, S, H, Dh], 6), { causal: true })));
parts["rmsnorm ×2"] = time(() => {
  bwd(T.rmsnorm(leaf([B, S, d], 7), w.an));
  bwd(T.rmsnorm(leaf([B, S, d], 8), w.mn));
});
parts["rope ×2"] = time(() => {
  bwd(T.rope(leaf([B, S, H, Dh], 9), pos));
  bwd(T.rope(leaf([B, S, H, Dh], 10), pos));
});
parts["swiglu"] = time(() => bwd(T.swiglu(leaf([B, S, F], 11), leaf([B, S, F], 12))));
parts["residual adds ×2"] = time(() => {
  bwd(T.add(leaf([B, S, d], 13), leaf([B, S, d], 14)));
  bwd(T.add(leaf([B, S, d], 15), leaf([B, S, d], 16)));
});
const partsSum = Object.values(parts).reduce((s, v) => s + v, 0);

// FLOPs: projections 2·N·(4·d·d + 3·d·F) forward, ×3 for forward + both backward products;
// attention causal forward 4·B·H·Dh·S(S+1)/2, backward 2.5× that.
const projFwd = 2 * N * (4 * d * d + 3 * d * F);
const attnFwd = 4 * B * H * Dh * (S * (S + 1)) / 2;
const flopsFwd = projFwd + attnFwd;
const flopsStep = 3 * projFwd + 3.5 * attnFwd;
const result = {
  benchmark: "block", conditions: cond.finish(), threads: T.getNumThreads(), isa: T.cpuInfo().active,
  shape: { batch: B, seq: S, hidden: d, heads: H, headDim: Dh, mlp: F, tokens: N },
  forwardMs: fwd, stepMs: step, forwardGflops: flopsFwd / fwd / 1e6, stepGflops: flopsStep / step / 1e6,
  tokensPerSecond: N / (step / 1000), spreadMs: spreads, partsMs: parts, partsSumMs: partsSum,
};
mkdirSync(outDir, { recursive: true });
writeFileSync(path.join(outDir, "block.json"), JSON.stringify(result, null, 2) + "\n");
const rows = Object.entries(parts).map(([k, v]) => `| ${k} | ${v.toFixed(2)} | ${((100 * v) / partsSum).toFixed(0)}% |`);
const md = `# LLaMA block forward + backward (tiny-llama shapes), CPU

Medians of ${rounds} runs after a warm-up (range min–max in brackets), ${result.threads} threads, ${result.isa} kernels.
Shape: batch ${B} × seq ${S} = ${N} tokens, hidden ${d}, ${H} heads × ${Dh}, MLP ${F}; all weights trained (full precision), causal.

| measure | value |
|---|---|
| forward | ${fwd.toFixed(2)} ms [${spreads.forwardMs.min.toFixed(2)}–${spreads.forwardMs.max.toFixed(2)}] (${result.forwardGflops.toFixed(1)} GFLOP/s) |
| forward + backward | ${step.toFixed(2)} ms [${spreads.stepMs.min.toFixed(2)}–${spreads.stepMs.max.toFixed(2)}] (${result.stepGflops.toFixed(1)} GFLOP/s, ${result.tokensPerSecond.toFixed(0)} tokens/s) |

FLOPs counted: projections 2·N·(4d² + 3dF) forward and 3× that for forward + backward (input and
weight gradients); causal attention 4·B·H·D·S(S+1)/2 forward and 3.5× that with backward.

## Where the time goes

Each op of the block, forward + backward, run alone on the block's shapes (sum ${partsSum.toFixed(2)} ms vs ${step.toFixed(2)} ms for the block):

| op | ms | share |
|---|---|---|
${rows.join("\n")}

Medians, not minima; see the load average under Conditions for how busy the machine was.

${conditionsMarkdown(result.conditions).join("\n")}`;
writeFileSync(path.join(outDir, "block.md"), md);
console.log(md);
T.dispose([...params, pos]);

