// The tasks of one cell, on a loaded (full-precision or quantized) model: perplexity as
// `modulora eval --metric ppl` computes it, and the LoRA fine-tuning tasks (classification
// accuracy, summarization ROUGE) before and after fine-tuning with core's Trainer, as
// `modulora finetune` drives it. The data every cell shares is read and tokenized once.
import { Trainer } from "@modulora/core";
import { BatchSource, loadDataset, meanRougeScores, padIdOf, readTextCorpus, type Batch, type Dataset, type Example } from "@modulora/data";
import {
  attachLoRA, batchLoss, encodeInChunks, evaluatePerplexity, LINEAR_NAMES, perplexityTokenIds, sampleCalibrationWindows, windowCount,
  type LlamaModel, type LlamaTokenizer,
} from "@modulora/llama";
import { accuracyOf, classificationItems, referenceText, rougeOf, subset } from "./evaluation.js";
import type { BenchSettings, CellPhase, FinetuneResult, PplResult, TaskResult } from "./types.js";

/** Reports a phase's progress: `done` of `of` (windows, examples, steps). */
export type PhaseReporter = (phase: CellPhase, done: number, of: number) => void;

/** A fine-tuning task's data: the training set, the seeded validation subset and its spec. */
export interface TaskData {
  readonly train: Dataset;
  readonly valid: Dataset;
  /** The seeded subset of the validation examples every metric is computed on. */
  readonly examples: readonly Example[];
}

/** What every cell of a run shares, read and tokenized once (the tokenizer is the model's). */
export class BenchData {
  private pplIds?: number[];
  private calib?: number[][];
  private readonly tasks = new Map<"classify" | "summarize", TaskData>();

  constructor(
    readonly settings: BenchSettings,
    readonly tokenizer: LlamaTokenizer,
  ) {}

  /** The token ids perplexity scores (only as many as `maxWindows` windows need). */
  perplexityIds(): number[] {
    if (this.pplIds) return this.pplIds;
    const { text, seqLen, stride, maxWindows } = this.settings.ppl;
    const ids = perplexityTokenIds(this.tokenizer, readTextCorpus(text, { txt: "raw", what: "perplexity records" }), { seqLen, stride, ...(maxWindows !== undefined ? { maxWindows } : {}) });
    if (windowCount(ids.length, seqLen, stride) < 1) throw new Error(`${text} has ${ids.length} tokens, less than one window of ppl.seqLen ${seqLen}; lower ppl.seqLen or use a longer text`);
    return (this.pplIds = ids);
  }

  /** The calibration windows, sampled as `modulora quantize` samples them (seed: the fine-tuning seed). */
  calibrationIds(): number[][] {
    if (this.calib) return this.calib;
    const { text, samples, seqLen } = this.settings.calibration;
    const ids = encodeInChunks(this.tokenizer, readTextCorpus(text, { txt: "documents", what: "calibration records" }));
    if (ids.length < seqLen) throw new Error(`calibration text ${text} has ${ids.length} tokens, fewer than one window of calibration.seqLen ${seqLen}; use a longer text or a smaller seqLen`);
    return (this.calib = sampleCalibrationWindows(ids, samples, seqLen, this.settings.finetune.seed));
  }

  /** A fine-tuning task's datasets (validation with the training set's templates and labels). */
  task(task: "classify" | "summarize"): TaskData {
    const have = this.tasks.get(task);
    if (have) return have;
    const files = this.settings[task];
    const format = task === "classify" ? "classification" : "summarization";
    const seqLen = this.settings.finetune.seqLen;
    const train = loadDataset(files.train, { format, tokenizer: this.tokenizer, seqLen });
    const valid = loadDataset(files.valid, {
      format, tokenizer: this.tokenizer, seqLen, ...(train.spec.templates ? { templates: train.spec.templates } : {}), ...(train.spec.labels ? { labels: train.spec.labels } : {}),
    });
    const data = { train, valid, examples: subset(valid.examples, files.maxSamples, this.settings.finetune.seed) };
    this.tasks.set(task, data);
    return data;
  }
}

/** Perplexity of `model` on the run's text: `evaluatePerplexity` with the run's seqLen, stride and maxWindows. */
export function runPerplexity(model: LlamaModel, data: BenchData, report: PhaseReporter): PplResult {
  const { seqLen, stride, maxWindows } = data.settings.ppl;
  const ids = data.perplexityIds();
  const t0 = performance.now();
  const r = evaluatePerplexity(model, ids, { seqLen, stride, ...(maxWindows !== undefined ? { maxWindows } : {}), onProgress: (d, n) => report("ppl", d, n) });
  return { ppl: r.perplexity, nll: r.nll, tokens: r.tokens, windows: r.windows, seqLen, stride, seconds: (performance.now() - t0) / 1000 };
}

/** The lead baseline's summary: the text's first sentence (up to `.`, `!` or `?` followed by a space or the end), at most 32 words. */
export function leadSummary(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  const m = /^(.*?[.!?])(\s|$)/.exec(flat);
  const sentence = m ? m[1]! : flat;
  return sentence.split(" ").slice(0, LEAD_WORDS).join(" ");
}

