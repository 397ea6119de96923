// The text format: documents concatenated into one token stream and cut into windows.
import { type Example } from "./encode.js";
import type { SpecialIds, TokenizerLike } from "./tokenizer.js";

/**
 * Packs documents into windows of `seqLen` tokens. Each document is encoded as
 * [BOS] + encode(text) + [EOS] (BOS only when the tokenizer adds one), so EOS separates
 * documents; the documents are concatenated in order and cut into consecutive windows from the
 * start; the last partial window is dropped (`droppedTokens`). Every token is a label (the loss
 * shifts them). Windows do not overlap and carry no context over.
 */
export function packDocuments(documents: Iterable<string>, tokenizer: TokenizerLike, special: SpecialIds, seqLen: number): { examples: Example[]; tokens: number; droppedTokens: number } {
  const examples: Example[] = [];
  let buffer: number[] = [];
  let tokens = 0;
  for (const text of documents) {
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    if (special.bos !== null) buffer.push(special.bos);
    for (const id of ids) buffer.push(id);
    buffer.push(special.eos);
    tokens += ids.length + (special.bos !== null ? 2 : 1);
    if (buffer.length >= seqLen) {
      let at = 0;
      for (; at + seqLen <= buffer.length; at += seqLen) {
        const window = buffer.slice(at, at + seqLen);
        examples.push({ inputIds: window, labels: [...window], promptLength: 0 });
      }
      buffer = buffer.slice(at);
    }
  }
  return { examples, tokens, droppedTokens: buffer.length };
}
