#!/usr/bin/env node
// README command 1: on a machine with only Node 20 and npm, installs pnpm 12.4.2 (if missing) and
// the workspace, builds everything, and runs the main job on the engine.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const env = { ...process.env, TURBO_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" };

function run(cmd, args, what) {
  console.log(`\n> ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env });
  if (r.error || r.status !== 0) {
    console.error(`demo: ${what} failed${r.error ? `: ${r.error.message}` : ` (exit code ${r.status})`}`);
    process.exit(1);
  }
}

const v = spawnSync("pnpm", ["--version"], { encoding: "utf8", env });
if (v.error || v.stdout.trim() !== "12.4.2") {
  run("npm", ["install", "-g", "-E", "pnpm@12.4.2", "--allow-scripts=pnpm"], "installing pnpm 12.4.2 with npm");
}
run("pnpm", ["install", "--frozen-lockfile"], "pnpm install");
run("pnpm", ["build"], "pnpm build");
run("node", ["packages/tensor/examples/low-rank-fit.mjs"], "the low-rank fit example");
