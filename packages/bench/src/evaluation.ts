// Evaluation shared by `modulora finetune` (periodic and final), `modulora eval` and the bench:
// seeded subsets, accuracy, validation loss, ROUGE of greedy generations.
import { BatchSource, classificationCandidates, fillTemplate, meanRougeScores, padIdOf, promptIds, Rng, shuffleInPlace, type Dataset, type DatasetSpec, type Example, type Templates } from "@modulora/data";
import { evaluateClassification, evaluateLoss, generateText, type ClassificationItem, type LlamaModel, type LlamaTokenizer } from "@modulora/llama";

/**
 * A seeded random subset of `n` of `count` indices, in their original order (all of them when
 * `n` is undefined or ≥ count). Data files are often sorted by label, so the first n will not do.
 */
export function subsetIndices(count: number, n: number | undefined, seed: number): number[] {
  const all = Array.from({ length: count }, (_, i) => i);
  if (n === undefined || n >= count) return all;
  // Stream 7 of the seed: independent of the batch order's streams (0, 1, … per epoch).
  shuffleInPlace(all, new Rng(seed, 7));
  return all.slice(0, n).sort((x, y) => x - y);
}

/** The examples of a subset. */
export function subset<T>(items: readonly T[], n: number | undefined, seed: number): T[] {
  return subsetIndices(items.length, n, seed).map((i) => items[i]!);
}

/** Classification items (one candidate per label) for evaluateClassification. */
export function classificationItems(examples: readonly Example[], spec: DatasetSpec, tokenizer: LlamaTokenizer): ClassificationItem[] {
  const labels = spec.labels ?? [];
  return examples.map((ex) => ({
    label: String(ex.record!["label"]),
    candidates: classificationCandidates(ex, labels, tokenizer, { templates: spec.templates, seqLen: spec.seqLen }),
  }));
}

/** Accuracy, and the fraction of the most common true label (the majority baseline). */
export function accuracyOf(model: LlamaModel, items: readonly ClassificationItem[], onProgress?: (done: number, total: number) => void): { accuracy: number; n: number; correct: number; majority: number; majorityLabel: string } {
  const r = evaluateClassification(model, items, onProgress ? { onProgress } : {});
  const counts = new Map<string, number>();
  for (const it of items) counts.set(it.label, (counts.get(it.label) ?? 0) + 1);
  let majorityLabel = "";
  let best = -1;
  for (const [label, c] of counts) if (c > best) [majorityLabel, best] = [label, c];
  return { accuracy: r.accuracy, n: r.n, correct: r.correct, majority: items.length ? best / items.length : NaN, majorityLabel };
}

/** Mean validation loss per predicted token and its perplexity. */
export function validationLoss(model: LlamaModel, examples: readonly Example[], tokenizer: LlamaTokenizer, batchSize: number): { loss: number; ppl: number; tokens: number } {
  const src = new BatchSource(examples, { batchSize, padId: padIdOf(tokenizer), shuffle: false });
  const r = evaluateLoss(model, src.epoch(0));
  return { loss: r.loss, ppl: r.perplexity, tokens: r.tokens };
}

/** The reference text of a prompt-target record: its rendered target, trimmed. */
export function referenceText(record: Readonly<Record<string, unknown>>, templates: Templates): string {
  return fillTemplate(templates.target, record).trim();
}

/** Mean ROUGE-1/2/L F1 of greedy generations (≤ maxNewTokens, stop at EOS or newline) against the references. */
export function rougeOf(
  model: LlamaModel, tokenizer: LlamaTokenizer, dataset: Pick<Dataset, "examples" | "spec">, options: { maxNewTokens: number; onProgress?: (done: number, total: number) => void },
): { rouge1: number; rouge2: number; rougeL: number; n: number } {
  const { spec } = dataset;
  const templates = spec.templates!;
  const pairs = dataset.examples.map((ex, i) => {
    // Leave room for the generation inside seqLen, as training would.
    const ids = promptIds(ex, spec, tokenizer, { maxLength: Math.max(2, spec.seqLen - options.maxNewTokens) });
    const prediction = generateText(model, tokenizer, ids, { maxNewTokens: options.maxNewTokens });
    options.onProgress?.(i + 1, dataset.examples.length);
    return { prediction, reference: referenceText(ex.record!, templates) };
  });
  return { ...meanRougeScores(pairs), n: pairs.length };
}
