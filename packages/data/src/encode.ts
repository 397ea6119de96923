// Prompt + target → {inputIds, labels}, with truncation that keeps the target.
//
// Tokenization: the prompt and the target are encoded separately, without special tokens, and
// concatenated: [BOS] + encode(prompt) + encode(target) + [EOS] (BOS only when the tokenizer adds
// one). Encoding the concatenated text instead could let BPE merge tokens across the boundary, and
// the first target token would then hold prompt text; separate encoding gives an exact, deterministic
// boundary, and at inference the model is given exactly [BOS] + encode(prompt) and generates from
// there. Templates put the separating space at the start of the target (" {label}"), which a
// LLaMA tokenizer encodes as one space-prefixed word token.
import type { DataLocation } from "./errors.js";
import type { SpecialIds, TokenizerLike } from "./tokenizer.js";

/** Labels of tokens that carry no loss (prompt, padding), as in transformers. */
export const IGNORE_INDEX = -100;

/** One training example. `labels[t]` is `inputIds[t]` where trained and −100 elsewhere (unshifted, as in transformers). */
export interface Example {
  inputIds: number[];
  labels: number[];
  /** Tokens before the first trained one: BOS + prompt (after truncation); 0 for packed text. */
  promptLength: number;
  /** The record it was made from (prompt-target and chat formats). */
  record?: Readonly<Record<string, unknown>>;
  /** Where the record was read. */
  source?: DataLocation;
}

/** What truncation did to an example: nothing, cut the prompt's start, or (target too long alone) cut the target's end. */
export type Truncation = "none" | "prompt" | "target";

/**
 * Cuts `ids`/`labels` to `seqLen` tokens without losing the start of the target: tokens are dropped
 * from the left (after the first token when `keepFirst`, i.e. BOS) while the window still starts at
 * or before `targetStart`; if even the target from `targetStart` does not fit, the window starts at
 * `targetStart` (all of the prompt but BOS goes) and the target's end is cut.
 */
export function truncateKeepingTarget(ids: readonly number[], labels: readonly number[], targetStart: number, seqLen: number, keepFirst: boolean): { inputIds: number[]; labels: number[]; promptLength: number; truncation: Truncation } {
  const n = ids.length;
  if (n <= seqLen) return { inputIds: [...ids], labels: [...labels], promptLength: targetStart, truncation: "none" };
  const head = keepFirst ? 1 : 0;
  const avail = seqLen - head;
  const start = Math.min(n - avail, Math.max(targetStart, head));
  const end = start + avail;
  const cut = (a: readonly number[]) => [...a.slice(0, head), ...a.slice(start, end)];
  return {
    inputIds: cut(ids),
    labels: cut(labels),
    promptLength: head + Math.max(0, targetStart - start),
    truncation: end < n ? "target" : "prompt",
  };
}

/** Prompt and target text → one example, truncated to `seqLen` (see the file comment for the tokenization). */
export function encodePromptTarget(prompt: string, target: string, tokenizer: TokenizerLike, special: SpecialIds, seqLen: number): { inputIds: number[]; labels: number[]; promptLength: number; truncation: Truncation } {
  const promptIds = [...(special.bos !== null ? [special.bos] : []), ...tokenizer.encode(prompt, { addSpecialTokens: false })];
  const targetIds = [...tokenizer.encode(target, { addSpecialTokens: false }), special.eos];
  const ids = [...promptIds, ...targetIds];
  const labels = [...promptIds.map(() => IGNORE_INDEX), ...targetIds];
  return truncateKeepingTarget(ids, labels, promptIds.length, seqLen, special.bos !== null);
}
