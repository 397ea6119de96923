// What the GPU benchmarks share (throughput.ts here, ../../scaling): the LLaMA shapes of
// torch_lora_bench.py, seeded random token ids, the card's name and CUDA version, the median.
import os from "node:os";
import { parseDevice, type Device } from "@modulora/tensor";
import { cudaInfo } from "@modulora/kernels";
import type { RandomLlamaShape } from "@modulora/llama";

/** The shapes of torch_lora_bench.py, and `tiny` for tests on the CPU (its sizes multiples of the group size, 128). */
export const SHAPES: Record<string, RandomLlamaShape & { batch: number; seq: number }> = {
  tiny: { hiddenSize: 128, intermediateSize: 384, numLayers: 2, numHeads: 4, numKvHeads: 4, vocabSize: 256, batch: 2, seq: 32 },
  "7b": { hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: 32, vocabSize: 32000, batch: 4, seq: 512 },
  "13b": { hiddenSize: 5120, intermediateSize: 13824, numLayers: 40, numHeads: 40, numKvHeads: 40, vocabSize: 32000, batch: 4, seq: 512 },
  "65b": { hiddenSize: 8192, intermediateSize: 22016, numLayers: 80, numHeads: 64, numKvHeads: 64, vocabSize: 32000, batch: 1, seq: 512 },
};

/** n token ids in [0, vocab), from a seeded xorshift. */
export function randomIds(n: number, vocab: number, seed: number): Int32Array {
  let x = (seed * 2654435761 + 0x9e3779b9) >>> 0 || 1;
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    ids[i] = x % vocab;
  }
  return ids;
}

/** Whether `device` is a CUDA device. */
export const isCuda = (device: Device) => parseDevice(device).family === "cuda";

/** The CUDA index of a `cuda` / `cuda:N` device. */
export const cudaIndex = (device: Device) => parseDevice(device).index ?? 0;

/** The card (or CPU) `device` runs on, by name. */
export function cardName(device: Device): string {
  if (isCuda(device)) {
    const info = cudaInfo();
    return info.devices.find((d) => d.index === cudaIndex(device))?.name ?? `cuda device ${cudaIndex(device)}`;
  }
  return `${device}: ${os.cpus()[0]?.model?.trim() ?? "unknown CPU"} (${os.cpus().length} CPUs)`;
}

/** The CUDA runtime version (e.g. `13.0`), or null without a GPU. */
export function cudaRuntime(): string | null {
  const info = cudaInfo();
  if (!info.available) return null;
  const v = info.runtimeVersion;
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/** The median as torch_lora_bench.py takes it (the upper one of an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!; // torch_lora_bench.py's ts[len(ts) // 2]
}

/** One configuration of a benchmark: a shape, its bits, checkpointing, the micro-batch. */
export interface Config {
  name: string;
  shape: string;
  bits: number;
  checkpointing: boolean;
  batch: number;
  seq: number;
}