/** Words of the lead baseline's summary at most. */
export const LEAD_WORDS = 32;

/**
 * The baseline row of a task: classify predicts the training set's most common label for every
 * example (its accuracy); summarize answers every example with {@link leadSummary} (its ROUGE).
 */
export function runBaseline(task: "classify" | "summarize", data: BenchData): TaskResult {
  const t0 = performance.now();
  const d = data.task(task);
  let before: Record<string, number>;
  if (task === "classify") {
    const counts = new Map<string, number>();
    for (const ex of d.train.examples) {
      const l = String(ex.record!["label"]);
      counts.set(l, (counts.get(l) ?? 0) + 1);
    }
    const majority = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]![0];
    const correct = d.examples.filter((ex) => String(ex.record!["label"]) === majority).length;
    before = { accuracy: correct / d.examples.length };
  } else {
    const templates = d.valid.spec.templates!;
    const pairs = d.examples.map((ex) => ({ prediction: leadSummary(String(ex.record!["text"] ?? "")), reference: referenceText(ex.record!, templates) }));
    const r = meanRougeScores(pairs);
    before = { rouge1: r.rouge1, rouge2: r.rouge2, rougeL: r.rougeL };
  }
  const seconds = (performance.now() - t0) / 1000;
  return { metric: task === "classify" ? "accuracy" : "rougeL", n: d.examples.length, before, seconds, evalSeconds: seconds };
}

/** The metrics of a fine-tuning task on `model` as it is now. */
function taskMetrics(task: "classify" | "summarize", model: LlamaModel, data: BenchData, onProgress: (done: number, of: number) => void): Record<string, number> {
  const d = data.task(task);
  if (task === "classify") return { accuracy: accuracyOf(model, classificationItems(d.examples, d.valid.spec, data.tokenizer), onProgress).accuracy };
  const r = rougeOf(model, data.tokenizer, { examples: [...d.examples], spec: d.valid.spec }, { maxNewTokens: data.settings.finetune.maxNewTokens, onProgress });
  return { rouge1: r.rouge1, rouge2: r.rouge2, rougeL: r.rougeL };
}

/**
 * One fine-tuning task of a cell: the metrics of the model (before), LoRA on every linear of
 * every block trained with the Trainer (no output directory: nothing is written), the metrics
 * again (after); the adapter is detached (its tensors freed) on every path.
 * `checkAbort` runs between the phases and throws to stop.
 */
export async function runFinetuneTask(task: "classify" | "summarize", model: LlamaModel, data: BenchData, report: PhaseReporter, checkAbort: () => void): Promise<TaskResult> {
  const f = data.settings.finetune;
  const d = data.task(task);
  const t0 = performance.now();
  let evalSeconds = 0;
  const timed = <T>(fn: () => T): T => {
    const s = performance.now();
    try {
      return fn();
    } finally {
      evalSeconds += (performance.now() - s) / 1000;
    }
  };
  const before = timed(() => taskMetrics(task, model, data, (done, of) => report(`${task}:before`, done, of)));
  checkAbort();
  const adapter = attachLoRA(model, { r: f.rank, alpha: f.alpha, dropout: f.dropout, targets: LINEAR_NAMES, seed: f.seed });
  try {
    const parameters = new Map([...adapter.layers].flatMap(([name, l]) => [[`${name}.lora_A`, l.loraA], [`${name}.lora_B`, l.loraB]] as const));
    const source = new BatchSource(d.train.examples, { batchSize: f.batchSize, padId: padIdOf(data.tokenizer), seed: f.seed });
    let firstLoss = NaN;
    const trainer = new Trainer<Batch>({
      parameters,
      dtype: data.settings.dtype,
      loss: (batch, c) => batchLoss(model, batch, { step: c.step, training: true }),
      data: source,
      steps: f.steps,
      lr: f.lr,
      schedule: "cosine",
      warmupSteps: f.warmup,
      seed: f.seed,
      handleSigint: false,
      onEvent: (e) => {
        if (e.type === "step") {
          if (e.step === 1) firstLoss = e.loss;
          report(`${task}:finetune`, e.step, e.totalSteps);
        }
      },
    });
    let fit;
    try {
      fit = await trainer.fit();
    } finally {
      trainer.dispose();
    }
    const finetune: FinetuneResult = {
      steps: fit.steps, tokens: fit.tokens, seconds: fit.seconds, tokensPerSecond: fit.tokens / Math.max(fit.seconds, 1e-9), firstLoss, lastLoss: fit.lastLoss,
    };
    checkAbort();
    const after = timed(() => taskMetrics(task, model, data, (done, of) => report(`${task}:after`, done, of)));
    return { metric: task === "classify" ? "accuracy" : "rougeL", n: d.examples.length, before, after, finetune, seconds: (performance.now() - t0) / 1000, evalSeconds };
  } finally {
    adapter.detach();
  }
}
