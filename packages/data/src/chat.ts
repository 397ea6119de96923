// The chat format: a conversation rendered with the model's chat template, trained on the
// assistant turns only.
//
// Method. The whole conversation is rendered (no generation prompt) and encoded without special
// tokens (the template writes them), as transformers' apply_chat_template(tokenize=True) does.
// For assistant message i, the first i messages are rendered with the generation prompt, and the
// first i + 1 without; both texts must be prefixes of the whole rendering (templates that rewrite
// earlier turns cannot be split this way and are refused). The assistant's tokens start where
// the encoding of the first text stops agreeing with the whole encoding and end where the second
// one does; the span is then cut just after its last EOS, so the template's separator after the
// turn ("\n\n") is not trained but the EOS that ends the turn is. Using the longest common token
// prefix (rather than the prefix's token count) stays correct when BPE merges a token across the
// boundary: the merged token is then trained.
import { truncateKeepingTarget, IGNORE_INDEX, type Truncation } from "./encode.js";
import { DataError, type DataLocation } from "./errors.js";
import type { ChatMessage, SpecialIds, TokenizerLike } from "./tokenizer.js";

/** The role whose messages are trained. */
export const ASSISTANT_ROLE = "assistant";

/** Length of the longest common prefix of two id lists. */
function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** A renderer over the tokenizer's chat template; errors say the template is missing. */
export function chatRenderer(tokenizer: TokenizerLike): (messages: readonly ChatMessage[], addGenerationPrompt: boolean, where?: DataLocation) => string {
  const apply = tokenizer.applyChatTemplate;
  if (typeof apply !== "function") throw new DataError("the chat format needs a tokenizer with a chat template (applyChatTemplate); this one has none");
  return (messages, addGenerationPrompt, where) => {
    let text: unknown;
    try {
      text = apply.call(tokenizer, messages, { addGenerationPrompt });
    } catch (err) {
      throw new DataError(`the chat format needs the tokenizer's chat template, which failed: ${err instanceof Error ? err.message : String(err)}`, where, { cause: err });
    }
    if (typeof text !== "string") throw new DataError("applyChatTemplate must return the rendered text", where);
    return text;
  };
}

/**
 * A conversation → one example with labels on the assistant turns (see the file comment), cut to
 * `seqLen` keeping the last assistant turn's start (as prompt-target truncation keeps the target).
 * @throws DataError at `where` when no message is from the assistant or the template is not prefix-stable.
 */
export function encodeChat(messages: readonly ChatMessage[], tokenizer: TokenizerLike, special: SpecialIds, seqLen: number, where?: DataLocation): { inputIds: number[]; labels: number[]; promptLength: number; truncation: Truncation } {
  const render = chatRenderer(tokenizer);
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  if (!messages.some((m) => m.role === ASSISTANT_ROLE)) throw new DataError(`no "${ASSISTANT_ROLE}" message: nothing to train on`, where);
  const full = render(messages, false, where);
  const ids = encode(full);
  const labels = ids.map(() => IGNORE_INDEX);
  let firstStart = -1;
  let lastStart = -1;
  messages.forEach((m, i) => {
    if (m.role !== ASSISTANT_ROLE) return;
    const before = render(messages.slice(0, i), true, where);
    const through = render(messages.slice(0, i + 1), false, where);
    for (const [text, what] of [[before, `the first ${i} messages with the generation prompt`], [through, `the first ${i + 1} messages`]] as const) {
      if (!full.startsWith(text)) {
        throw new DataError(`the chat template is not prefix-stable: ${what} do not render as a prefix of the whole conversation, so assistant turns cannot be located`, where);
      }
    }
    const start = commonPrefix(encode(before), ids);
    let end = commonPrefix(encode(through), ids);
    const lastEos = end > start ? ids.lastIndexOf(special.eos, end - 1) : -1;
    if (lastEos >= start) end = lastEos + 1;
    for (let t = start; t < end; t++) labels[t] = ids[t]!;
    if (end > start) {
      if (firstStart < 0) firstStart = start;
      lastStart = start;
    }
  });
  if (lastStart < 0) throw new DataError("the assistant messages render to no tokens: nothing to train on", where);
  const keepFirst = special.bos !== null && ids[0] === special.bos;
  const out = truncateKeepingTarget(ids, labels, lastStart, seqLen, keepFirst);
  // promptLength: tokens before the first trained one.
  const firstLabel = out.labels.findIndex((l) => l !== IGNORE_INDEX);
  return { ...out, promptLength: firstLabel < 0 ? out.labels.length : firstLabel };
}
