#!/usr/bin/env node
// The "install" hook of @modulora/kernels. Keeps the prebuilt addon of this platform when it
// loads (tested in a child process, so a crash cannot take the installer down), else builds the
// addon from source with cmake-js, after checking that a compiler, a build tool and CMake are
// there. The decisions live in ts/install-plan.ts (tested); this file gathers facts and acts.
// In the monorepo checkout it does nothing: `pnpm build` builds the addon there.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// Checked before anything is imported: in the checkout, dist/ does not exist yet at `pnpm install`.
const workspace = !root.split(sep).includes("node_modules") && existsSync(join(root, "..", "pnpm-workspace.yaml"));
if (workspace) {
  console.log("@modulora/kernels: workspace checkout, nothing to install (`pnpm build` builds the addon)");
  process.exit(0);
}

const { cmakeJsCli, findBuildTools, isExecutableFile: isExecutable, planInstall } = await import("../dist/install-plan.js");
const { ADDON_FILE, currentPlatform, platformTriple } = await import("../dist/index.js");

/** Loads an addon in a child Node process; returns undefined when it loads, else the error text. */
function loadError(path) {
  const r = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(path)})`], { encoding: "utf8" });
  if (r.status === 0) return undefined;
  const err = (r.stderr || "").split("\n").find((l) => /Error/.test(l)) ?? `exit code ${r.status ?? r.signal}`;
  return err.trim();
}

const triple = platformTriple(currentPlatform());
const prebuiltPath = join(root, "prebuilds", triple, ADDON_FILE);
let prebuilt = { state: "missing", path: prebuiltPath };
if (existsSync(prebuiltPath)) {
  const error = loadError(prebuiltPath);
  prebuilt = error === undefined ? { state: "loads", path: prebuiltPath } : { state: "fails", path: prebuiltPath, error };
}
const env = process.env;
const decision = planInstall({ triple, workspace: false, env, prebuilt, tools: findBuildTools({ env, platform: process.platform, isExecutable }) });
if (decision.action === "fail") {
  console.error(decision.message);
  process.exit(1);
}
console.log(decision.message);
if (decision.action !== "build") process.exit(0);

// cmake-js is a dependency of this package; run its CLI with this Node. The CUDA backend is the
// job of @modulora/kernels-cuda, so the CPU package builds without it unless MODULORA_CUDA says otherwise.
const cmakeJs = cmakeJsCli(root);
const r = spawnSync(process.execPath, [cmakeJs, "compile", "--out", "build"], {
  cwd: root,
  stdio: "inherit",
  env: { ...env, MODULORA_CUDA: env.MODULORA_CUDA ?? "OFF" },
});
if (r.status !== 0) {
  console.error(`@modulora/kernels: the build from source failed (cmake-js exit ${r.status ?? r.signal}); the output above says why.`);
  process.exit(1);
}
const built = join(root, "build", "Release", ADDON_FILE);
const error = existsSync(built) ? loadError(built) : `${built} was not produced`;
if (error !== undefined) {
  console.error(`@modulora/kernels: built from source, but the addon does not load: ${error}`);
  process.exit(1);
}
console.log(`@modulora/kernels: built ${built}`);
