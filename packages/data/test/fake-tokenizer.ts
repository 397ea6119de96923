// A character-level tokenizer for exact expectations: id = code point + 3, with specials
// <pad> = 0, <s> = 1 (BOS), </s> = 2 (EOS) recognised in text, and an optional chat template.
import type { ChatMessage, TokenizerLike } from "../src/index.js";

export const PAD = 0;
export const BOS = 1;
export const EOS = 2;
const SPECIALS: Record<string, number> = { "<pad>": PAD, "<s>": BOS, "</s>": EOS };
const SPECIAL_RE = /<pad>|<s>|<\/s>/g;

/** `<|role|>\n{content}` per message, assistant turns end with `</s>`, each followed by "\n". */
export function simpleChatTemplate(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
  let out = "";
  for (const m of messages) out += `<|${m.role}|>\n${m.content}${m.role === "assistant" ? "</s>" : ""}\n`;
  return addGenerationPrompt ? out + "<|assistant|>\n" : out;
}

export interface FakeOptions {
  /** Add BOS with addSpecialTokens (default true). */
  addBos?: boolean;
  /** Pad token (default <pad>); null: none. */
  padTokenId?: number | null;
  /** The chat template, or null for none (default simpleChatTemplate). */
  chatTemplate?: ((messages: readonly ChatMessage[], addGenerationPrompt: boolean) => string) | null;
  /** Two-character strings encoded as one token (id 100000 + index): a BPE-like merge. */
  merges?: string[];
}

export class FakeTokenizer implements TokenizerLike {
  readonly bosTokenId = BOS;
  readonly eosTokenId = EOS;
  readonly padTokenId: number | null;
  readonly applyChatTemplate?: (messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }) => string;
  private readonly addBos: boolean;
  private readonly merges: string[];

  constructor(options: FakeOptions = {}) {
    this.addBos = options.addBos ?? true;
    this.padTokenId = options.padTokenId === undefined ? PAD : options.padTokenId;
    this.merges = options.merges ?? [];
    const template = options.chatTemplate === undefined ? simpleChatTemplate : options.chatTemplate;
    if (template) this.applyChatTemplate = (messages, o = {}) => template(messages, o.addGenerationPrompt ?? false);
  }

  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const ids: number[] = options.addSpecialTokens ?? true ? (this.addBos ? [BOS] : []) : [];
    let at = 0;
    const plain = (s: string) => {
      const chars = [...s];
      for (let i = 0; i < chars.length; i++) {
        const m = i + 1 < chars.length ? this.merges.indexOf(chars[i]! + chars[i + 1]!) : -1;
        if (m >= 0) {
          ids.push(100000 + m);
          i++;
        } else ids.push(chars[i]!.codePointAt(0)! + 3);
      }
    };
    for (const match of text.matchAll(SPECIAL_RE)) {
      plain(text.slice(at, match.index));
      ids.push(SPECIALS[match[0]]!);
      at = match.index! + match[0].length;
    }
    plain(text.slice(at));
    return ids;
  }

  decode(ids: readonly number[]): string {
    const names = Object.fromEntries(Object.entries(SPECIALS).map(([k, v]) => [v, k]));
    return ids.map((id) => (id >= 100000 ? this.merges[id - 100000]! : (names[id] ?? String.fromCodePoint(id - 3)))).join("");
  }
}

/** Char ids of `s` (no specials). */
export const ids = (s: string): number[] => [...s].map((c) => c.codePointAt(0)! + 3);
/** `n` copies of −100. */
export const masked = (n: number): number[] => Array.from({ length: n }, () => -100);
