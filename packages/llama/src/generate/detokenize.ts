// Token ids → text as the ids arrive, without breaking characters. A UTF-8 character can span
// several tokens (SentencePiece byte-fallback `<0xE6><0x97><0xA5>`, byte-level BPE pieces);
// decoding a prefix of them gives U+FFFD. Each step decodes a short window of ids twice, without
// and with the new ids (the window starts where the previous chunk started, so decoder rules that
// act on a window's first token, such as Metaspace's leading space, act on both alike), and
// emits the difference only when it does not end in U+FFFD. The scheme is text-generation-
// inference's `decode_token`; the chunks concatenate to the decoding of all ids at once.
import type { LlamaTokenizer } from "../tokenizer.js";

/** How many ids before the first new one serve as context (so a new leading space is kept). */
const CONTEXT_IDS = 6;

/**
 * Incremental decoding of a growing id sequence into complete characters. `context` (e.g. the
 * prompt) is decoded along but never emitted: the text of the new ids is what decoding context +
 * new ids adds to decoding the context alone, leading spaces included.
 */
export class IncrementalDecoder {
  /** The ids since the last emitted chunk began: `[0, read)` were emitted, the rest are held back. */
  private readonly window: number[];
  private read: number;
  /** The decoding of `window[0, read)`. */
  private readText: string;

  constructor(private readonly tokenizer: Pick<LlamaTokenizer, "decode">, context: readonly number[] = []) {
    this.window = context.slice(-CONTEXT_IDS);
    this.read = this.window.length;
    this.readText = tokenizer.decode(this.window);
  }

  /** Adds one id; returns the text it completes ("" while a character's bytes are incomplete). */
  push(id: number): string {
    this.window.push(id);
    const text = this.tokenizer.decode(this.window);
    if (text.length <= this.readText.length || text.endsWith("\uFFFD")) return "";
    return this.advance(text);
  }

  /** The text still held back (bytes of an incomplete character decode to U+FFFD); pushing can go on after it. */
  flush(): string {
    return this.read === this.window.length ? "" : this.advance(this.tokenizer.decode(this.window));
  }

  /** What `text`, the decoding of the whole window, adds to the emitted part; the held ids become the next window's context. */
  private advance(text: string): string {
    const fresh = text.slice(this.readText.length);
    this.window.splice(0, this.read);
    this.read = this.window.length;
    this.readText = this.tokenizer.decode(this.window);
    return fresh;
  }
}
