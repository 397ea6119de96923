#!/usr/bin/env node
// OPTQ vs RTN on a LLaMA model directory: full precision, RTN and OPTQ (act-order off and on) at
// 4/3/2 bits, group 128 and per row, with the fixtures' perplexity protocol
// (fixtures/README.md): encode the validation text as one string without special tokens, cut the
// ids into non-overlapping windows of L tokens from the start (the last partial one dropped),
// perplexity = exp(mean NLL over all predicted tokens of all windows).
//
//   node quality.mjs --model DIR [--windows N] [--seq-len L] [--text FILE] [--batch B] [--configs fp,rtn-3/128,optq-3/128-act,...]
//                    [--calib FILE] [--samples 128] [--calib-len 512]   (OPTQ calibration, sampled as GPTQ does)
//   node quality.mjs --render        (rewrite results/quality.md from results/quality.json)
//
// Every configuration runs in a fresh child process, so its load and quantize memory (tensor
// peak bytes and the process's peak RSS) are its own. Results are merged, keyed by model, into
// results/quality.json, and results/quality.md is regenerated from all of them.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const CONFIGS = ["fp"];
// OPTQ suffixes: -act = act-order; -flat = not true-sequential (a block's linears all calibrated on full-precision inputs).
for (const b of [4, 3, 2]) for (const g of ["128", "row"]) CONFIGS.push(`rtn-${b}/${g}`, `optq-${b}/${g}`, `optq-${b}/${g}-act`, `optq-${b}/${g}-flat`, `optq-${b}/${g}-act-flat`);

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    const value = argv[i + 1] !== undefined && !argv[i + 1].startsWith("--") ? argv[++i] : "true";
    out[key] = value;
  }
  return out;
}

const MiB = 1024 * 1024;
const maxRssBytes = () => process.resourceUsage().maxRSS * 1024;

/** One configuration, in this (child) process: load, quantize, evaluate; prints one JSON line. */
async function runOne(job) {
  const T = await import("@modulora/tensor");
  const { loadLlama, evaluatePerplexity, quantizeModel, LINEAR_NAMES, sampleCalibrationWindows } = await import("@modulora/llama");
  const { rtnQuantizer } = await import("@modulora/quantizer-rtn");
  const { optqQuantizer } = await import("@modulora/quantizer-optq");
  const ids = new Int32Array(readFileSync(job.idsPath).buffer.slice(0));
  const method = job.config === "fp" ? "fp" : job.config.split("-")[0];
  const row = {
    config: job.config, method, actOrder: /-act(-flat)?$/.test(job.config), trueSequential: method === "optq" ? !job.config.endsWith("-flat") : null, bits: null, groupSize: null,
  };

  T.resetPeakMemory();
  let t = performance.now();
  const { model } = await loadLlama(job.dir);
  row.load = { seconds: (performance.now() - t) / 1000, peakBytes: T.memory().peakBytes, bytes: T.memory().bytes, maxRssBytes: maxRssBytes() };

  const linearBytes = () => model.layers.reduce((s, l) => s + LINEAR_NAMES.reduce((a, n) => a + l.linears[n].storageBytes(), 0), 0);
  row.linearBytesBefore = linearBytes();
  if (job.config !== "fp") {
    const [bits, g] = job.config.replace(/^\w+-/, "").replace(/(-act)?(-flat)?$/, "").split("/");
    row.bits = Number(bits);
    row.groupSize = g === "row" ? "row" : Number(g);
    const calibIds = row.method === "optq" ? new Int32Array(readFileSync(job.calibIdsPath).buffer.slice(0)) : null;
    const extra = row.method === "optq"
      ? { actOrder: row.actOrder, trueSequential: row.trueSequential, calibration: { ids: sampleCalibrationWindows(calibIds, job.samples, job.calibLen, 0) } }
      : {};
    T.resetPeakMemory();
    t = performance.now();
    const r = await quantizeModel(model, row.method === "optq" ? optqQuantizer : rtnQuantizer, { bits: row.bits, groupSize: row.groupSize, ...extra });
    row.calibrationSeconds = r.calibrationSeconds;
    row.quantize = {
      seconds: (performance.now() - t) / 1000, peakBytes: T.memory().peakBytes, bytes: T.memory().bytes, maxRssBytes: maxRssBytes(),
      bitsPerWeight: r.bitsPerWeight, meanError: r.report.reduce((s, x) => s + x.error, 0) / r.report.length,
      maxError: Math.max(...r.report.map((x) => x.error)), layers: r.report.length,
    };
  }
  row.linearBytes = linearBytes();
  row.modelBytes = T.memory().bytes;

  t = performance.now();
  const p = evaluatePerplexity(model, ids, { seqLen: job.seqLen, maxWindows: job.windows ?? undefined, batchSize: job.batch });
  row.eval = { seconds: (performance.now() - t) / 1000, perplexity: p.perplexity, nll: p.nll, windows: p.windows, tokens: p.tokens, maxRssBytes: maxRssBytes() };
  model.dispose();
  process.stdout.write(`${JSON.stringify(row)}\n`);
}

