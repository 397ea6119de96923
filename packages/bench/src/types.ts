// The shapes shared by the bench's parts: what the caller asks for (BenchOptions), the grid
// (BenchCell), what one cell measured (CellResult), and the whole run (BenchResults, written as
// results.json). Every number in a result is finite or the field is absent.
import type { ModelDType } from "@modulora/llama";

/** The tasks a bench can run on every cell. */
export type BenchTask = "ppl" | "classify" | "summarize";

/** Every task, in the order a cell runs them. */
export const BENCH_TASKS: readonly BenchTask[] = ["ppl", "classify", "summarize"];

/** A quantizer group size: input columns per group, or one group per output row. */
export type GroupSize = number | "row";

/**
 * One quantizer of the grid: a registered quantizer's name, optionally with option values (its
 * `QuantizerPlugin.options`) that make it a variant. `label` names the variant in tables and
 * plots (default: the name, then `key=value` pairs joined with `:`, e.g. `hqq:optimizeScale=true`).
 */
export interface BenchQuantizer {
  readonly name: string;
  readonly options?: Readonly<Record<string, unknown>>;
  readonly label?: string;
}

/** Perplexity settings (the fixtures protocol: windows of `seqLen` tokens, a new one every `stride`). */
export interface PplSettings {
  /** The text file (.txt, or .jsonl with `text` fields). Default: the bundled LM validation text. */
  readonly text: string;
  /** Tokens per window (default 512, as `modulora eval --metric ppl`). */
  readonly seqLen: number;
  /** Tokens between window starts (default `seqLen`: non-overlapping windows). */
  readonly stride: number;
  /** At most this many windows (default 64; `null` in {@link BenchOptions.ppl}: all of the text). */
  readonly maxWindows?: number;
}

/** A fine-tuning task's files. */
export interface TaskFiles {
  /** Training JSONL. */
  readonly train: string;
  /** Validation JSONL (the metrics are computed on it). */
  readonly valid: string;
  /** Evaluate on a seeded subset of this many validation examples (default 200 for classify, 50 for summarize). */
  readonly maxSamples?: number;
}

/**
 * Fine-tuning settings shared by every cell and task. The defaults are sized for a grid of
 * tiny-llama cells on two CPU cores (about 40 s a cell with ppl + classify): 100 steps of 8
 * examples of at most 64 tokens, lr 3e-3 with 10 warm-up steps then cosine.
 */
export interface FinetuneSettings {
  /** Optimizer steps per task (default 100). */
  readonly steps: number;
  /** Peak learning rate (default 3e-3), cosine schedule after `warmup` steps. */
  readonly lr: number;
  /** Examples per step (default 8). */
  readonly batchSize: number;
  /** Longest training / evaluation sequence in tokens (default 64; summarization prompts get seqLen − maxNewTokens). */
  readonly seqLen: number;
  /** Seed of the adapter's initialization, the batch order, dropout and the evaluation subsets (default 0). */
  readonly seed: number;
  /** LoRA rank (default 8) and alpha (default 16), on every linear of every block. */
  readonly rank: number;
  readonly alpha: number;
  /** LoRA dropout (default 0). */
  readonly dropout: number;
  /** Warm-up steps (default 10). */
  readonly warmup: number;
  /** Greedy tokens generated per summarization example (default 32); must be below `seqLen`. */
  readonly maxNewTokens: number;
}

/**
 * Calibration for quantizers that need it (OPTQ): the bundled calibration text by default, sampled
 * as `modulora quantize` samples it (`sampleCalibrationWindows` with the fine-tuning seed).
 */
export interface CalibrationSettings {
  readonly text: string;
  /** Sequences (default 128) of `seqLen` tokens (default 512), as `modulora quantize`. */
  readonly samples: number;
  readonly seqLen: number;
}

