#!/usr/bin/env node
// The committed cross-quantizer benchmarks (benchmarks/results/cross-quantizer/), one preset each:
//   pnpm bench          tiny-llama, every task (about 15 minutes on 2 cores)
//   pnpm bench:small    small-llama (MODULORA_SMALL_LLAMA, default ../shared/fixtures/small-llama), ppl and classify
// Each runs `modulora bench` from the built CLI with the settings below into the committed
// directory (--overwrite); extra arguments are passed on (e.g. --resume after an interruption,
// which then replaces --overwrite). Run `pnpm build` first.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "packages/cli/dist/cli.js");
const small = process.env["MODULORA_SMALL_LLAMA"] ?? resolve(root, "../shared/fixtures/small-llama");
const PRESETS = {
  tiny: {
    model: join(root, "fixtures/tiny-llama"),
    args: ["--ppl-seq-len", "256", "--max-windows", "128", "--steps", "60", "--warmup", "6", "--classify-samples", "100", "--summarize-samples", "30"],
  },
  small: {
    model: small,
    args: ["--tasks", "ppl,classify", "--group-size", "128", "--steps", "60", "--warmup", "6", "--classify-samples", "100"],
  },
};
const [name = "tiny", ...extra] = process.argv.slice(2);
const preset = PRESETS[name];
if (!preset) {
  console.error(`bench: unknown preset '${name}' — use one of ${Object.keys(PRESETS).join(", ")}`);
  process.exit(2);
}
if (!existsSync(cli)) {
  console.error(`bench: ${relative(root, cli)} is missing — run pnpm build first`);
  process.exit(1);
}
if (!existsSync(join(preset.model, "config.json"))) {
  console.error(`bench: no model at ${preset.model} — ${name === "small" ? "set MODULORA_SMALL_LLAMA to the small-llama fixture" : "the checkout is incomplete"}`);
  process.exit(1);
}
const out = join(root, "benchmarks/results/cross-quantizer", `${name}-llama`);
const args = [cli, "bench", "--model", relative(root, preset.model), "--out", relative(root, out), ...preset.args, ...(extra.includes("--resume") ? [] : ["--overwrite"]), ...extra];
console.error(`$ node ${relative(root, cli)} ${args.slice(1).join(" ")}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
process.exit(r.status ?? 1);
