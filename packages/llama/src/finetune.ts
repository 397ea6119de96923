// Glue between the model and training/evaluation data, on structural types so that this package
// does not depend on @modulora/data (batches from its BatchSource fit as they are).
import { cast, gather, logSoftmax, noGrad, reshape, tensorFrom, tidy, type Tensor } from "@modulora/tensor";
import type { LlamaModel } from "./model.js";
import type { LlamaTokenizer } from "./tokenizer.js";
import { generateTokens } from "./generate.js";
import { NON_FINITE_HINT, NonFiniteError } from "./types.js";

/** A padded batch: inputIds/labels row-major [B, T] (labels −100 where no loss is taken). */
export interface TokenBatchLike {
  inputIds: Int32Array;
  labels: Int32Array;
  /** Real (unpadded) length of each row; its length is B. */
  lengths: ArrayLike<number>;
  /** Trained tokens in the batch. */
  tokens: number;
}

/** Options of {@link batchLoss}. */
export interface BatchLossOptions {
  step?: number;
  training?: boolean;
  checkpointing?: boolean;
}

function shapeOf(batch: TokenBatchLike): [number, number] {
  const b = batch.lengths.length;
  if (b === 0 || batch.inputIds.length % b !== 0 || batch.labels.length !== batch.inputIds.length) {
    throw new RangeError(`batch: inputIds (${batch.inputIds.length}) and labels (${batch.labels.length}) must both be [B, T] with B = ${b}`);
  }
  return [b, batch.inputIds.length / b];
}

/**
 * The mean next-token cross-entropy of a batch (labels shifted inside, −100 ignored), as
 * `LlamaForCausalLM(labels=...)` computes it. Recorded for autograd.
 */
export function batchLoss(model: LlamaModel, batch: TokenBatchLike, options: BatchLossOptions = {}): Tensor {
  const [b, t] = shapeOf(batch);
  return tidy(() => {
    // The batch in: two host → device copies per micro-batch, nothing else crosses for the loss.
    const ids = tensorFrom(batch.inputIds, { shape: [b, t], dtype: "i32", device: model.device });
    const labels = tensorFrom(batch.labels, { shape: [b, t], dtype: "i32", device: model.device });
    return model.loss(ids, labels, { training: options.training ?? true, step: options.step, checkpointing: options.checkpointing });
  });
}

/** Mean loss per predicted token over batches (no gradients), and its perplexity. */
export function evaluateLoss(model: LlamaModel, batches: Iterable<TokenBatchLike>): { loss: number; perplexity: number; tokens: number } {
  let sum = 0;
  let count = 0;
  noGrad(() => {
    for (const batch of batches) {
      // the number of predicted tokens: labels after the shift that are not ignored
      const [b, t] = shapeOf(batch);
      let n = 0;
      for (let r = 0; r < b; r++) for (let c = 1; c < t; c++) if (batch.labels[r * t + c] !== -100) n++;
      if (n === 0) continue;
      const loss = tidy(() => batchLoss(model, batch, { training: false }).item());
      sum += loss * n;
      count += n;
    }
  });
  const loss = count ? sum / count : NaN;
  return { loss, perplexity: Math.exp(loss), tokens: count };
}

/** A candidate continuation: the whole sequence and the span of target tokens to score. */
export interface ScoredCandidate {
  inputIds: readonly number[];
  /** First target position (inclusive) in `inputIds`. */
  targetStart: number;
  /** End of the target span (exclusive). */
  targetEnd: number;
}

