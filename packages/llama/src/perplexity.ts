// Perplexity with the fixtures' protocol (fixtures/README.md): the ids of the whole text are cut
// into non-overlapping windows of seqLen tokens from the start, the last partial window is dropped,
// each window is scored independently (no context carried over), and
// perplexity = exp(mean NLL over all predicted tokens), seqLen − 1 of them per window.
// With a stride below seqLen the windows overlap (a new one starts every `stride` tokens) and each
// window after the first scores only its last `stride` tokens, the ones no earlier window scored,
// so every token is predicted once, with at least seqLen − stride tokens of context (the sliding-
// window evaluation of Hugging Face's perplexity guide). stride = seqLen is the protocol above.
import { crossEntropy, noGrad, slice, tensorFrom, tidy } from "@modulora/tensor";
import type { LlamaModel } from "./model.js";
import { NON_FINITE_HINT, NonFiniteError } from "./types.js";

/** Options of {@link evaluatePerplexity}. */
export interface PerplexityOptions {
  /** Tokens per window. */
  seqLen: number;
  /** Tokens between the starts of consecutive windows, 1 ≤ stride ≤ seqLen (default seqLen: non-overlapping windows). */
  stride?: number;
  /** Score only the first windows. */
  maxWindows?: number;
  /** Windows per forward (default 1). */
  batchSize?: number;
  /** Called after each batch with the windows done so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** What {@link evaluatePerplexity} returns. */
export interface PerplexityResult {
  /** exp(nll). */
  perplexity: number;
  /** Mean negative log-likelihood per predicted token, in nats. */
  nll: number;
  /** Predicted tokens: (seqLen − 1) + (windows − 1) · min(stride, seqLen − 1). */
  tokens: number;
  windows: number;
}

/** Scores `tokenIds` with `model` by the windowed protocol above. Runs without autograd. */
export function evaluatePerplexity(model: LlamaModel, tokenIds: ArrayLike<number>, options: PerplexityOptions): PerplexityResult {
  const { seqLen, batchSize = 1 } = options;
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new RangeError(`evaluatePerplexity: seqLen must be an integer ≥ 2, got ${seqLen}`);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`evaluatePerplexity: batchSize must be an integer ≥ 1, got ${batchSize}`);
  const stride = checkStride("evaluatePerplexity", seqLen, options.stride);
  const maxWindows = options.maxWindows ?? Infinity;
  if (!(maxWindows === Infinity || (Number.isInteger(maxWindows) && maxWindows >= 1))) {
    throw new RangeError(`evaluatePerplexity: maxWindows must be an integer ≥ 1, got ${maxWindows}`);
  }
  const windows = Math.min(windowCount(tokenIds.length, seqLen, stride), maxWindows);
  if (windows === 0) throw new RangeError(`evaluatePerplexity: ${tokenIds.length} tokens make no full window of ${seqLen}`);
  // Targets a window after the first scores: its last min(stride, seqLen − 1) predictions.
  const firstScored = seqLen - 1 - Math.min(stride, seqLen - 1);
  let totalNll = 0; // f64 accumulation over batches
  for (let w0 = 0; w0 < windows; w0 += batchSize) {
    const b = Math.min(batchSize, windows - w0);
    // The ids (rows 0..b) and their targets (rows b..2b) in one upload: one copy in per batch.
    const both = new Int32Array(2 * b * seqLen);
    const labels = b * seqLen;
    for (let j = 0; j < b; j++) {
      const begin = (w0 + j) * stride;
      const from = w0 + j === 0 ? 0 : firstScored;
      for (let t = 0; t < seqLen; t++) {
        both[j * seqLen + t] = tokenIds[begin + t]!;
        both[labels + j * seqLen + t] = t < seqLen - 1 && t >= from ? tokenIds[begin + t + 1]! : -100;
      }
    }
    const batchNll = noGrad(() =>
      tidy(() => {
        const rows = tensorFrom(both, { shape: [2 * b, seqLen], dtype: "i32", device: model.device });
        const { logits } = model.forward(slice(rows, [0, 0], [b, seqLen])); // [b, seqLen, V]
        return crossEntropy(logits, slice(rows, [b, 0], [2 * b, seqLen]), { reduction: "sum" }).item();
      }),
    );
    if (!Number.isFinite(batchNll)) {
      throw new NonFiniteError(`evaluatePerplexity: the negative log-likelihood of window${b > 1 ? `s ${w0}–${w0 + b - 1}` : ` ${w0}`} is ${batchNll}: ${NON_FINITE_HINT}`);
    }
    totalNll += batchNll;
    options.onProgress?.(w0 + b, windows);
  }
  const tokens = seqLen - 1 + (windows - 1) * (seqLen - 1 - firstScored);
  const nll = totalNll / tokens;
  return { perplexity: Math.exp(nll), nll, tokens, windows };
}

