#!/usr/bin/env node
// Calibration-free quantizers side by side on a LLaMA model directory (tiny-llama by default):
// full precision, RTN (asymmetric, integer zeros), HQQ (real zeros; defaults, and with
// optimizeScale) at 2/3/4 bits and NF4 (4-bit, double-quantized absmax), all with groups of 64,
// by the fixtures' perplexity protocol (see ../llama-quality/harness.mjs), with bits per weight
// (codes and all metadata) and quantization time.
//
//   node quality.mjs [--model DIR] [--windows N] [--seq-len L] [--text FILE] [--batch B] [--configs fp,rtn-4,hqq-4,...]
//   node quality.mjs --render        (rewrite results/quality.md from results/quality.json)
//
// Every configuration runs in a fresh child process (its own load, quantize and evaluation time
// and memory). Rows are merged, keyed by model, config and window count, into
// results/quality.json, and results/quality.md is regenerated from all of them.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { MEASUREMENT_NOTE, ROW_ALIGN, ROW_HEADER, benchmarkEntry, discussion, machineLine, parseArgs, repo, rowCells, runConfig, runConfigs } from "../llama-quality/harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const GROUP = 64;
const CONFIGS = ["fp"];
for (const b of [4, 3, 2]) CONFIGS.push(`rtn-${b}`, `hqq-${b}`, `hqq-${b}-os`);
CONFIGS.push("nf4-4");
const LABEL = { fp: "f32", rtn: "RTN", hqq: "HQQ", "hqq-os": "HQQ + optimizeScale", nf4: "NF4 (double-quant)" };

/** The plugin of a method, or null where its package is not built (the NF4 plugin comes from another change). */
async function plugin(method) {
  try {
    if (method === "rtn") return (await import("@modulora/quantizer-rtn")).rtnQuantizer;
    if (method === "hqq") return (await import("@modulora/quantizer-hqq")).hqqQuantizer;
    if (method === "nf4") return (await import("@modulora/quantizer-nf4")).nf4Quantizer ?? null;
  } catch {
    return null;
  }
  throw new Error(`unknown method ${method}`);
}

/** `rtn-4` → { method: "rtn", bits: 4, optimizeScale: false }; `hqq-2-os` → optimizeScale true. */
function parseConfig(config) {
  if (config === "fp") return { method: "fp", bits: null, optimizeScale: false };
  const [method, bits, os] = config.split("-");
  return { method, bits: Number(bits), optimizeScale: os === "os" };
}

/** One configuration, in this (child) process. */
async function runOne(job) {
  const c = parseConfig(job.config);
  const row = { config: job.config, method: c.method, bits: c.bits, groupSize: c.method === "fp" ? null : GROUP, optimizeScale: c.method === "hqq" ? c.optimizeScale : null };
  await runConfig(job, row, async (model) => {
    if (c.method === "fp") return null;
    const { quantizeModel } = await import("@modulora/llama");
    const p = await plugin(c.method);
    if (!p) throw new Error(`the ${c.method} plugin is not built`);
    const extra = c.method === "hqq" ? { optimizeScale: c.optimizeScale } : {};
    return quantizeModel(model, p, { bits: c.bits, groupSize: GROUP, ...extra });
  });
}

async function main(args) {
  args.model ??= relative(process.cwd(), join(repo, "fixtures/tiny-llama")) || ".";
  const wanted = args.configs ? args.configs.split(",") : CONFIGS;
  // A plugin that is not built leaves its rows marked missing instead of failing the run.
  const missing = [];
  for (const m of new Set(wanted.map((c) => parseConfig(c).method).filter((m) => m !== "fp"))) if (!(await plugin(m))) missing.push(m);
  const configs = wanted.filter((c) => !missing.includes(parseConfig(c).method));
  if (missing.length) console.error(`not built, rows marked missing: ${missing.join(", ")} (run pnpm build)`);
  const entry = await runConfigs({ script: fileURLToPath(import.meta.url), args: { ...args, configs: configs.join(",") }, known: CONFIGS, tmpPrefix: "quantizer-quality-" });
  const jsonPath = join(here, "results/quality.json");
  const all = existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, "utf8")) : { models: {} };
  entry.command = entry.command.trim();
  const old = all.models[entry.model]?.rows ?? [];
  entry.rows = [...old.filter((o) => !entry.rows.some((r) => r.config === o.config && r.eval.windows === o.eval.windows)), ...entry.rows];
  entry.missing = wanted.filter((c) => missing.includes(parseConfig(c).method) && !entry.rows.some((r) => r.config === c));
  entry.commands = [...new Set([...(all.models[entry.model]?.commands ?? []), entry.command])];
  all.models[entry.model] = entry;
  writeFileSync(jsonPath, `${JSON.stringify(all, null, 2)}\n`);
  writeFileSync(join(here, "results/quality.md"), markdown(all));
  console.error(`wrote results/quality.json and results/quality.md`);
}