/** What `runBench` is asked for. Everything but `model` and `out` has a default. */
export interface BenchOptions {
  /** A Hugging Face LLaMA-family model directory (config.json, safetensors, tokenizer). */
  readonly model: string;
  /** The directory for results.json, results.md, the plots and the finished cells (`cells/`). */
  readonly out: string;
  /** Quantizers (names or variants). Default: every registered quantizer. */
  readonly quantizers?: readonly (string | BenchQuantizer)[];
  /** Bit widths (default 2, 3, 4); each quantizer runs those in its `supportedBits`. */
  readonly bits?: readonly number[];
  /** Group sizes (default 128 and "row"); each quantizer runs those it supports. */
  readonly groupSizes?: readonly GroupSize[];
  /** Tasks (default all three). */
  readonly tasks?: readonly BenchTask[];
  readonly ppl?: Partial<Omit<PplSettings, "maxWindows">> & { readonly maxWindows?: number | null };
  readonly classify?: Partial<TaskFiles>;
  readonly summarize?: Partial<TaskFiles>;
  readonly finetune?: Partial<FinetuneSettings>;
  readonly calibration?: Partial<CalibrationSettings>;
  /** Include the full-precision row (default true). */
  readonly fullPrecision?: boolean;
  /** Include the majority (classify) / lead (summarize) baseline row (default true). */
  readonly baseline?: boolean;
  /** Keep the finished cells in `out` and run only the missing ones (default false). */
  readonly resume?: boolean;
  /** Replace what `out` holds (default false: a non-empty `out` without `resume` is an error). */
  readonly overwrite?: boolean;
  /** Device (default "cpu") and compute dtype (default "f32"). */
  readonly device?: string;
  readonly dtype?: ModelDType;
  /** Progress events. */
  readonly onEvent?: (event: BenchEvent) => void;
  /** Stops the run between phases; finished cells stay in `out`. */
  readonly signal?: AbortSignal;
  /** The command line that started the run, recorded in results.json. */
  readonly command?: string;
  /** What writes results.md and the plots (default: this package's `writeReport` and `writePlots`). */
  readonly writers?: Partial<BenchWriters>;
}

/** The writers of a run's report, called with `out` and the results once every cell is done; each returns the paths it wrote. */
export interface BenchWriters {
  writeReport(dir: string, results: BenchResults): string[];
  writePlots(dir: string, results: BenchResults): Promise<string[]>;
}

/** The settings of a run after defaults; recorded in results.json, and compared on `resume`. */
export interface BenchSettings {
  readonly model: string;
  readonly tasks: readonly BenchTask[];
  readonly quantizers: readonly BenchQuantizer[];
  readonly bits: readonly number[];
  readonly groupSizes: readonly GroupSize[];
  readonly ppl: PplSettings;
  readonly classify: TaskFiles;
  readonly summarize: TaskFiles;
  readonly finetune: FinetuneSettings;
  readonly calibration: CalibrationSettings;
  readonly fullPrecision: boolean;
  readonly baseline: boolean;
  readonly device: string;
  readonly dtype: ModelDType;
}

/** What a row of the grid is. */
export type CellKind = "quantized" | "full-precision" | "baseline";

/** One row of the grid, before it runs. `skip` is set (with the reason) for a setting the quantizer does not support. */
export interface BenchCell {
  /** File-name-safe and unique: `fp`, `baseline`, or `<label>-b<bits>-g<group|row>` (e.g. `rtn-b4-g128`). */
  readonly id: string;
  readonly kind: CellKind;
  /** The quantizer's label (`BenchQuantizer.label`), or null for the fp and baseline rows. */
  readonly label: string | null;
  readonly quantizer: string | null;
  readonly options: Readonly<Record<string, unknown>>;
  readonly bits: number | null;
  readonly groupSize: GroupSize | null;
  readonly skip?: string;
}

/** Perplexity of one cell. */
export interface PplResult {
  readonly ppl: number;
  /** Mean negative log-likelihood per predicted token. */
  readonly nll: number;
  readonly tokens: number;
  readonly windows: number;
  readonly seqLen: number;
  readonly stride: number;
  readonly seconds: number;
}

/** Fine-tuning of one task in one cell. */
export interface FinetuneResult {
  readonly steps: number;
  /** Tokens trained on (padding excluded) and wall time of the optimizer steps. */
  readonly tokens: number;
  readonly seconds: number;
  readonly tokensPerSecond: number;
  readonly firstLoss: number;
  readonly lastLoss: number;
}

