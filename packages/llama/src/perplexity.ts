// Perplexity with the fixtures' protocol (fixtures/README.md): the ids of the whole text are cut
// into non-overlapping windows of seqLen tokens from the start, the last partial window is dropped,
// each window is scored independently (no context carried over), and
// perplexity = exp(mean NLL over all predicted tokens), seqLen − 1 of them per window.
import { crossEntropy, noGrad, tensor, tidy } from "@modulora/tensor";
import type { LlamaModel } from "./model.js";
import { shiftLabels } from "./model.js";

/** Options of {@link evaluatePerplexity}. */
export interface PerplexityOptions {
  /** Tokens per window. */
  seqLen: number;
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
  /** Predicted tokens: windows × (seqLen − 1). */
  tokens: number;
  windows: number;
}

/** Scores `tokenIds` with `model` by the windowed protocol above. Runs without autograd. */
export function evaluatePerplexity(model: LlamaModel, tokenIds: ArrayLike<number>, options: PerplexityOptions): PerplexityResult {
  const { seqLen, batchSize = 1 } = options;
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new RangeError(`evaluatePerplexity: seqLen must be an integer ≥ 2, got ${seqLen}`);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`evaluatePerplexity: batchSize must be an integer ≥ 1, got ${batchSize}`);
  const maxWindows = options.maxWindows ?? Infinity;
  if (!(maxWindows === Infinity || (Number.isInteger(maxWindows) && maxWindows >= 1))) {
    throw new RangeError(`evaluatePerplexity: maxWindows must be an integer ≥ 1, got ${maxWindows}`);
  }
  const windows = Math.min(Math.floor(tokenIds.length / seqLen), maxWindows);
  if (windows === 0) throw new RangeError(`evaluatePerplexity: ${tokenIds.length} tokens make no full window of ${seqLen}`);
  let totalNll = 0; // f64 accumulation over batches
  for (let w0 = 0; w0 < windows; w0 += batchSize) {
    const b = Math.min(batchSize, windows - w0);
    const ids = Int32Array.from({ length: b * seqLen }, (_, i) => tokenIds[w0 * seqLen + i]!);
    totalNll += noGrad(() =>
      tidy(() => {
        const input = tensor(ids, [b, seqLen], { dtype: "i32" });
        const { logits } = model.forward(input); // [b, seqLen, V]
        return crossEntropy(logits, shiftLabels(input), { reduction: "sum" }).item();
      }),
    );
    options.onProgress?.(w0 + b, windows);
  }
  const tokens = windows * (seqLen - 1);
  const nll = totalNll / tokens;
  return { perplexity: Math.exp(nll), nll, tokens, windows };
}
