// The bench's bundled data (copied from the repository's fixtures/data into the package's data/
// folder by `pnpm --filter @modulora/bench build`, and published with the package) and the
// default settings that go with it.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { BenchTask, CalibrationSettings, FinetuneSettings, GroupSize } from "./types.js";

/** The bundled data files, relative to the package's data/ folder. */
export const BUNDLED_DATA = {
  pplText: "lm/valid.txt",
  calibrationText: "lm/calib-small.txt",
  classifyTrain: "spam/train.jsonl",
  classifyValid: "spam/valid.jsonl",
  summarizeTrain: "manpage-summary/train.jsonl",
  summarizeValid: "manpage-summary/valid.jsonl",
} as const;

/** One of {@link BUNDLED_DATA}'s keys. */
export type BundledFile = keyof typeof BUNDLED_DATA;

/**
 * The absolute path of a bundled data file. From dist/ (and from src/ under vitest) the data
 * folder is `../data`. Throws when it is missing (a source checkout that was not built).
 */
export function bundledDataPath(file: BundledFile): string {
  const path = fileURLToPath(new URL(`../data/${BUNDLED_DATA[file]}`, import.meta.url));
  if (!existsSync(path)) {
    throw new Error(`@modulora/bench: the bundled data file ${path} is missing; run pnpm --filter @modulora/bench build (it copies fixtures/data into the package), or pass the file explicitly`);
  }
  return path;
}

/** Default bit widths of the grid. */
export const DEFAULT_BITS: readonly number[] = [2, 3, 4];
/** Default group sizes of the grid. */
export const DEFAULT_GROUP_SIZES: readonly GroupSize[] = [128, "row"];
/** Default tasks (all). */
export const DEFAULT_TASKS: readonly BenchTask[] = ["ppl", "classify", "summarize"];
/** Perplexity window length (as `modulora eval --metric ppl`); the stride defaults to it. */
export const DEFAULT_PPL_SEQ_LEN = 512;
/** Perplexity windows scored per cell (the bundled text has about 640 of 512 tokens: all of them would dominate a cell's time). */
export const DEFAULT_PPL_MAX_WINDOWS = 64;
/** Calibration windows and their length (as `modulora quantize`: --calib-samples, --calib-seq-len). */
export const DEFAULT_CALIBRATION: Omit<CalibrationSettings, "text"> = { samples: 128, seqLen: 512 };
/** Seeded validation subsets: classification accuracy and summarization ROUGE (generation is slow). */
export const DEFAULT_MAX_SAMPLES = { classify: 200, summarize: 50 } as const;

/**
 * Fine-tuning defaults, chosen so that the README's example grid (tiny-llama, the four built-in
 * quantizers, bits 2 and 4, ppl + classify) runs in minutes on two CPU cores while a fine-tuned
 * cell clearly beats its accuracy before fine-tuning (see the package README for the timing).
 */
export const DEFAULT_FINETUNE: FinetuneSettings = {
  steps: 100,
  lr: 3e-3,
  batchSize: 8,
  seqLen: 64,
  seed: 0,
  rank: 8,
  alpha: 16,
  dropout: 0,
  warmup: 10,
  maxNewTokens: 32,
};