function git(args) {
  const r = spawnSync("git", args, { cwd: repo, encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

async function main(args) {
  if (!args.model) throw new Error("usage: node quality.mjs --model DIR [--windows N] [--seq-len L] [--text FILE] [--batch B] [--configs fp,4/128,...]");
  const dir = resolve(args.model);
  const name = basename(dir);
  const refPath = join(dir, "reference.json");
  const ref = existsSync(refPath) ? JSON.parse(readFileSync(refPath, "utf8")) : {};
  const refKey = Object.keys(ref).find((k) => /^valid_ppl_seq\d+$/.test(k));
  const seqLen = Number(args["seq-len"] ?? (refKey ? refKey.slice("valid_ppl_seq".length) : 512));
  const windows = args.windows ? Number(args.windows) : null;
  const batch = Number(args.batch ?? 4);
  const textPath = resolve(args.text ?? join(repo, "fixtures/data/lm/valid.txt"));
  const configs = args.configs ? args.configs.split(",") : CONFIGS;
  for (const c of configs) if (!CONFIGS.includes(c)) throw new Error(`unknown config ${c}; known: ${CONFIGS.join(", ")}`);

  const { LlamaTokenizer, encodeInChunks } = await import("@modulora/llama");
  const T = await import("@modulora/tensor");
  let t = performance.now();
  const ids = LlamaTokenizer.fromDir(dir).encode(readFileSync(textPath, "utf8"), { addSpecialTokens: false });
  const tokenizeSeconds = (performance.now() - t) / 1000;
  const tmp = mkdtempSync(join(os.tmpdir(), "optq-quality-"));
  const idsPath = join(tmp, "ids.bin");
  writeFileSync(idsPath, new Uint8Array(Int32Array.from(ids).buffer));
  // The calibration text is tokenized once here (as one string, without special tokens) and
  // handed to the children as ids; each OPTQ child samples its windows from them (seed 0).
  const calibPath = resolve(args.calib ?? "/work/shared/data/lm/calib.txt");
  const samples = Number(args.samples ?? 128);
  const calibLen = Number(args["calib-len"] ?? 512);
  let calibIdsPath = null;
  if (configs.some((c) => c.startsWith("optq"))) {
    t = performance.now();
    const cids = encodeInChunks(LlamaTokenizer.fromDir(dir), readFileSync(calibPath, "utf8"));
    calibIdsPath = join(tmp, "calib.bin");
    writeFileSync(calibIdsPath, new Uint8Array(Int32Array.from(cids).buffer));
    console.error(`calibration: ${cids.length} tokens from ${calibPath} (${((performance.now() - t) / 1000).toFixed(1)} s to tokenize); ${samples} windows of ${calibLen}`);
  }
  console.error(`${name}: ${ids.length} tokens (${tokenizeSeconds.toFixed(1)} s to tokenize), ${Math.floor(ids.length / seqLen)} windows of ${seqLen}; evaluating ${windows ?? "all"}`);

  const loadBefore = os.loadavg();
  const rows = [];
  try {
    for (const config of configs) {
      t = performance.now();
      const job = { dir, config, seqLen, windows: args[`windows-${config}`] ? Number(args[`windows-${config}`]) : windows, batch, idsPath, calibIdsPath, samples, calibLen };
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--one", JSON.stringify(job)], { encoding: "utf8", maxBuffer: 64 * MiB, stdio: ["ignore", "pipe", "inherit"] });
      if (r.status !== 0) throw new Error(`config ${config} failed (exit ${r.status})`);
      const row = JSON.parse(r.stdout.trim().split("\n").pop());
      rows.push(row);
      console.error(`${name} ${config}: ppl ${row.eval.perplexity.toFixed(3)} (${row.eval.windows} windows), ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }

  const ci = T.cpuInfo();
  const entry = {
    model: name, dir: args.model, seqLen, windows: rows[0].eval.windows, windowsAvailable: Math.floor(ids.length / seqLen), tokens: ids.length,
    text: args.text ?? "fixtures/data/lm/valid.txt", referencePerplexity: refKey ? ref[refKey] : null, referenceWindows: ref.valid_windows ?? null,
    batch, command: `node quality.mjs ${process.argv.slice(2).join(" ")}`, date: new Date().toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model ?? "unknown", logicalCpus: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), isa: ci.active,
      threads: T.getNumThreads(), node: process.version, addon: process.env.MODULORA_KERNELS_PATH ?? "kernels/build/Release/modulora_kernels.node",
    },
    commit: git(["rev-parse", "--short", "HEAD"]), loadavg: { before: loadBefore, after: os.loadavg() }, rows,
  };
  const jsonPath = join(here, "results/quality.json");
  const all = existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, "utf8")) : { models: {} };
  // Rows accumulate across runs (keyed by config and window count), so long rows can run separately.
  const old = all.models[name]?.rows ?? [];
  entry.calibration = { text: args.calib ?? "/work/shared/data/lm/calib.txt", samples, seqLen: calibLen, seed: 0 };
  entry.rows = [...old.filter((o) => !rows.some((r) => r.config === o.config && r.eval.windows === o.eval.windows)), ...rows];
  entry.commands = [...new Set([...(all.models[name]?.commands ?? []), entry.command])];
  all.models[name] = entry;
  writeFileSync(jsonPath, `${JSON.stringify(all, null, 2)}\n`);
  writeFileSync(join(here, "results/quality.md"), markdown(all));
  console.error(`wrote results/quality.json and results/quality.md`);
}

const fmt = (x, d = 2) => (x === null || x === undefined ? "–" : x.toFixed(d));
const mib = (b) => (b / MiB).toFixed(1);

function markdown(all) {
  const lines = ["# OPTQ vs RTN: perplexity at 4/3/2 bits, group 128 and per row, act-order off and on", ""];
  lines.push(
    "Perplexity with the fixtures' protocol (`fixtures/README.md`): `fixtures/data/lm/valid.txt` encoded as one string without special tokens, cut into non-overlapping windows from the start, perplexity = exp(mean NLL over every predicted token). RTN is `@modulora/quantizer-rtn` (GPTQ's min-max rule, asymmetric, integer zero points, f16 scales); OPTQ is `@modulora/quantizer-optq` (same grid, percdamp 0.01, blocks of 128, act-order where marked) calibrated by `quantizeModel`'s driver on windows sampled from the calibration text, true-sequentially inside each block (k,v,q → o → up,gate → down) except in the rows marked *not true-seq.* (all of a block's linears calibrated on full-precision inputs); both applied to the 7 linears of every block; embeddings, norms and lm_head stay in f32. Bits per weight count codes and all metadata. Each row runs in its own process: *load* is `loadLlama` (safetensors → f32 model), *quantize* is `quantizeModel`; *peak* is `memory().peakBytes` (tensor storage high-water mark during that step, reset before it), *RSS* the process's peak resident set size at the end of that step (it includes the Node runtime, the tokenizer and the mapped addon). *Linear weights* are the 28 (tiny) / 42 (small) block linears as held in memory (packed codes, f16 scales, u8 zeros); *whole model* adds the f32 embeddings, norms and lm_head.",
    "",
  );
  for (const e of Object.values(all.models)) {
    lines.push(`## ${e.model}`, "");
    lines.push(`- Commands (from \`benchmarks/optq-quality\`): ${(e.commands ?? [e.command]).map((c) => `\`${c}\``).join("; ")}; commit ${e.commit ?? "?"}, ${e.date}`);
    if (e.calibration) lines.push(`- OPTQ calibration: ${e.calibration.samples} windows of ${e.calibration.seqLen} tokens sampled (seed 0) from \`${e.calibration.text}\``);
    lines.push(`- Machine: ${e.machine.cpu}, ${e.machine.logicalCpus} logical CPUs (shared with other jobs; load average ${e.loadavg.before.map((x) => x.toFixed(1)).join(", ")} before, ${e.loadavg.after.map((x) => x.toFixed(1)).join(", ")} after), ${e.machine.memGiB} GiB, ISA path \`${e.machine.isa}\`, ${e.machine.threads} kernel threads, Node ${e.machine.node}; addon ${e.machine.addon}`);
    lines.push(`- Evaluation: the *windows* column says how many of the ${e.windowsAvailable} windows of ${e.seqLen} tokens (${e.tokens} tokens in the text), ${e.windows * (e.seqLen - 1)} predicted tokens, ${e.batch} windows per forward.${e.referencePerplexity ? ` Reference (transformers, float32, all ${e.referenceWindows ?? e.windowsAvailable} windows): ${e.referencePerplexity.toFixed(4)}.` : ""}`);
    lines.push("");
    lines.push("| config | windows | bits/weight | perplexity | Δ vs fp | mean / max rel. weight error | linear weights | whole model | load s | load peak | load RSS | quantize s | quantize peak | quantize RSS | eval s |");
    lines.push("|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    const sorted = [...e.rows].sort((a, b) => a.eval.windows - b.eval.windows || CONFIGS.indexOf(a.config) - CONFIGS.indexOf(b.config));
    for (const r of sorted) {
      const fp = e.rows.find((x) => x.config === "fp" && x.eval.windows === r.eval.windows);
      const q = r.quantize;
      const optq = `OPTQ${r.actOrder ? " act-order" : ""}${r.trueSequential === false ? " (not true-seq.)" : ""}`;
      const label = r.config === "fp" ? "f32" : `${r.method === "optq" ? optq : "RTN"} ${r.bits}-bit, ${r.groupSize === "row" ? "per row" : `group ${r.groupSize}`}`;
      lines.push(
        `| ${label} | ${r.eval.windows} | ${q ? fmt(q.bitsPerWeight, 4) : "32"} | ${fmt(r.eval.perplexity, 3)} | ${fp && r !== fp ? `${r.eval.perplexity >= fp.eval.perplexity ? "+" : ""}${fmt(r.eval.perplexity - fp.eval.perplexity, 3)}` : ""} | ${q ? `${fmt(q.meanError, 3)} / ${fmt(q.maxError, 3)}` : ""} | ${mib(r.linearBytes)} MiB | ${mib(r.modelBytes)} MiB | ${fmt(r.load.seconds)} | ${mib(r.load.peakBytes)} MiB | ${mib(r.load.maxRssBytes)} MiB | ${q ? fmt(q.seconds) : ""} | ${q ? `${mib(q.peakBytes)} MiB` : ""} | ${q ? `${mib(q.maxRssBytes)} MiB` : ""} | ${fmt(r.eval.seconds, 1)} |`,
      );
    }
    lines.push("");
  }
  // The discussion is written by hand into quality.json ("discussion": [paragraphs]) and survives re-runs.
  if (all.discussion?.length) lines.push("## Discussion", "", ...all.discussion.flatMap((p) => [p, ""]));
  return `${lines.join("\n")}\n`;
}

const args = parseArgs(process.argv.slice(2));
if (args.one) await runOne(JSON.parse(args.one));
else if (args.render) writeFileSync(join(here, "results/quality.md"), markdown(JSON.parse(readFileSync(join(here, "results/quality.json"), "utf8"))));
else await main(args);
