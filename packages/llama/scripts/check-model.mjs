#!/usr/bin/env node
// Checks a Hugging Face LLaMA directory end to end against the reference outputs it carries
// (fixtures/README.md): logits and hidden states of reference.safetensors (max abs difference and
// relative L2), reference_loss, the tokenizer vectors, and the validation perplexity by the
// fixtures' protocol. Prints a Markdown report with timings; exits 1 if a check fails.
//
//   node scripts/check-model.mjs <model dir> [--windows N] [--seq-len L] [--batch B] [--text PATH]
//
// Needs the built package (dist/). Pass criteria: relative L2 ≤ 1e-3 on every reference tensor
// (the small-llama references were computed at TF32-like precision), |Δ reference_loss| ≤ 1e-4,
// exact tokenizer vectors, and — over all windows — perplexity within 1e-4 (relative) of the
// reference. A run over fewer windows than the reference has is reported, not judged.
import { existsSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { cpuInfo, dispose, getNumThreads, loadSafetensors, memory, noGrad, tidy } from "@modulora/tensor";
import { evaluatePerplexity, generate, loadLlama } from "../dist/index.js";

const here = fileURLToPath(new URL(".", import.meta.url));

function parseArgs(argv) {
  const args = { dir: null, windows: null, seqLen: null, batch: 4, text: resolve(here, "../../../fixtures/data/lm/valid.txt") };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const int = (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${a} must be an integer ≥ 1, got ${v}`);
      return n;
    };
    if (a === "--windows") args.windows = int(value());
    else if (a === "--seq-len") args.seqLen = int(value());
    else if (a === "--batch") args.batch = int(value());
    else if (a === "--text") args.text = value();
    else if (a.startsWith("--")) throw new Error(`unknown option ${a}`);
    else if (args.dir === null) args.dir = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (!args.dir) throw new Error("usage: node scripts/check-model.mjs <model dir> [--windows N] [--seq-len L] [--batch B] [--text PATH]");
  return args;
}

const seconds = (t0) => (performance.now() - t0) / 1000;
const fmt = (x) => (x === 0 ? "0" : x.toExponential(2));

/** Max abs difference, relative L2 error ‖a − b‖ / ‖b‖ and max |b| (f64 sums). */
function compare(a, b) {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let maxAbs = 0, num = 0, den = 0, maxRef = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    if (!(Math.abs(d) <= maxAbs)) maxAbs = Math.abs(d);
    num += d * d;
    den += b[i] * b[i];
    maxRef = Math.max(maxRef, Math.abs(b[i]));
  }
  return { maxAbs, relL2: Math.sqrt(num / den), maxRef };
}

function checkTokenizer(tokenizer, vectors) {
  const failures = [];
  for (const c of vectors.cases) {
    const show = JSON.stringify(c.text).slice(0, 40);
    const ids = tokenizer.encode(c.text);
    const plain = tokenizer.encode(c.text, { addSpecialTokens: false });
    if (JSON.stringify(ids) !== JSON.stringify(c.ids)) failures.push(`encode ${show}`);
    if (JSON.stringify(plain) !== JSON.stringify(c.ids_no_special)) failures.push(`encode (no special) ${show}`);
    if (c.ids_no_special.length > 0 && tokenizer.decode(c.ids_no_special) !== c.decoded) failures.push(`decode ${show}`);
  }
  let checked = 2 * vectors.cases.length + vectors.cases.filter((c) => c.ids_no_special.length > 0).length;
  if (vectors.chat) {
    const { messages, rendered, generation_prompt: prompt } = vectors.chat;
    if (tokenizer.applyChatTemplate(messages) !== rendered) failures.push("chat template");
    if (prompt !== undefined && tokenizer.applyChatTemplate(messages.slice(0, -1), { addGenerationPrompt: true }) !== prompt) failures.push("chat generation prompt");
    checked += prompt !== undefined ? 2 : 1;
  }
  return { checked, failures };
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const dir = resolve(args.dir);
  const name = basename(dir);
  const out = [];
  const log = (line = "") => {
    out.push(line);
    console.log(line);
  };
  let failed = 0;
  const verdict = (ok) => {
    if (!ok) failed++;
    return ok ? "ok" : "**FAIL**";
  };

  const cpu = cpuInfo();
  log(`# ${name}: model check`);
  log();
  log("```");
  log(`cd packages/llama && node scripts/check-model.mjs ${process.argv.slice(2).join(" ")}`);
  log("```");
  log();
  log(`${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${getNumThreads()} threads, ISA ${cpu.active}; the 2 cores were shared with other work, so timings are upper bounds.`);
  log();

  let t0 = performance.now();
  const { model, tokenizer, config } = loadLlama(dir);
  const loadSeconds = seconds(t0);
  log(`Loaded in ${loadSeconds.toFixed(2)} s: ${config.numLayers} layers, hidden ${config.hiddenSize}, heads ${config.numHeads}/${config.numKvHeads} (head dim ${config.headDim}), MLP ${config.intermediateSize}, vocab ${config.vocabSize}, tied ${config.tieWordEmbeddings}, stored as ${config.dtype ?? "?"}; f32 weights ${(memory().bytes / 2 ** 20).toFixed(1)} MiB.`);
  log();

  // Reference outputs.
  const refJson = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8"));
  const ref = loadSafetensors(join(dir, "reference.safetensors"));
  const ids = ref.get("input_ids");
  log(`## Reference outputs (input_ids [${ids.shape}], float32 forward)`);
  log();
  log("| tensor | shape | max abs diff | max abs ref | relative L2 | ≤ 1e-3 |");
  log("|---|---|---|---|---|---|");
  t0 = performance.now();
  const rows = noGrad(() =>
    tidy(() => {
      const { logits, hiddenStates } = model.forward(ids, { outputHiddenStates: true });
      const mine = { logits, hidden_layer1: hiddenStates[1], hidden_last: hiddenStates[hiddenStates.length - 1] };
      return Object.entries(mine).map(([k, t]) => ({ k, shape: t.shape, ...compare(t.data(), ref.get(k).data()) }));
    }),
  );
  const forwardSeconds = seconds(t0);
  for (const r of rows) log(`| ${r.k} | [${r.shape}] | ${fmt(r.maxAbs)} | ${r.maxRef.toFixed(2)} | ${fmt(r.relL2)} | ${verdict(r.relL2 <= 1e-3)} |`);
  const loss = noGrad(() => tidy(() => model.loss(ids, ids).item()));
  const dLoss = Math.abs(loss - refJson.reference_loss);
  log();
  log(`reference_loss: ${loss.toFixed(6)} vs ${refJson.reference_loss.toFixed(6)} (|Δ| ${fmt(dLoss)}) ${verdict(dLoss <= 1e-4)}. Forward of the ${ids.shape[0]}×${ids.shape[1]} batch with hidden states: ${forwardSeconds.toFixed(2)} s.`);
  log();
  dispose(ref);

  // Tokenizer vectors.
  const vectorsPath = join(dir, "tokenizer_vectors.json");
  if (existsSync(vectorsPath)) {
    const { checked, failures } = checkTokenizer(tokenizer, JSON.parse(readFileSync(vectorsPath, "utf8")));
    log(`## Tokenizer`);
    log();
    log(`tokenizer_vectors.json: ${checked - failures.length}/${checked} exact (encode with and without special tokens, decode, chat template) ${verdict(failures.length === 0)}${failures.length ? `: ${failures.join("; ")}` : ""}`);
    log();
  }

  // Perplexity.
  const refKey = Object.keys(refJson).find((k) => /^valid_ppl_seq\d+$/.test(k));
  const seqLen = args.seqLen ?? (refKey ? Number(refKey.slice("valid_ppl_seq".length)) : 256);
  t0 = performance.now();
  const text = readFileSync(args.text, "utf8");
  const tokens = tokenizer.encode(text, { addSpecialTokens: false });
  const tokenizeSeconds = seconds(t0);
  const allWindows = Math.floor(tokens.length / seqLen);
  log(`## Perplexity (${basename(args.text)}, seq ${seqLen})`);
  log();
  log(`Tokenized ${(text.length / 1e6).toFixed(2)} M characters as one string without special tokens: ${tokens.length} tokens, ${allWindows} full windows, in ${tokenizeSeconds.toFixed(1)} s.`);
  log();
  t0 = performance.now();
  const r = evaluatePerplexity(model, tokens, { seqLen, batchSize: args.batch, ...(args.windows ? { maxWindows: args.windows } : {}) });
  const evalSeconds = seconds(t0);
  const comparable = refKey && seqLen === Number(refKey.slice("valid_ppl_seq".length)) && r.windows === refJson.valid_windows && args.text.endsWith("valid.txt");
  log("| windows | predicted tokens | mean NLL | perplexity | reference | relative diff | time | tokens/s |");
  log("|---|---|---|---|---|---|---|---|");
  const refPpl = refKey ? refJson[refKey] : null;
  const rel = refPpl ? Math.abs(r.perplexity - refPpl) / refPpl : null;
  log(
    `| ${r.windows} | ${r.tokens} | ${r.nll.toFixed(6)} | ${r.perplexity.toFixed(4)} | ${refPpl ? `${refPpl.toFixed(4)} (${refKey}, ${refJson.valid_windows} windows)` : "—"} | ` +
      `${rel === null ? "—" : `${fmt(rel)} ${comparable ? verdict(rel <= 1e-4) : "(partial run: not judged)"}`} | ${evalSeconds.toFixed(1)} s | ${Math.round((r.windows * seqLen) / evalSeconds)} |`,
  );
  log();

  // Generation speed (greedy, KV cache).
  const prompt = tokens.slice(0, 32);
  t0 = performance.now();
  const g = generate(model, prompt, { maxNewTokens: 64, stopTokens: [] });
  const genSeconds = seconds(t0);
  log(`## Generation`);
  log();
  log(`Greedy, KV cache, 32-token prompt from the text, 64 new tokens: ${genSeconds.toFixed(2)} s (${(64 / genSeconds).toFixed(1)} tokens/s including the prompt).`);
  log();
  log("```");
  log(`${tokenizer.decode(prompt)} ⟨…⟩ ${tokenizer.decode(g.ids)}`.replace(/```/g, "'''"));
  log("```");
  log();

  model.dispose();
  log(failed ? `**${failed} check(s) failed.**` : "All checks passed.");
  process.exitCode = failed ? 1 : 0;
}

try {
  main();
} catch (err) {
  console.error(err instanceof Error ? err.stack : err);
  process.exitCode = 2;
}
