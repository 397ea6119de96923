#!/usr/bin/env node
// Where OPTQ's time goes on one model: tokenizing the calibration text, the driver's calibration
// forwards + Hessian accumulation, and the plugin (H scaling, Cholesky/inverse, column loop, packing).
//
//   node speed.mjs --model DIR [--calib FILE] [--samples 128] [--seq-len 512] [--bits 4] [--group 128] [--act-order] [--true-sequential false]
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";

const here = dirname(fileURLToPath(import.meta.url));
// The shared data beside the repository (../shared relative to its root), unless --calib names a file.
const DEFAULT_CALIB = resolve(here, "../../../shared/data/lm/calib.txt");
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith("--") ? all[i + 1] : "true"]);
  return acc;
}, []));
const T = await import("@modulora/tensor");
const { loadLlama, LlamaTokenizer, quantizeModel, encodeInChunks, sampleCalibrationWindows } = await import("@modulora/llama");
const { optqQuantizer } = await import("@modulora/quantizer-optq");

const { startConditions } = await import("../conditions.mjs");
const dir = resolve(args.model);
// Conditions (../conditions.mjs): machine, load, commit and dirty paths; refuses an untracked addon.
const cond = startConditions({ threads: T.getNumThreads() });
const loadBefore = os.loadavg();
const samples = Number(args.samples ?? 128);
const seqLen = Number(args["seq-len"] ?? 512);
const t0 = performance.now();
const { model } = await loadLlama(dir);
const load = (performance.now() - t0) / 1000;
let t = performance.now();
const tokenizer = LlamaTokenizer.fromDir(dir);
const ids = encodeInChunks(tokenizer, readFileSync(resolve(args.calib ?? DEFAULT_CALIB), "utf8"));
const tokenize = (performance.now() - t) / 1000;
let pluginSeconds = 0;
const timed = { ...optqQuantizer, quantize(w, o, s) { const a = performance.now(); const q = optqQuantizer.quantize(w, o, s); pluginSeconds += (performance.now() - a) / 1000; return q; } };
t = performance.now();
const r = await quantizeModel(model, timed, {
  bits: Number(args.bits ?? 4), groupSize: args.group === "row" ? "row" : Number(args.group ?? 128), actOrder: args["act-order"] === "true",
  trueSequential: args["true-sequential"] !== "false",
  calibration: { ids: sampleCalibrationWindows(ids, samples, seqLen, 0) }, measureError: false,
});
const quantize = (performance.now() - t) / 1000;
const row = {
  model: dir.split("/").pop(), samples, seqLen, bits: Number(args.bits ?? 4), group: args.group ?? 128, actOrder: args["act-order"] === "true",
  trueSequential: args["true-sequential"] !== "false",
  seconds: {
    load, tokenize, quantizeModel: quantize, calibrationForwards: r.calibrationSeconds - r.statisticsSeconds, hessians: r.statisticsSeconds, plugin: pluginSeconds, other: quantize - r.calibrationSeconds - pluginSeconds, total: load + tokenize + quantize },
  perLayer: r.report.map((x) => ({ name: x.name, seconds: x.seconds })), tokens: ids.length, threads: T.getNumThreads(), cpu: os.cpus()[0]?.model, date: new Date().toISOString(),
};
console.log(JSON.stringify(row.seconds));
if (args.out) {
  row.command = `node speed.mjs ${process.argv.slice(2).join(" ")}`;
  row.commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: here, encoding: "utf8" }).stdout.trim() || null;
  row.loadavg = { before: loadBefore, after: os.loadavg() };
  row.conditions = cond.finish();
  writeFileSync(join(here, args.out), `${JSON.stringify(row, null, 2)}\n`);
  writeFileSync(join(here, "results/speed.md"), markdown());
}

/** results/speed.md from every results/speed*.json. */
function markdown() {
  const runs = readdirSync(join(here, "results")).filter((f) => /^speed.*\.json$/.test(f)).sort().map((f) => ({ file: f, ...JSON.parse(readFileSync(join(here, "results", f), "utf8")) }));
  const s = (x) => (x === undefined ? "–" : x.toFixed(1));
  const lines = [
    "# Where OPTQ's quantization time goes",
    "",
    "One process per run: `loadLlama`, tokenizing the calibration text (in 4 kB pieces), then `quantizeModel` with OPTQ on 128 windows of 512 tokens sampled (seed 0) from it. *Forwards*: the calibration forward passes (embedding, each block's statistics passes, each quantized block's pass for the next block's inputs); *Hessians*: accumulating Σ xᵀx (one f32 SGEMM per micro-batch and distinct input, summed in f64); *plugin*: `optqQuantize` (H scaling, dead inputs, damping, Cholesky, inverse, the column loop with lazy block updates, all f64) and packing; *other*: the driver's bookkeeping.",
    "",
    "| run | model | bits / group | act-order | true-sequential | load s | tokenize s | forwards s | Hessians s | plugin s | other s | total s | commit | load average before → after |",
    "|:--|:--|:--|:--|:--|--:|--:|--:|--:|--:|--:|--:|:--|:--|",
  ];
  for (const r of runs) {
    const t = r.seconds;
    const fwd = t.calibrationForwards ?? t.calibrationForwardsAndHessians;
    lines.push(`| ${r.file} | ${r.model} | ${r.bits} / ${r.group} | ${r.actOrder ? "on" : "off"} | ${r.trueSequential === false ? "off" : r.trueSequential ? "on" : "off (before it existed)"} | ${s(t.load)} | ${s(t.tokenize)} | ${s(fwd)}${t.hessians === undefined ? " (with Hessians)" : ""} | ${s(t.hessians)} | ${s(t.plugin)} | ${s(t.other)} | ${s(t.total)} | ${r.commit ?? "?"} | ${r.loadavg ? `${r.loadavg.before[0].toFixed(1)} → ${r.loadavg.after[0].toFixed(1)}` : "–"} |`);
  }
  const first = runs[0];
  if (first) lines.push("", `Machine: ${first.cpu}, ${first.threads} kernel threads. Commands: ${runs.map((r) => `\`${r.command ?? "node speed.mjs"}\``).join("; ")}.`);
  return `${lines.join("\n")}\n`;
}
