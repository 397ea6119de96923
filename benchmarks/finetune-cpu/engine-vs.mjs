#!/usr/bin/env node
// The LoRA fine-tuning step of this tree against the same step of an earlier commit of the engine,
// on the same CPU in the same command: does a change to the engine (opaque storage, the op
// registry, the device threading) cost speed? In every round each base runs once on this tree and
// once on the earlier one, each in its own process, alternating which goes first (ABAB); the
// ratio this / before is taken within each round (min, median, max over rounds).
//
// The earlier tree is a git worktree of `--before` (a commit), built with its own lockfile and
// addon (`pnpm install --offline --frozen-lockfile && pnpm build`) unless `--before-dir` names
// one that is built already. Each side runs its own benchmarks/finetune-cpu/step.mjs.
//
//   node benchmarks/finetune-cpu/engine-vs.mjs --before 1c4582a [--before-dir DIR] [--model fixtures/tiny-llama]
//     [--batch 8] [--seq 128] [--rounds 5] [--steps 6] [--warmup 2] [--threads 2] [--bases f32,rtn4,rtn2] [--out DIR]
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { BenchmarkRefusal, conditionsMarkdown, fmtSpread, paired, repoRoot, runBenchmark, spread, startConditions } from "../conditions.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
if (!args.before) {
  console.error("engine-vs: --before REV is required (the commit of the engine to compare with, e.g. --before 1c4582a)");
  process.exit(1);
}
const model = path.resolve(repoRoot, args.model ?? "fixtures/tiny-llama");
const B = args.batch ?? "8", T = args.seq ?? "128", steps = args.steps ?? "6", warmup = args.warmup ?? "2", threads = args.threads ?? "2";
const rounds = Number(args.rounds ?? 5);
const bases = (args.bases ?? "f32,rtn4,rtn2").split(",");
const outDir = path.resolve(args.out ?? path.join(here, "results"));
const env = { ...process.env, MODULORA_NUM_THREADS: threads, OMP_NUM_THREADS: threads, OPENBLAS_NUM_THREADS: threads };

/** The full commit id of `rev`, or a refusal naming it. */
function resolveRev(rev) {
  try {
    return execFileSync("git", ["rev-parse", "--verify", `${rev}^{commit}`], { cwd: repoRoot, encoding: "utf8" }).trim();
  } catch {
    throw new BenchmarkRefusal(`--before ${rev} is not a commit of this repository`);
  }
}

