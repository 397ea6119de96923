/**
 * `@modulora/bench`: cross-quantizer benchmarks. {@link runBench} quantizes a Hugging Face
 * LLaMA-family model with every quantizer × bits × group size of a grid, measures perplexity
 * and LoRA fine-tuning tasks before and after fine-tuning, keeps each finished cell so that an
 * interrupted run resumes, and writes results.json, results.md and SVG/PNG plots.
 * @packageDocumentation
 */
export * from "./types.js";
export * from "./report.js";
export * from "./plots.js";
export * from "./render.js";
export { runBench, parameterCount } from "./bench.js";
export { resolveBenchSettings, parseQuantizerSpec, quantizerLabel, comparableSettings, isBenchTask, BenchSettingsError } from "./settings.js";
export { planGrid, linearInFeatures, sanitizeId } from "./grid.js";
export { runCell, modelBitsPerWeight, BenchAbortError, type CellContext } from "./cell.js";
export { BenchData, runPerplexity, runBaseline, runFinetuneTask, leadSummary, LEAD_WORDS, type TaskData, type PhaseReporter } from "./tasks.js";
export { BenchStore, firstDifference, BENCH_DIR_FORMAT, BENCH_FILE, CELLS_DIR, RESULTS_FILE } from "./store.js";
export { benchEnvironment, packageVersion, RECORDED_PACKAGES } from "./environment.js";
export { bundledDataPath, BUNDLED_DATA, DEFAULT_BITS, DEFAULT_GROUP_SIZES, DEFAULT_TASKS, DEFAULT_PPL_SEQ_LEN, DEFAULT_PPL_MAX_WINDOWS, DEFAULT_CALIBRATION, DEFAULT_MAX_SAMPLES, DEFAULT_FINETUNE, type BundledFile } from "./defaults.js";
export { subsetIndices, subset, classificationItems, accuracyOf, validationLoss, referenceText, rougeOf } from "./evaluation.js";
