#!/usr/bin/env node
// README command 1: on a machine with only Node 20 and npm, installs pnpm 12.4.2 (if missing) and
// the workspace, builds everything, then runs the main job through the `modulora` CLI itself:
// quantize the bundled tiny-llama to 3 bits with OPTQ, measure spam-classification accuracy,
// fine-tune a LoRA adapter on the quantized model, and measure again. Everything goes to
// runs/demo/ (ignored by git; a rerun replaces it).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const env = { ...process.env, TURBO_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" };
const t0 = Date.now();
const clock = () => {
  const s = Math.round((Date.now() - t0) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
};

function run(cmd, args, what) {
  console.log(`\n> ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env });
  if (r.error || r.status !== 0) {
    console.error(`demo: ${what} failed${r.error ? `: ${r.error.message}` : ` (exit code ${r.status})`}`);
    process.exit(1);
  }
}

// MODULORA_DEMO_SKIP_SETUP=1 skips install and build (when iterating on the demo itself).
if (process.env.MODULORA_DEMO_SKIP_SETUP !== "1") {
  const v = spawnSync("pnpm", ["--version"], { encoding: "utf8", env });
  if (v.error || v.stdout.trim() !== "12.4.2") {
    run("npm", ["install", "-g", "-E", "pnpm@12.4.2", "--allow-scripts=pnpm"], "installing pnpm 12.4.2 with npm");
  }
  run("pnpm", ["install", "--frozen-lockfile"], "pnpm install");
  run("pnpm", ["build"], "pnpm build");
}
const built = clock();
const builtSeconds = (Date.now() - t0) / 1000;

// The demo's settings, measured on the 2-core development machine (packages/cli/results/demo-output.txt):
// accuracy on the validation subset goes from ~40% to ~88% (the majority baseline is 63%); the
// adapter learns to tell spam from ham after ~100 steps, so 160 leave a margin. The whole
// command, install and build included, stays well inside 5 minutes.
const DEMO = {
  quantizer: "optq",
  // OPTQ's calibration: windows sampled (seeded) from a 280 kB cut of the calibration corpus
  calib: join("fixtures", "data", "lm", "calib-small.txt"),
  calibSamples: 64,
  calibSeqLen: 256,
  bits: 3,
  groupSize: 128,
  steps: 160,
  batchSize: 8,
  seqLen: 128,
  lr: 1e-3,
  schedule: "constant",
  warmup: 5,
  evalEvery: 80,
  validSamples: 200,
  seed: 0,
};
const out = join(root, "runs", "demo");
const quantized = join("runs", "demo", "quantized");
const adapter = join("runs", "demo", "adapter");
const train = join("fixtures", "data", "spam", "train.jsonl");
const valid = join("fixtures", "data", "spam", "valid.jsonl");
const cliPath = join(root, "packages", "cli", "dist", "cli.js");
if (!existsSync(cliPath)) {
  console.error("demo: packages/cli/dist/cli.js is missing after the build");
  process.exit(1);
}

/** Runs `modulora ...`; with json, stdout is parsed (progress still shows on stderr). */
function modulora(args, { json = false } = {}) {
  console.log(`\n> modulora ${args.join(" ")}`);
  const r = spawnSync(process.execPath, [cliPath, ...args], { cwd: root, env, stdio: ["ignore", json ? "pipe" : "inherit", "inherit"], encoding: "utf8" });
  if (r.error || r.status !== 0) {
    console.error(`demo: modulora ${args[0]} failed${r.error ? `: ${r.error.message}` : ` (exit code ${r.status})`}`);
    process.exit(1);
  }
  if (!json) return null;
  const result = JSON.parse(r.stdout);
  console.log(JSON.stringify(result));
  return result;
}

rmSync(out, { recursive: true, force: true });
const common = ["--seq-len", String(DEMO.seqLen), "--seed", String(DEMO.seed)];
const evalArgs = ["--data", valid, "--metric", "accuracy", "--format", "classification", "--max-samples", String(DEMO.validSamples), ...common, "--json"];
const tq = Date.now();
modulora([
  "quantize", "--model", "fixtures/tiny-llama", "--quantizer", DEMO.quantizer, "--bits", String(DEMO.bits), "--group-size", String(DEMO.groupSize),
  "--calib", DEMO.calib, "--calib-samples", String(DEMO.calibSamples), "--calib-seq-len", String(DEMO.calibSeqLen), "--seed", String(DEMO.seed), "--out", quantized,
]);
const quantizeSeconds = (Date.now() - tq) / 1000;
const te0 = Date.now();
const before = modulora(["eval", "--model", quantized, ...evalArgs], { json: true });
const evalSeconds = (Date.now() - te0) / 1000;
const tf = Date.now();
modulora([
  "finetune", "--model", quantized, "--data", train, "--valid", valid, "--format", "classification", "--out", adapter,
  "--steps", String(DEMO.steps), "--batch-size", String(DEMO.batchSize), "--lr", String(DEMO.lr), "--schedule", DEMO.schedule,
  "--warmup", String(DEMO.warmup), "--eval-every", String(DEMO.evalEvery), "--eval-samples", String(DEMO.validSamples), ...common,
]);
const finetuneSeconds = (Date.now() - tf) / 1000;
const after = modulora(["eval", "--model", quantized, "--adapter", adapter, ...evalArgs], { json: true });
const runInfo = JSON.parse(readFileSync(join(root, adapter, "run.json"), "utf8"));

const validCount = readFileSync(join(root, valid), "utf8").split("\n").filter((l) => l.trim()).length;
const pct = (x) => `${(100 * x).toFixed(1)}%`;
const summary = {
  task: "spam classification (fixtures/data/spam)",
  base: `fixtures/tiny-llama quantized with ${DEMO.quantizer.toUpperCase()}, ${DEMO.bits}-bit, group ${DEMO.groupSize}`,
  settings: { ...DEMO, validationExamples: validCount },
  accuracy: { majorityBaseline: before.majority_baseline, majorityLabel: before.majority_label, before: before.value, after: after.value, n: after.n },
  peakMemoryMiB: { resident: Math.round(runInfo.peakRssMiB), tensors: Math.round(runInfo.peakTensorMiB) },
  seconds: { installAndBuild: builtSeconds, quantize: quantizeSeconds, evalBefore: evalSeconds, finetune: finetuneSeconds, total: (Date.now() - t0) / 1000 },
};
writeFileSync(join(out, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);

console.log(`
ModuLoRA demo — LoRA fine-tuning of a 3-bit quantized model, driven by the modulora CLI
  base        fixtures/tiny-llama → ${DEMO.quantizer.toUpperCase()} ${DEMO.bits}-bit, group ${DEMO.groupSize}, calibrated on ${DEMO.calibSamples} × ${DEMO.calibSeqLen} tokens of ${DEMO.calib} (runs/demo/quantized)
  training    ${DEMO.steps} steps × batch ${DEMO.batchSize}, seq-len ${DEMO.seqLen}, lr ${DEMO.lr} ${DEMO.schedule} (warmup ${DEMO.warmup}), LoRA r 8 / alpha 16 on all 7 linears
  validation  a seeded subset of ${after.n} of the ${validCount} examples of ${valid}

  accuracy on the validation subset
    ${`majority baseline (always "${before.majority_label}")`.padEnd(36)}${pct(before.majority_baseline)}
    ${"before fine-tuning".padEnd(36)}${pct(before.value)}
    ${"after fine-tuning".padEnd(36)}${pct(after.value)}

  wrote runs/demo/: quantized/ (checkpoint), adapter/ (adapter, metrics.jsonl, loss.svg, loss.png), summary.json
  time: install + build ${built}, quantize ${quantizeSeconds.toFixed(0)} s, fine-tune ${finetuneSeconds.toFixed(0)} s, total ${clock()}
  peak memory of the fine-tune: ${runInfo.peakRssMiB.toFixed(0)} MiB resident, ${runInfo.peakTensorMiB.toFixed(0)} MiB native tensor storage`);

if (!(after.value > before.value && after.value > before.majority_baseline)) {
  console.error("demo: the adapter did not beat both the base model and the majority baseline");
  process.exit(1);
}