/** A built tree of `commit`: the given directory, or a fresh worktree built here (removed at the end). */
function beforeTree(commit) {
  if (args["before-dir"]) {
    const dir = path.resolve(args["before-dir"]);
    const head = execFileSync("git", ["rev-parse", "HEAD"], { cwd: dir, encoding: "utf8" }).trim();
    if (head !== commit) throw new BenchmarkRefusal(`--before-dir ${dir} is at ${head.slice(0, 12)}, not ${commit.slice(0, 12)}`);
    if (!existsSync(path.join(dir, "packages/llama/dist/index.js"))) throw new BenchmarkRefusal(`--before-dir ${dir} is not built (run pnpm install --offline --frozen-lockfile && pnpm build there)`);
    return dir;
  }
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), "modulora-before-")), "tree");
  const run = (cmd, argv, cwd) => {
    const r = spawnSync(cmd, argv, { cwd, encoding: "utf8", env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1" }, maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new BenchmarkRefusal(`${cmd} ${argv.join(" ")} failed in ${cwd}: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" ")}`);
  };
  console.log(`building ${commit.slice(0, 12)} in ${dir} ...`);
  run("git", ["worktree", "add", "--detach", dir, commit], repoRoot);
  process.on("exit", () => spawnSync("git", ["worktree", "remove", "--force", dir], { cwd: repoRoot }));
  run("pnpm", ["install", "--offline", "--frozen-lockfile"], dir);
  run("pnpm", ["build"], dir);
  return dir;
}

function step(tree, base) {
  const script = path.join(tree, "benchmarks/finetune-cpu/step.mjs");
  const r = spawnSync("/usr/bin/time", ["-f", "MAXRSS_KB %M", process.execPath, script, model, base, B, T, steps, warmup], {
    env, encoding: "utf8", cwd: path.dirname(script), maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new BenchmarkRefusal(`step.mjs of ${tree} (${base}) exited with ${r.status}: ${r.stderr.trim().split("\n").slice(-3).join(" ")}`);
  const line = r.stdout.trim().split("\n").find((l) => l.startsWith("{"));
  const rss = Number(/MAXRSS_KB (\d+)/.exec(r.stderr)?.[1] ?? NaN);
  return { ...JSON.parse(line), peak_rss_mb: Math.round((rss / 1024) * 10) / 10 };
}

await runBenchmark("finetune-cpu engine-vs", async () => {
  const commit = resolveRev(args.before);
  const tree = beforeTree(commit);
  const cond = startConditions({ threads: Number(threads) });
  const runs = Object.fromEntries(bases.map((b) => [b, []]));
  for (let r = 0; r < rounds; r++) {
    for (const base of bases) {
      const thisFirst = r % 2 === 0;
      const pair = { order: thisFirst ? "this, before" : "before, this" };
      for (const side of thisFirst ? ["this", "before"] : ["before", "this"]) pair[side] = step(side === "this" ? repoRoot : tree, base);
      runs[base].push(pair);
      console.log(`round ${r + 1}/${rounds} ${base.padEnd(5)} this ${pair.this.tok_s} tok/s, before ${pair.before.tok_s} tok/s (${pair.order})`);
    }
  }
  const results = bases.map((base) => {
    const rs = runs[base];
    const p = paired(rs.map((x) => x.this.tok_s), rs.map((x) => x.before.tok_s), { higherIsBetter: true });
    return {
      base: rs[0].this.base, rounds: rs.length, thisTokS: p.ours, beforeTokS: p.baseline, ratio: p.ratio,
      ratiosByRound: p.ratios.map((x) => Math.round(x * 1000) / 1000),
      thisPeakRssMb: spread(rs.map((x) => x.this.peak_rss_mb)), beforePeakRssMb: spread(rs.map((x) => x.before.peak_rss_mb)), runs: rs,
    };
  });
  const result = {
    benchmark: "finetune-cpu engine-vs",
    setup: { model: path.relative(repoRoot, model), before: commit, batch: Number(B), seq: Number(T), steps: Number(steps), warmup: Number(warmup), rounds, bases },
    conditions: cond.finish(), results,
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, "engine-vs-before.json"), JSON.stringify(result, null, 2) + "\n");
  const md = markdown(result);
  writeFileSync(path.join(outDir, "engine-vs-before.md"), md);
  console.log(md);
});

function markdown({ setup, conditions, results }) {
  const r2 = (x) => x.toFixed(2);
  return `# LoRA fine-tuning step on ${path.basename(setup.model)}, CPU: this engine vs commit ${setup.before.slice(0, 12)}

The step of \`benchmarks/finetune-cpu/step.mjs\` (LoRA r = 8 on every linear layer, AdamW, batch ${setup.batch} × ${setup.seq}
random tokens), run by this tree and by a worktree of commit \`${setup.before}\` built from its own lockfile.

Protocol: ${setup.rounds} rounds; in each, every base runs once per tree, each in a fresh process, alternating
which goes first (ABAB). One figure per process: tokens/s of its median step over ${setup.steps} timed steps after
${setup.warmup} warm-ups. Ratio = this / before in the same round; min, median and max over the rounds.

| base | this tokens/s | before tokens/s | ratio min | ratio median | ratio max | this peak RSS MiB | before peak RSS MiB |
|---|---|---|---:|---:|---:|---:|---:|
${results.map((r) => `| ${r.base} | ${fmtSpread(r.thisTokS)} | ${fmtSpread(r.beforeTokS)} | ${r2(r.ratio.min)} | **${r2(r.ratio.median)}** | ${r2(r.ratio.max)} | ${r.thisPeakRssMb.median.toFixed(0)} | ${r.beforePeakRssMb.median.toFixed(0)} |`).join("\n")}

${conditionsMarkdown(conditions).join("\n")}`;
}
