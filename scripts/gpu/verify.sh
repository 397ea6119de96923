#!/usr/bin/env bash
# On the GPU host: the issue-15 checks in one command. Unpacks Node and the bundles (.gpu/, from
# scripts/gpu/pack.sh) and the prebuilt sm_90a addon (.gpu/addon.xz) when it loads there, else
# builds it (scripts/gpu/host.sh); then runs
#   1. the conformance runner on cuda with the memory check -> $OUT/conformance.txt
#   2. compute-sanitizer memcheck on the kernels' conformance cases, racecheck and synccheck on the
#      ones that use shared memory -> $OUT/sanitizer.txt (one ERROR SUMMARY line per run)
#   3. the tiny-llama CPU-vs-GPU fine-tune (scripts/gpu/tiny-llama.sh) -> $OUT/tiny-llama.tgz
# Each step has its own time limit, so one slow step cannot take the whole command.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source scripts/gpu/unpack.sh || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
runner="node packages/tensor/dist/conformance-runner.mjs --backend cuda"
t0=$(date +%s)
timeout 120 $runner --memory > "$OUT/conformance.txt" 2>&1
echo "conformance: exit $?, $(( $(date +%s) - t0 )) s; $(tail -1 "$OUT/conformance.txt")"
grep -E "^(FAIL|not ok)" "$OUT/conformance.txt" | head -20
san() { # tool seconds filter...
  local tool=$1 secs=$2 t1=$(date +%s) line f args=()
  shift 2
  for f in "$@"; do args+=(--filter "$f"); done
  line=$(timeout "$secs" compute-sanitizer --tool "$tool" --print-limit 20 $runner "${args[@]}" 2>&1 | tee -a /tmp/san-full.txt | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed, " | tr '\n' ' ')
  echo "$tool [$*]: exit ${PIPESTATUS[0]}, $(( $(date +%s) - t1 )) s: $line" | tee -a "$OUT/sanitizer.txt"
}
san memcheck 200 quantMatmul quantDequantize attention crossEntropy rmsnorm rope swiglu embedding adamw gradNormStats dropout softmax "matmul " gather scatter randn "sum " cast concat
san racecheck 150 attention crossEntropy rmsnorm quantMatmul softmax gradNormStats "sum " "max "
san synccheck 60 attention crossEntropy rmsnorm gradNormStats
grep -E "^=========" /tmp/san-full.txt | grep -v "ERROR SUMMARY: 0\|RACECHECK SUMMARY: 0" | head -40 >> "$OUT/sanitizer.txt"
t0=$(date +%s)
timeout 240 bash scripts/gpu/tiny-llama.sh /tmp/tiny-llama
echo "tiny-llama: exit $?, $(( $(date +%s) - t0 )) s"
tar -C /tmp -czf "$OUT/tiny-llama.tgz" tiny-llama
