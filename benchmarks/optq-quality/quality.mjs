#!/usr/bin/env node
// OPTQ vs RTN on a LLaMA model directory: full precision, RTN and OPTQ (act-order off and on,
// true-sequential on and off) at 4/3/2 bits, group 128 and per row, with the fixtures'
// perplexity protocol (see ../llama-quality/harness.mjs).
//
//   node quality.mjs --model DIR [--windows N] [--seq-len L] [--text FILE] [--batch B] [--configs fp,rtn-3/128,optq-3/128-act,...]
//                    [--calib FILE] [--samples 128] [--calib-len 512]   (OPTQ calibration, sampled as GPTQ does)
//   node quality.mjs --render        (rewrite results/quality.md from results/quality.json)
//
// Every configuration runs in a fresh child process, so its load and quantize memory (tensor
// peak bytes and the process's peak RSS) are its own. Rows are merged, keyed by model, config and
// window count, into results/quality.json, and results/quality.md is regenerated from all of them.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { MEASUREMENT_NOTE, ROW_ALIGN, ROW_HEADER, benchmarkEntry, discussion, machineLine, parseArgs, rowCells, runConfig, runConfigs } from "../llama-quality/harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
// The shared data beside the repository (../shared relative to its root), unless --calib names a file.
const DEFAULT_CALIB = resolve(here, "../../../shared/data/lm/calib.txt");
const CONFIGS = ["fp"];
// OPTQ suffixes: -act = act-order; -flat = not true-sequential (a block's linears all calibrated on full-precision inputs).
for (const b of [4, 3, 2]) for (const g of ["128", "row"]) CONFIGS.push(`rtn-${b}/${g}`, `optq-${b}/${g}`, `optq-${b}/${g}-act`, `optq-${b}/${g}-flat`, `optq-${b}/${g}-act-flat`);

/** One configuration, in this (child) process. */
async function runOne(job) {
  const method = job.config === "fp" ? "fp" : job.config.split("-")[0];
  const row = {
    config: job.config, method, actOrder: /-act(-flat)?$/.test(job.config), trueSequential: method === "optq" ? !job.config.endsWith("-flat") : null, bits: null, groupSize: null,
  };
  await runConfig(job, row, async (model) => {
    if (method === "fp") return null;
    const { quantizeModel, sampleCalibrationWindows } = await import("@modulora/llama");
    const { rtnQuantizer } = await import("@modulora/quantizer-rtn");
    const { optqQuantizer } = await import("@modulora/quantizer-optq");
    const [bits, g] = job.config.replace(/^\w+-/, "").replace(/(-act)?(-flat)?$/, "").split("/");
    row.bits = Number(bits);
    row.groupSize = g === "row" ? "row" : Number(g);
    if (method === "rtn") return quantizeModel(model, rtnQuantizer, { bits: row.bits, groupSize: row.groupSize });
    const calibIds = new Int32Array(readFileSync(job.calibIdsPath).buffer.slice(0));
    return quantizeModel(model, optqQuantizer, {
      bits: row.bits, groupSize: row.groupSize, actOrder: row.actOrder, trueSequential: row.trueSequential,
      calibration: { ids: sampleCalibrationWindows(calibIds, job.samples, job.calibLen, 0) },
    });
  });
}