function label(r) {
  if (r.config === "fp") return LABEL.fp;
  const name = r.method === "hqq" && r.optimizeScale ? LABEL["hqq-os"] : LABEL[r.method];
  return `${name} ${r.bits}-bit`;
}

function markdown(all) {
  const lines = ["# Calibration-free quantizers on tiny-llama: RTN, HQQ and NF4, groups of 64", ""];
  lines.push(
    `Perplexity with the fixtures' protocol (\`fixtures/README.md\`): \`fixtures/data/lm/valid.txt\` encoded as one string without special tokens, cut into non-overlapping windows from the start (the last partial one dropped), perplexity = exp(mean NLL over every predicted token). All quantizers get groups (blocks) of ${GROUP} input columns and need no calibration data. *RTN* is \`@modulora/quantizer-rtn\` (GPTQ's min-max rule, asymmetric, integer zero points, f16 scales). *HQQ* is \`@modulora/quantizer-hqq\` with its defaults (p = 0.7, β = 10, κ = 1.01, up to 20 iterations, zero points only; real f16 zero points and f16 scales); *HQQ + optimizeScale* also fits the scale in each iteration. *NF4* is \`@modulora/quantizer-nf4\` (QLoRA's NormalFloat-4 levels per absmax block, the absmax double-quantized). Applied to the 7 linears of every block; embeddings, norms and lm_head stay in f32. *Quantize s* is the wall time of \`quantizeModel\` over those 28 linears. ${MEASUREMENT_NOTE}`,
    "",
  );
  for (const e of Object.values(all.models)) {
    lines.push(`## ${e.model}`, "");
    lines.push(`- Command (from the repository root, after \`pnpm build\`): \`pnpm --filter @modulora/bench-quantizer-quality bench\`, which runs ${(e.commands ?? [e.command]).map((c) => `\`${c}\``).join("; ")} in \`benchmarks/quantizer-quality\`; commit ${e.commit ?? "?"}, ${e.date}`);
    lines.push(machineLine(e));
    lines.push(`- Evaluation: the *windows* column says how many of the ${e.windowsAvailable} windows of ${e.seqLen} tokens (${e.tokens} tokens in the text), ${e.windows * (e.seqLen - 1)} predicted tokens, ${e.batch} windows per forward.${e.referencePerplexity ? ` Reference (transformers, float32, all ${e.referenceWindows ?? e.windowsAvailable} windows): ${e.referencePerplexity.toFixed(4)}.` : ""}`);
    if (e.missing?.length) lines.push(`- Missing (plugin not built when this ran): ${e.missing.join(", ")}`);
    lines.push("");
    lines.push(`| config | windows | ${ROW_HEADER} |`);
    lines.push(`|:--|--:|${ROW_ALIGN}|`);
    const order = (r) => CONFIGS.indexOf(r.config);
    const sorted = [...e.rows].sort((a, b) => a.eval.windows - b.eval.windows || order(a) - order(b));
    for (const r of sorted) {
      const fp = e.rows.find((x) => x.config === "fp" && x.eval.windows === r.eval.windows);
      lines.push(`| ${label(r)} | ${r.eval.windows} | ${rowCells(r, fp)}`);
    }
    for (const c of e.missing ?? []) lines.push(`| ${label({ ...parseConfig(c), config: c })} | – | missing (plugin not built) |`);
    lines.push("");
  }
  lines.push(...discussion(all));
  return `${lines.join("\n")}\n`;
}

await benchmarkEntry(here, { runOne, markdown, main });
