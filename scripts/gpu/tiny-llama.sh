#!/usr/bin/env bash
# On the GPU host, after `source scripts/gpu/host.sh`: fine-tunes the bundled tiny-llama (4-bit RTN
# base, LoRA with dropout 0.1) for 50 steps on the CPU and on the GPU with the same seed, in bf16
# and in f32, and compares the loss curves (scripts/gpu/compare-curves.mjs). Results go to
# $1 (default $OUT/tiny-llama): the four metrics.jsonl files, curves.json and curves.md.
set -uo pipefail
dest=${1:-$OUT/tiny-llama}
mkdir -p "$dest"
cli="node packages/cli/dist-bundle/modulora-bundle.js"
work=/tmp/tiny-llama-gpu
rm -rf "$work" && mkdir -p "$work"
$cli quantize --model fixtures/tiny-llama --quantizer rtn --bits 4 --group-size 32 --out "$work/q4" > "$work/quantize.log" 2>&1 || { cat "$work/quantize.log"; exit 1; }
args=(--model "$work/q4" --data fixtures/data/spam/train.jsonl --format classification --steps 50 --batch-size 8 --seq-len 128
      --lr 5e-4 --dropout 0.1 --seed 7)
for dtype in bf16 f32; do
  for device in cpu cuda; do
    t0=$(date +%s%N)
    $cli finetune "${args[@]}" --dtype $dtype --device $device --out "$work/$device-$dtype" > "$work/$device-$dtype.log" 2>&1
    rc=$?
    t1=$(date +%s%N)
    echo "finetune $device $dtype: exit $rc, $(( (t1 - t0) / 1000000 )) ms; $(grep -E 'trained|peak' "$work/$device-$dtype.log" | tr '\n' ' ')"
    [ $rc -eq 0 ] || tail -20 "$work/$device-$dtype.log"
    cp "$work/$device-$dtype/metrics.jsonl" "$dest/$device-$dtype.metrics.jsonl" 2>/dev/null
    cp "$work/$device-$dtype.log" "$dest/$device-$dtype.log"
  done
done
node scripts/gpu/compare-curves.mjs "$dest"