async function main(args) {
  // The calibration text is tokenized once (in 4 kB pieces, without special tokens) and handed to
  // the children as ids; each OPTQ child samples its windows from them (seed 0).
  const calibPath = resolve(args.calib ?? DEFAULT_CALIB);
  const samples = Number(args.samples ?? 128);
  const calibLen = Number(args["calib-len"] ?? 512);
  const prepare = async ({ dir, tmp, configs }) => {
    if (!configs.some((c) => c.startsWith("optq"))) return { calibIdsPath: null, samples, calibLen };
    const { LlamaTokenizer, encodeInChunks } = await import("@modulora/llama");
    const t = performance.now();
    const cids = encodeInChunks(LlamaTokenizer.fromDir(dir), readFileSync(calibPath, "utf8"));
    const calibIdsPath = join(tmp, "calib.bin");
    writeFileSync(calibIdsPath, new Uint8Array(Int32Array.from(cids).buffer));
    console.error(`calibration: ${cids.length} tokens from ${calibPath} (${((performance.now() - t) / 1000).toFixed(1)} s to tokenize); ${samples} windows of ${calibLen}`);
    return { calibIdsPath, samples, calibLen };
  };
  const entry = await runConfigs({ script: fileURLToPath(import.meta.url), args, known: CONFIGS, tmpPrefix: "optq-quality-", prepare });
  const jsonPath = join(here, "results/quality.json");
  const all = existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, "utf8")) : { models: {} };
  // Rows accumulate across runs (keyed by config and window count), so long rows can run separately.
  const old = all.models[entry.model]?.rows ?? [];
  entry.calibration = { text: args.calib ?? "../shared/data/lm/calib.txt", samples, seqLen: calibLen, seed: 0 };
  entry.rows = [...old.filter((o) => !entry.rows.some((r) => r.config === o.config && r.eval.windows === o.eval.windows)), ...entry.rows];
  entry.commands = [...new Set([...(all.models[entry.model]?.commands ?? []), entry.command])];
  all.models[entry.model] = entry;
  writeFileSync(jsonPath, `${JSON.stringify(all, null, 2)}\n`);
  writeFileSync(join(here, "results/quality.md"), markdown(all));
  console.error(`wrote results/quality.json and results/quality.md`);
}

function markdown(all) {
  const lines = ["# OPTQ vs RTN: perplexity at 4/3/2 bits, group 128 and per row, act-order off and on", ""];
  lines.push(
    `Perplexity with the fixtures' protocol (\`fixtures/README.md\`): \`fixtures/data/lm/valid.txt\` encoded as one string without special tokens, cut into non-overlapping windows from the start, perplexity = exp(mean NLL over every predicted token). RTN is \`@modulora/quantizer-rtn\` (GPTQ's min-max rule, asymmetric, integer zero points, f16 scales); OPTQ is \`@modulora/quantizer-optq\` (same grid, percdamp 0.01, blocks of 128, act-order where marked) calibrated by \`quantizeModel\`'s driver on windows sampled from the calibration text, true-sequentially inside each block (k,v,q → o → up,gate → down) except in the rows marked *not true-seq.* (all of a block's linears calibrated on full-precision inputs); both applied to the 7 linears of every block; embeddings, norms and lm_head stay in f32. ${MEASUREMENT_NOTE}`,
    "",
  );
  for (const e of Object.values(all.models)) {
    lines.push(`## ${e.model}`, "");
    lines.push(`- Commands (from \`benchmarks/optq-quality\`): ${(e.commands ?? [e.command]).map((c) => `\`${c}\``).join("; ")}; commit ${e.commit ?? "?"}, ${e.date}`);
    if (e.calibration) lines.push(`- OPTQ calibration: ${e.calibration.samples} windows of ${e.calibration.seqLen} tokens sampled (seed 0) from \`${e.calibration.text}\``);
    lines.push(machineLine(e));
    lines.push(`- Evaluation: the *windows* column says how many of the ${e.windowsAvailable} windows of ${e.seqLen} tokens (${e.tokens} tokens in the text), ${e.windows * (e.seqLen - 1)} predicted tokens, ${e.batch} windows per forward.${e.referencePerplexity ? ` Reference (transformers, float32, all ${e.referenceWindows ?? e.windowsAvailable} windows): ${e.referencePerplexity.toFixed(4)}.` : ""}`);
    lines.push("");
    lines.push(`| config | windows | ${ROW_HEADER} |`);
    lines.push(`|:--|--:|${ROW_ALIGN}|`);
    const sorted = [...e.rows].sort((a, b) => a.eval.windows - b.eval.windows || CONFIGS.indexOf(a.config) - CONFIGS.indexOf(b.config));
    for (const r of sorted) {
      const fp = e.rows.find((x) => x.config === "fp" && x.eval.windows === r.eval.windows);
      const optq = `OPTQ${r.actOrder ? " act-order" : ""}${r.trueSequential === false ? " (not true-seq.)" : ""}`;
      const label = r.config === "fp" ? "f32" : `${r.method === "optq" ? optq : "RTN"} ${r.bits}-bit, ${r.groupSize === "row" ? "per row" : `group ${r.groupSize}`}`;
      lines.push(`| ${label} | ${r.eval.windows} | ${rowCells(r, fp)}`);
    }
    lines.push("");
  }
  lines.push(...discussion(all));
  return `${lines.join("\n")}\n`;
}

await benchmarkEntry(here, { runOne, markdown, main });