/** The stride, checked: an integer in [1, seqLen]; seqLen when not given. */
function checkStride(who: string, seqLen: number, stride: number | undefined): number {
  if (stride === undefined) return seqLen;
  if (!Number.isInteger(stride) || stride < 1 || stride > seqLen) throw new RangeError(`${who}: stride must be an integer from 1 to seqLen (${seqLen}), got ${stride}`);
  return stride;
}

/** Full windows of `seqLen` tokens, one starting every `stride` tokens, in `n` tokens. */
export function windowCount(n: number, seqLen: number, stride: number = seqLen): number {
  return n < seqLen ? 0 : Math.floor((n - seqLen) / stride) + 1;
}

/** What {@link perplexityTokenIds} needs of a tokenizer. */
export interface PerplexityTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
}

/** The first index ≥ `from` where a non-space character is followed by whitespace (a word ends), else `text.length`. */
function wordEnd(text: string, from: number): number {
  if (from >= text.length) return text.length;
  const re = /\S(?=\s)/g;
  re.lastIndex = Math.max(0, from - 1);
  const m = re.exec(text);
  return m ? m.index + 1 : text.length;
}

function samePrefix(a: readonly number[], b: readonly number[], n: number): boolean {
  if (a.length < n || b.length < n) return false;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The token ids {@link evaluatePerplexity} scores, without special tokens: the whole text's, or,
 * with `maxWindows`, only the first `seqLen + (maxWindows − 1) · stride` of them (fewer when the text is shorter).
 * A long file is not tokenized whole for a few windows: a prefix ending at a word boundary is
 * tokenized, then a longer one; once both agree on the tokens needed (merges near the cut can
 * only change the last few), those are the whole text's tokens. Prefixes grow ×2 until they do,
 * and the whole text is the last resort, so the result always equals tokenizing everything and
 * keeping the first `seqLen + (maxWindows − 1) · stride` ids.
 */
export function perplexityTokenIds(tokenizer: PerplexityTokenizer, text: string, options: { seqLen: number; maxWindows?: number; stride?: number }): number[] {
  const encode = (s: string) => tokenizer.encode(s, { addSpecialTokens: false });
  const { seqLen, maxWindows } = options;
  if (maxWindows === undefined || maxWindows === Infinity) return encode(text);
  if (!Number.isInteger(seqLen) || seqLen < 1 || !Number.isInteger(maxWindows) || maxWindows < 1) {
    throw new RangeError(`perplexityTokenIds: seqLen and maxWindows must be integers ≥ 1, got ${seqLen} and ${maxWindows}`);
  }
  const need = seqLen + (maxWindows - 1) * checkStride("perplexityTokenIds", seqLen, options.stride);
  const guard = 64; // tokens past the ones needed, so that the cut is well behind them
  let chars = Math.max(4096, need * 8);
  for (;;) {
    const endA = wordEnd(text, chars);
    const a = encode(text.slice(0, endA));
    if (endA >= text.length) return a.slice(0, need);
    if (a.length >= need + guard) {
      const endB = wordEnd(text, endA + Math.max(1024, endA >> 2));
      const b = encode(text.slice(0, endB));
      if (endB >= text.length || samePrefix(a, b, need)) return b.slice(0, need);
    }
    chars *= 2;
  }
}
