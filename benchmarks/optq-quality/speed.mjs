#!/usr/bin/env node
// Where OPTQ's time goes on one model: tokenizing the calibration text, the driver's calibration
// forwards + Hessian accumulation, and the plugin (H scaling, Cholesky/inverse, column loop, packing).
//
//   node speed.mjs --model DIR [--calib FILE] [--samples 128] [--seq-len 512] [--bits 4] [--group 128] [--act-order] [--true-sequential false]
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";

const here = dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith("--") ? all[i + 1] : "true"]);
  return acc;
}, []));
const T = await import("@modulora/tensor");
const { loadLlama, LlamaTokenizer, quantizeModel, encodeInChunks, sampleCalibrationWindows } = await import("@modulora/llama");
const { optqQuantizer } = await import("@modulora/quantizer-optq");

const dir = resolve(args.model);
const samples = Number(args.samples ?? 128);
const seqLen = Number(args["seq-len"] ?? 512);
const t0 = performance.now();
const { model } = await loadLlama(dir);
const load = (performance.now() - t0) / 1000;
let t = performance.now();
const tokenizer = LlamaTokenizer.fromDir(dir);
const ids = encodeInChunks(tokenizer, readFileSync(resolve(args.calib ?? "/work/shared/data/lm/calib.txt"), "utf8"));
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
if (args.out) writeFileSync(join(here, args.out), `${JSON.stringify(row, null, 2)}\n`);
