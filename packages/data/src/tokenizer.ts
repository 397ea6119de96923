// The few tokenizer methods datasets need. `LlamaTokenizer` of @modulora/llama satisfies this
// interface structurally; this package does not depend on it (data sits beside llama, not above).
import { DataError } from "./errors.js";

/** One chat message (`{role, content}`), as chat templates expect it; other fields pass through to the template. */
export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

/** The tokenizer interface the dataset builders use. */
export interface TokenizerLike {
  /** Text → token ids; `addSpecialTokens` (default true) adds what the tokenizer adds (usually BOS). */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Token ids → text. */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  /**
   * Renders messages with the model's chat template as text (the `chat` format encodes that text
   * itself, without adding special tokens: the template writes them). Optional: a tokenizer
   * without it, or whose call throws for want of a template, cannot build `chat` datasets.
   */
  applyChatTemplate?(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean; tokenize?: false }): string;
}

/** The special token ids a dataset uses, resolved once per tokenizer. */
export interface SpecialIds {
  /** BOS when the tokenizer adds one with `addSpecialTokens` (prompts and documents start with it), else null. */
  bos: number | null;
  /** EOS (every target and document ends with it). */
  eos: number;
  /** Padding id for batches: the tokenizer's pad token, else EOS. */
  pad: number;
}

/**
 * Which special tokens `tokenizer` adds and which ids pad and end sequences. Whether BOS is added
 * is read from the tokenizer's own behaviour (`encode("a")` with and without special tokens), so a
 * config with `add_bos_token: false` is honoured. An EOS added by `add_eos_token` is not used: the
 * builders append EOS to targets themselves.
 * @throws DataError when the tokenizer has no EOS token (targets could not end).
 */
export function specialIds(tokenizer: TokenizerLike): SpecialIds {
  const cached = resolved.get(tokenizer);
  if (cached) return cached;
  const eos = tokenizer.eosTokenId;
  if (eos === null || eos === undefined) throw new DataError("the tokenizer has no EOS token: targets and documents cannot be ended");
  const bosId = tokenizer.bosTokenId;
  let bos: number | null = null;
  if (bosId !== null && bosId !== undefined) {
    const withSpecial = tokenizer.encode("a", { addSpecialTokens: true });
    const without = tokenizer.encode("a", { addSpecialTokens: false });
    if (withSpecial[0] === bosId && without[0] !== bosId) bos = bosId;
  }
  const ids: SpecialIds = { bos, eos, pad: tokenizer.padTokenId ?? eos };
  resolved.set(tokenizer, ids);
  return ids;
}

/** {@link specialIds} per tokenizer (it probes `encode`; tokenizers do not change). */
const resolved = new WeakMap<TokenizerLike, SpecialIds>();

/** The id batches are padded with: the tokenizer's pad token, else its EOS. */
export function padIdOf(tokenizer: TokenizerLike): number {
  return specialIds(tokenizer).pad;
}
