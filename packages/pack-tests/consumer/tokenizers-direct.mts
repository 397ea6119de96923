// The control of the declaration check: @huggingface/tokenizers' own declarations use relative
// imports without extensions, which node16 resolution rejects (TS2834) when libraries are
// checked. Our declarations must not pull them in; this file does, on purpose.
import type { Tokenizer } from "@huggingface/tokenizers";
export type HfTokenizer = Tokenizer;
