// The perplexity harness shared by the quality benchmarks (llama-quality: RTN; optq-quality: OPTQ
// vs RTN): argument parsing, one configuration per child process (load, quantize, evaluate, with
// its own time and memory), the parent's set-up and entry, and the Markdown cells of a row.
//
// The fixtures' protocol (fixtures/README.md): encode the validation text as one string without
// special tokens, cut the ids into non-overlapping windows of L tokens from the start (the last
// partial one dropped), perplexity = exp(mean NLL over all predicted tokens of all windows).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const MiB = 1024 * 1024;
const maxRssBytes = () => process.resourceUsage().maxRSS * 1024;

/** `--key value` pairs (a flag without a value is "true"). */
export function parseArgs(argv) {
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

/**
 * One configuration, in this (child) process: load, `quantize(model)` (null for full precision;
 * else a quantizeModel result, whose report gives the weight errors), evaluate; prints `row`
 * completed with the measurements as one JSON line.
 */
export async function runConfig(job, row, quantize) {
  const T = await import("@modulora/tensor");
  const { loadLlama, evaluatePerplexity, LINEAR_NAMES } = await import("@modulora/llama");
  const ids = new Int32Array(readFileSync(job.idsPath).buffer.slice(0));

  T.resetPeakMemory();
  let t = performance.now();
  const { model } = await loadLlama(job.dir);
  row.load = { seconds: (performance.now() - t) / 1000, peakBytes: T.memory().peakBytes, bytes: T.memory().bytes, maxRssBytes: maxRssBytes() };

  const linearBytes = () => model.layers.reduce((s, l) => s + LINEAR_NAMES.reduce((a, n) => a + l.linears[n].storageBytes(), 0), 0);
  row.linearBytesBefore = linearBytes();
  T.resetPeakMemory();
  t = performance.now();
  const r = await quantize(model);
  if (r) {
    if (r.calibrationSeconds > 0) row.calibrationSeconds = r.calibrationSeconds;
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

/**
 * The parent: resolves the model, its reference perplexity and the window length, tokenizes the
 * validation text, calls `prepare(tmp)` for extra job fields (e.g. calibration ids), runs every
 * configuration in a child (`script --one JOB`), and returns the model's entry (machine, load
 * average, commit, command, rows).
 */
export async function runConfigs({ script, args, known, tmpPrefix, prepare }) {
  if (!args.model) throw new Error(`usage: node ${basename(script)} --model DIR [--windows N] [--seq-len L] [--text FILE] [--batch B] [--configs ${known.slice(0, 3).join(",")},...]`);
  const dir = resolve(args.model);
  const name = basename(dir);
  const refPath = join(dir, "reference.json");
  const ref = existsSync(refPath) ? JSON.parse(readFileSync(refPath, "utf8")) : {};
  const refKey = Object.keys(ref).find((k) => /^valid_ppl_seq\d+$/.test(k));
  const seqLen = Number(args["seq-len"] ?? (refKey ? refKey.slice("valid_ppl_seq".length) : 512));
  const windows = args.windows ? Number(args.windows) : null;
  const batch = Number(args.batch ?? 4);
  const textPath = resolve(args.text ?? join(repo, "fixtures/data/lm/valid.txt"));
  const configs = args.configs ? args.configs.split(",") : known;
  for (const c of configs) if (!known.includes(c)) throw new Error(`unknown config ${c}; known: ${known.join(", ")}`);

  const { LlamaTokenizer } = await import("@modulora/llama");
  const T = await import("@modulora/tensor");
  let t = performance.now();
  const ids = LlamaTokenizer.fromDir(dir).encode(readFileSync(textPath, "utf8"), { addSpecialTokens: false });
  const tokenizeSeconds = (performance.now() - t) / 1000;
  // Conditions (../conditions.mjs): machine, load, commit and dirty paths; refuses an untracked addon.
  const { startConditions } = await import("../conditions.mjs");
  const cond = startConditions({ threads: T.getNumThreads() });
  const tmp = mkdtempSync(join(os.tmpdir(), tmpPrefix));
  const loadBefore = os.loadavg();
  const rows = [];
  try {
    const idsPath = join(tmp, "ids.bin");
    writeFileSync(idsPath, new Uint8Array(Int32Array.from(ids).buffer));
    const extra = prepare ? await prepare({ dir, tmp, configs }) : {};
    console.error(`${name}: ${ids.length} tokens (${tokenizeSeconds.toFixed(1)} s to tokenize), ${Math.floor(ids.length / seqLen)} windows of ${seqLen}; evaluating ${windows ?? "all"}`);
    for (const config of configs) {
      t = performance.now();
      const job = { dir, config, seqLen, windows: args[`windows-${config}`] ? Number(args[`windows-${config}`]) : windows, batch, idsPath, ...extra };
      const r = spawnSync(process.execPath, [script, "--one", JSON.stringify(job)], { encoding: "utf8", maxBuffer: 64 * MiB, stdio: ["ignore", "pipe", "inherit"] });
      if (r.status !== 0) throw new Error(`config ${config} failed (exit ${r.status})`);
      const row = JSON.parse(r.stdout.trim().split("\n").pop());
      rows.push(row);
      console.error(`${name} ${config}: ppl ${row.eval.perplexity.toFixed(3)} (${row.eval.windows} windows), ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }

  const ci = T.cpuInfo();
  return {
    model: name, dir: args.model, seqLen, windows: rows[0].eval.windows, windowsAvailable: Math.floor(ids.length / seqLen), tokens: ids.length,
    text: args.text ?? "fixtures/data/lm/valid.txt", referencePerplexity: refKey ? ref[refKey] : null, referenceWindows: ref.valid_windows ?? null,
    batch, command: `node ${basename(script)} ${process.argv.slice(2).join(" ")}`, date: new Date().toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model ?? "unknown", logicalCpus: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), isa: ci.active,
      threads: T.getNumThreads(), node: process.version, addon: process.env.MODULORA_KERNELS_PATH ?? "kernels/build/Release/modulora_kernels.node",
    },
    commit: git(["rev-parse", "--short", "HEAD"]), loadavg: { before: loadBefore, after: os.loadavg() }, conditions: cond.finish(), rows,
  };
}

const fmt = (x, d = 2) => (x === null || x === undefined ? "–" : x.toFixed(d));
const mib = (b) => (b / MiB).toFixed(1);

/** How the tables' columns are measured (the part of the introduction both benchmarks share). */
export const MEASUREMENT_NOTE =
  "Bits per weight count codes and all metadata. Each row runs in its own process: *load* is `loadLlama` (safetensors → f32 model), *quantize* is `quantizeModel`; *peak* is `memory().peakBytes` (tensor storage high-water mark during that step, reset before it), *RSS* the process's peak resident set size at the end of that step (it includes the Node runtime, the tokenizer and the mapped addon). *Linear weights* are the 28 (tiny) / 42 (small) block linears as held in memory (packed codes, f16 scales, u8 zeros); *whole model* adds the f32 embeddings, norms and lm_head.";

/** The header cells after the label (and any columns of the caller's own). */
export const ROW_HEADER = "bits/weight | perplexity | Δ vs fp | mean / max rel. weight error | linear weights | whole model | load s | load peak | load RSS | quantize s | quantize peak | quantize RSS | eval s";
export const ROW_ALIGN = "--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:";

/** The cells of a row matching {@link ROW_HEADER}, Δ against `fp` (a row, or undefined). */
export function rowCells(r, fp) {
  const q = r.quantize;
  const delta = fp && r !== fp ? `${r.eval.perplexity >= fp.eval.perplexity ? "+" : ""}${fmt(r.eval.perplexity - fp.eval.perplexity, 3)}` : "";
  return `${q ? fmt(q.bitsPerWeight, 4) : "32"} | ${fmt(r.eval.perplexity, 3)} | ${delta} | ${q ? `${fmt(q.meanError, 3)} / ${fmt(q.maxError, 3)}` : ""} | ${mib(r.linearBytes)} MiB | ${mib(r.modelBytes)} MiB | ${fmt(r.load.seconds)} | ${mib(r.load.peakBytes)} MiB | ${mib(r.load.maxRssBytes)} MiB | ${q ? fmt(q.seconds) : ""} | ${q ? `${mib(q.peakBytes)} MiB` : ""} | ${q ? `${mib(q.maxRssBytes)} MiB` : ""} | ${fmt(r.eval.seconds, 1)} |`;
}

/** The machine line of an entry. */
export function machineLine(e) {
  const c = e.conditions;
  const tree = c ? `; tree ${c.git.dirty ? `dirty (${c.git.dirtyPaths.length} tracked file(s) changed)` : "clean"}, CPU ${c.machine.cpuModel}, ${c.machine.cpusAvailable} CPU(s) available` : "";
  return `- Machine: ${e.machine.cpu}, ${e.machine.logicalCpus} logical CPUs (shared with other jobs; load average ${e.loadavg.before.map((x) => x.toFixed(1)).join(", ")} before, ${e.loadavg.after.map((x) => x.toFixed(1)).join(", ")} after), ${e.machine.memGiB} GiB, ISA path \`${e.machine.isa}\`, ${e.machine.threads} kernel threads, Node ${e.machine.node}; addon ${e.machine.addon}${tree}`;
}

/** The hand-written discussion kept in the JSON ("discussion": [paragraphs]), which survives re-runs. */
export function discussion(all) {
  return all.discussion?.length ? ["## Discussion", "", ...all.discussion.flatMap((p) => [p, ""])] : [];
}

/**
 * A quality script's entry: `--one JOB` runs one configuration in this (child) process,
 * `--render` rewrites `here/results/quality.md` from the committed `quality.json`, anything else
 * runs the whole benchmark.
 */
export async function benchmarkEntry(here, { runOne, markdown, main }) {
  const args = parseArgs(process.argv.slice(2));
  if (args.one) await runOne(JSON.parse(args.one));
  else if (args.render) writeFileSync(join(here, "results/quality.md"), markdown(JSON.parse(readFileSync(join(here, "results/quality.json"), "utf8"))));
  else await main(args);
}