/** Σ log p(target tokens | everything before) for each candidate (one batched forward, no gradients). */
export function scoreCandidates(model: LlamaModel, candidates: readonly ScoredCandidate[]): number[] {
  if (candidates.length === 0) return [];
  const t = Math.max(...candidates.map((c) => c.inputIds.length));
  const b = candidates.length;
  const ids = new Int32Array(b * t);
  candidates.forEach((c, r) => {
    if (!(c.targetStart >= 1 && c.targetEnd <= c.inputIds.length && c.targetStart < c.targetEnd)) {
      throw new RangeError(`scoreCandidates: target span [${c.targetStart}, ${c.targetEnd}) is not inside 1..${c.inputIds.length}`);
    }
    ids.set(c.inputIds, r * t);
  });
  // Position p − 1 predicts token p: only those rows of the logits are normalized and read (the
  // whole [B·T, V] log-softmax copied out would be tens of MB per call, all garbage).
  const rows: number[] = [];
  for (const [r, c] of candidates.entries()) for (let p = c.targetStart; p < c.targetEnd; p++) rows.push(r * t + p - 1);
  return noGrad(() =>
    tidy(() => {
      const logits = model.forward(tensorFrom(ids, { shape: [b, t], dtype: "i32", device: model.device })).logits; // [B, T, V]
      const v = logits.shape[2]!;
      const rowsOf = gather(reshape(logits, [b * t, v]), tensorFrom(Int32Array.from(rows), { dtype: "i32", device: model.device }), 0); // [K, V]
      // Normalized in f32 whatever the model's dtype (bf16 log-probabilities would round each to 2^-8).
      const picked = logSoftmax(rowsOf.dtype === "bf16" ? cast(rowsOf, "f32") : rowsOf, -1); // [K, V]
      const lp = picked.toFloat64Array(); // K rows of V
      let k = 0;
      return candidates.map((c, r) => {
        let s = 0;
        for (let p = c.targetStart; p < c.targetEnd; p++, k++) s += lp[k * v + ids[r * t + p]!]!;
        return s;
      });
    }),
  );
}

/** One classification example: its true label and one candidate per label. */
export interface ClassificationItem {
  label: string;
  candidates: readonly (ScoredCandidate & { label: string })[];
}

/**
 * Accuracy (a fraction in [0, 1]): the prediction of each item is the label whose target has the
 * highest summed log-probability.
 */
export function evaluateClassification(model: LlamaModel, items: readonly ClassificationItem[], options: { onProgress?: (done: number, total: number) => void } = {}): { accuracy: number; n: number; correct: number; predictions: string[] } {
  let correct = 0;
  const predictions: string[] = [];
  items.forEach((item, i) => {
    const scores = scoreCandidates(model, item.candidates);
    const bad = scores.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new NonFiniteError(`evaluateClassification: the log-probability of example ${i}'s candidate '${item.candidates[bad]!.label}' is ${scores[bad]}: ${NON_FINITE_HINT}`);
    let best = 0;
    for (let k = 1; k < scores.length; k++) if (scores[k]! > scores[best]!) best = k;
    const predicted = item.candidates[best]!.label;
    predictions.push(predicted);
    if (predicted === item.label) correct++;
    options.onProgress?.(i + 1, items.length);
  });
  return { accuracy: items.length ? correct / items.length : NaN, n: items.length, correct, predictions };
}

const newlineTokenCache = new WeakMap<LlamaTokenizer, number[]>();

/** Ids of every token whose text contains a newline (computed once per tokenizer). */
export function newlineTokenIds(tokenizer: LlamaTokenizer): number[] {
  let ids = newlineTokenCache.get(tokenizer);
  if (!ids) {
    ids = [];
    for (let id = 0; id < tokenizer.vocabSize; id++) {
      let text = "";
      try {
        text = tokenizer.decode([id]);
      } catch {
        continue;
      }
      if (text.includes("\n")) ids.push(id);
    }
    newlineTokenCache.set(tokenizer, ids);
  }
  return ids;
}

/**
 * Greedy generation of at most `maxNewTokens` (default 64), stopping at EOS or, with
 * `stopAtNewline` (default true), at the first token that contains a newline; returns the text
 * generated before the stop.
 */
export function generateText(model: LlamaModel, tokenizer: LlamaTokenizer, promptIds: readonly number[], options: { maxNewTokens?: number; stopAtNewline?: boolean } = {}): string {
  const stopAtNewline = options.stopAtNewline ?? true;
  const stopTokens = [...model.config.eosTokenIds, ...(tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : []), ...(stopAtNewline ? newlineTokenIds(tokenizer) : [])];
  const r = generateTokens(model, promptIds, { maxNewTokens: options.maxNewTokens ?? 64, temperature: 0, stopTokens });
  const ids = r.stoppedBy === "max-tokens" ? r.ids : r.ids.slice(0, -1);
  const text = ids.length ? tokenizer.decode(ids, { skipSpecialTokens: true }) : "";
  const lastId = r.ids[r.ids.length - 1];
  if (!stopAtNewline || r.stoppedBy !== "stop-token" || lastId === tokenizer.eosTokenId) return text;
  // keep what the stopping token had before its newline
  const last = tokenizer.decode([r.ids[r.ids.length - 1]!]);
  return text + last.split("\n")[0]!;
}
