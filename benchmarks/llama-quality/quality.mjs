#!/usr/bin/env node
// Quality, time and memory of a LLaMA model directory in full precision and RTN-quantized
// (4/3/2 bits, group 128 and per row), with the fixtures' perplexity protocol (see harness.mjs).
//
//   node quality.mjs --model DIR [--windows N] [--seq-len L] [--text FILE] [--batch B] [--configs fp,4/128,...]
//   node quality.mjs --render        (rewrite results/quality.md from results/quality.json)
//
// Every configuration runs in a fresh child process, so its load and quantize memory (tensor
// peak bytes and the process's peak RSS) are its own. Results are stored, keyed by model, in
// results/quality.json, and results/quality.md is regenerated from all of them.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MEASUREMENT_NOTE, ROW_ALIGN, ROW_HEADER, benchmarkEntry, discussion, machineLine, parseArgs, rowCells, runConfig, runConfigs } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const CONFIGS = ["fp", "4/128", "4/row", "3/128", "3/row", "2/128", "2/row"];

/** One configuration, in this (child) process. */
async function runOne(job) {
  const row = { config: job.config, bits: null, groupSize: null };
  await runConfig(job, row, async (model) => {
    if (job.config === "fp") return null;
    const { quantizeModel } = await import("@modulora/llama");
    const { rtnQuantizer } = await import("@modulora/quantizer-rtn");
    const [bits, g] = job.config.split("/");
    row.bits = Number(bits);
    row.groupSize = g === "row" ? "row" : Number(g);
    return quantizeModel(model, rtnQuantizer, { bits: row.bits, groupSize: row.groupSize });
  });
}

async function main(args) {
  const entry = await runConfigs({ script: fileURLToPath(import.meta.url), args, known: CONFIGS, tmpPrefix: "llama-quality-" });
  const jsonPath = join(here, "results/quality.json");
  const all = existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, "utf8")) : { models: {} };
  all.models[entry.model] = entry;
  writeFileSync(jsonPath, `${JSON.stringify(all, null, 2)}\n`);
  writeFileSync(join(here, "results/quality.md"), markdown(all));
  console.error(`wrote results/quality.json and results/quality.md`);
}

function markdown(all) {
  const lines = ["# LLaMA quality: full precision vs RTN (4/3/2 bits, group 128 and per row)", ""];
  lines.push(
    `Perplexity with the fixtures' protocol (\`fixtures/README.md\`): \`fixtures/data/lm/valid.txt\` encoded as one string without special tokens, cut into non-overlapping windows from the start, perplexity = exp(mean NLL over every predicted token). RTN is \`@modulora/quantizer-rtn\` (GPTQ's min-max rule, asymmetric, integer zero points, f16 scales) applied by \`quantizeModel\` to the 7 linears of every block; embeddings, norms and lm_head stay in f32. ${MEASUREMENT_NOTE}`,
    "",
  );
  for (const e of Object.values(all.models)) {
    lines.push(`## ${e.model}`, "");
    lines.push(`- Command: \`${e.command}\` (from \`benchmarks/llama-quality\`), commit ${e.commit ?? "?"}, ${e.date}`);
    lines.push(machineLine(e));
    lines.push(`- Evaluation: ${e.windows} of the ${e.windowsAvailable} windows of ${e.seqLen} tokens (${e.tokens} tokens in the text), ${e.windows * (e.seqLen - 1)} predicted tokens, ${e.batch} windows per forward.${e.referencePerplexity ? ` Reference (transformers, float32, all ${e.referenceWindows ?? e.windowsAvailable} windows): ${e.referencePerplexity.toFixed(4)}.` : ""}`);
    lines.push("");
    lines.push(`| config | ${ROW_HEADER} |`);
    lines.push(`|:--|${ROW_ALIGN}|`);
    const fp = e.rows.find((r) => r.config === "fp");
    for (const r of e.rows) {
      const label = r.config === "fp" ? "f32" : `RTN ${r.bits}-bit, ${r.groupSize === "row" ? "per row" : `group ${r.groupSize}`}`;
      lines.push(`| ${label} | ${rowCells(r, fp)}`);
    }
    lines.push("");
  }
  lines.push(...discussion(all));
  return `${lines.join("\n")}\n`;
}

await benchmarkEntry(here, { runOne, markdown, main });