/**
 * A fine-tuning task of one cell: its metrics before fine-tuning (the LoRA factors B start at
 * zero, so this is the base model), after, and the fine-tuning. Classify: `accuracy`;
 * summarize: `rouge1`, `rouge2`, `rougeL` (F1). The baseline row has `before` only (the majority
 * label's accuracy, or the lead summary's ROUGE).
 */
export interface TaskResult {
  readonly metric: "accuracy" | "rougeL";
  readonly n: number;
  readonly before: Readonly<Record<string, number>>;
  readonly after?: Readonly<Record<string, number>>;
  readonly finetune?: FinetuneResult;
  /** Wall time of the task: evaluations and fine-tuning. */
  readonly seconds: number;
  /** Seconds spent evaluating (before + after). */
  readonly evalSeconds: number;
}

/** Quantizing one cell's model. */
export interface QuantizeResult {
  readonly seconds: number;
  /** Of which calibration (0 for quantizers without). */
  readonly calibrationSeconds: number;
  /** True bits per weight of the quantized layers: codes and every piece of metadata (scales, zeros, tables, g_idx). */
  readonly bitsPerWeight: number;
  /** Bits per parameter of the whole model as held (quantized layers, embedding, head, norms). */
  readonly modelBitsPerWeight: number;
  readonly layers: number;
  /** Mean relative weight error ‖W − Ŵ‖ / ‖W‖ over the layers, when the quantizer reports it. */
  readonly meanError?: number;
}

/** One finished row: `done`, `skipped` (with `reason`) or `failed` (with `reason`, the error's message). */
export interface CellResult extends BenchCell {
  readonly status: "done" | "skipped" | "failed";
  readonly reason?: string;
  readonly quantize?: QuantizeResult;
  readonly tasks: { readonly ppl?: PplResult; readonly classify?: TaskResult; readonly summarize?: TaskResult };
  /** Peak device bytes in use over the cell (the tensor allocator's peak, weights included). */
  readonly peakBytes?: number;
  /** Wall time of the cell, model loading included. */
  readonly seconds: number;
  readonly startedAt: string;
  readonly finishedAt: string;
}

/** Where and with what a run ran, for a reader to trust its figures. */
export interface BenchEnvironment {
  readonly node: string;
  readonly platform: string;
  readonly cpu: string;
  readonly cpus: number;
  readonly threads: number;
  readonly memoryGiB: number;
  /** The device's name (the GPU card for cuda). */
  readonly device: string;
  readonly packages: Readonly<Record<string, string>>;
  readonly loadAverage: readonly number[];
}

/** results.json. */
export interface BenchResults {
  readonly schema: "modulora-bench/1";
  readonly settings: BenchSettings;
  readonly model: { readonly path: string; readonly name: string; readonly parameters: number; readonly layers: number; readonly hidden: number; readonly vocab: number };
  readonly environment: BenchEnvironment;
  readonly command?: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  /** Every row in grid order: the fp row first, the baseline row, then the quantized cells. */
  readonly cells: readonly CellResult[];
}

/** The phases of a cell, in order (a task's phases only when it runs). */
export type CellPhase = "load" | "quantize" | "ppl" | "classify:before" | "classify:finetune" | "classify:after" | "summarize:before" | "summarize:finetune" | "summarize:after";

/** Progress of a run. `index` counts the grid's rows from 0; `total` is the row count. */
export type BenchEvent =
  | { readonly type: "start"; readonly total: number; readonly cells: readonly BenchCell[]; readonly resumed: number }
  | { readonly type: "cell-start"; readonly index: number; readonly total: number; readonly cell: BenchCell }
  | { readonly type: "phase"; readonly index: number; readonly cell: BenchCell; readonly phase: CellPhase; readonly done: number; readonly of: number }
  | { readonly type: "cell-end"; readonly index: number; readonly total: number; readonly result: CellResult; readonly resumed: boolean }
  /** Something the user should know that does not stop the run (an unreadable cell file run again, a plot that could not be drawn). */
  | { readonly type: "warning"; readonly message: string }
  | { readonly type: "end"; readonly results: BenchResults; readonly files: readonly string[] };
