#!/usr/bin/env bash
# On a GPU host (1, 2, 4 or 8 GPUs): the issue-20 checks in one command. Unpacks Node, the bundles
# and the sm_90a addon (.gpu/, from scripts/gpu/pack.sh; the addon is built when .gpu/addon.xz is
# missing or does not load, and comes back as $OUT/addon.xz), then runs
#   1. scripts/gpu/nccl-check.mjs (bundled as benchmarks/scaling/dist/nccl-check.mjs): NCCL found, all-reduce/broadcast/barrier right on
#      world size 1 and, with ≥ 2 GPUs, 2 ranks                                  -> $OUT/nccl.txt
#   2. tiny-llama (4-bit RTN, bf16 compute, LoRA dropout 0.1), 20 steps of global batch 8:
#      the reference is one process with --batch-size 4 --grad-accum 2; against it
#        - 2 GPUs, NCCL (--devices 2), when the host has 2 GPUs,
#        - a group of one over NCCL (--dist-backend nccl --grad-accum 2),
#        - 2 ranks sharing cuda:0 over TCP (--devices 2 --device cuda:0 --dist-backend tcp),
#      compared by scripts/gpu/compare-adapters.mjs (relative Frobenius ≤ 1e-2)  -> $OUT/tiny-dp.json
#   3. benchmarks/scaling on 7B 4-bit (checkpointing) and 65B 2-bit (checkpointing): the reference
#      (one GPU, no data parallel) and 1, 2, 4, 8 GPUs as the host has them      -> $OUT/scaling/
# NCCL_NVLS_ENABLE=0 is set for everything (no NVLink multicast objects on these hosts).
# Usage: bash scripts/gpu/data-parallel.sh [all|nccl|tiny|scaling] [scaling configs]
set -uo pipefail
OUT=${OUT:-/tmp/out}
what=${1:-all}
configs=${2:-7b-4-ckpt,65b-2-ckpt}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
source scripts/gpu/unpack.sh || exit 1
ngpu=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "GPUs: $ngpu; NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE"
cli="node packages/cli/dist-bundle/modulora-bundle.js"
export MODULORA_CLI_ENTRY=$PWD/packages/cli/dist-bundle/modulora-bundle.js

if [ "$what" = all ] || [ "$what" = nccl ]; then
  t0=$(date +%s)
  timeout 180 node benchmarks/scaling/dist/nccl-check.mjs > "$OUT/nccl.txt" 2>&1
  echo "nccl-check: exit $?, $(( $(date +%s) - t0 )) s"
  tail -25 "$OUT/nccl.txt"
fi

if [ "$what" = all ] || [ "$what" = tiny ]; then
  work=/tmp/tiny-dp
  rm -rf "$work" && mkdir -p "$work"
  $cli quantize --model fixtures/tiny-llama --quantizer rtn --bits 4 --group-size 32 --out "$work/q4" > "$work/quantize.log" 2>&1 || { cat "$work/quantize.log"; exit 1; }
  args=(finetune --model "$work/q4" --data fixtures/data/spam/train.jsonl --format classification --steps 20 --batch-size 4 --seq-len 128
        --lr 5e-4 --dropout 0.1 --seed 7 --dtype bf16 --save-every 10)
  run() { # name extra-args...
    local name=$1 t0 rc
    shift
    t0=$(date +%s%N)
    timeout 240 $cli "${args[@]}" --out "$work/$name" "$@" > "$work/$name.log" 2>&1
    rc=$?
    echo "tiny $name: exit $rc, $(( ($(date +%s%N) - t0) / 1000000 )) ms; $(grep -E '^trained' "$work/$name.log")"
    [ $rc -eq 0 ] || tail -15 "$work/$name.log"
  }
  run reference --device cuda --grad-accum 2
  others=()
  if [ "$ngpu" -ge 2 ]; then run nccl-2gpu --device cuda --devices 2; others+=("$work/nccl-2gpu"); fi
  run nccl-world1 --device cuda --grad-accum 2 --dist-backend nccl; others+=("$work/nccl-world1")
  run tcp-shared-gpu --device cuda:0 --devices 2 --dist-backend tcp; others+=("$work/tcp-shared-gpu")
  node benchmarks/scaling/dist/compare-adapters.mjs --json "$OUT/tiny-dp.json" "$work/reference" "${others[@]}" | tee "$OUT/tiny-dp.txt"
  mkdir -p "$OUT/tiny-dp"
  for d in reference "${others[@]##*/}"; do cp "$work/$d/metrics.jsonl" "$OUT/tiny-dp/$d.metrics.jsonl" 2>/dev/null; cp "$work/$d/run.json" "$OUT/tiny-dp/$d.run.json" 2>/dev/null; cp "$work/$d.log" "$OUT/tiny-dp/$d.log"; done
fi

if [ "$what" = all ] || [ "$what" = scaling ]; then
  worlds=1
  for n in 2 4 8; do [ "$n" -le "$ngpu" ] && worlds="$worlds,$n"; done
  t0=$(date +%s)
  timeout 420 node benchmarks/scaling/dist/scaling.mjs --device cuda --configs "$configs" --devices "$worlds" --steps 4 --warmup 1 --out "$OUT/scaling" 2>&1 | tail -20
  echo "scaling: $(( $(date +%s) - t0 )) s"
fi
