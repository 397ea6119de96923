// Text generation. `generate(model, tokenizer, prompt, options)` streams decoded text (an async
// iterable of chunks, generate/stream.ts); `generateTokens(model, promptIds, options)` is the
// synchronous loop over token ids it is built on (generate/tokens.ts). A batch of prompts is run
// one prompt at a time, each with its own KV cache: the model's forward takes no attention mask,
// so left-padded batches would attend to their padding.
import type { LlamaModel } from "./model.js";
import type { LlamaTokenizer } from "./tokenizer.js";
import { prepareStream, type GeneratePrompt, type GenerateTextOptions, type TextGenerationStream } from "./generate/stream.js";
import { generateTokens, type GenerateOptions, type GenerateResult } from "./generate/tokens.js";

export { argmax, sampleToken, type Sampling } from "./generate/sampling.js";
export { generateTokens, type GenerateOptions, type GenerateResult } from "./generate/tokens.js";
export { IncrementalDecoder } from "./generate/detokenize.js";
export { StopStringMatcher, type StopStringStep } from "./generate/stop-strings.js";
export { TextGenerationStream, type GeneratePrompt, type GenerateTextOptions, type PreparedGeneration, type TextGenerationResult } from "./generate/stream.js";

/**
 * Generates text after `prompt` and streams it: the returned {@link TextGenerationStream} is an
 * async iterable of text chunks, each made of complete characters (a character split across
 * byte tokens comes out whole, once its last byte arrives), whose concatenation is the decoding
 * of the new ids; `await stream.result()` gives the text, the ids and why generation stopped.
 * Options are checked (and a text prompt encoded) at the call; the model runs as the stream is
 * read, one token at a time, freeing every tensor when it ends, is aborted or is left early.
 *
 * ```ts
 * const stream = generate(model, tokenizer, "Once upon a time", { maxNewTokens: 64, stop: "\n\n" });
 * for await (const chunk of stream) process.stdout.write(chunk);
 * const { ids, stoppedBy } = await stream.result();
 * ```
 */
export function generate(model: LlamaModel, tokenizer: LlamaTokenizer, prompt: GeneratePrompt, options: GenerateTextOptions): TextGenerationStream;
/**
 * A batch: one stream per prompt, in order. The prompts run one after another (or interleaved,
 * if the streams are read together), each with its own KV cache; greedy results equal those of
 * the prompts generated alone.
 */
export function generate(model: LlamaModel, tokenizer: LlamaTokenizer, prompts: readonly GeneratePrompt[], options: GenerateTextOptions): TextGenerationStream[];
/**
 * Token ids in, token ids out, synchronously.
 * @deprecated use {@link generateTokens}, the same function under the name that says so.
 */
export function generate(model: LlamaModel, promptIds: readonly number[], options: GenerateOptions): GenerateResult;
export function generate(
  model: LlamaModel,
  tokenizerOrIds: LlamaTokenizer | readonly number[],
  promptOrOptions: GeneratePrompt | readonly GeneratePrompt[] | GenerateOptions,
  maybeOptions?: GenerateTextOptions,
): TextGenerationStream | TextGenerationStream[] | GenerateResult {
  if (Array.isArray(tokenizerOrIds)) return generateTokens(model, tokenizerOrIds, promptOrOptions as GenerateOptions);
  const tokenizer = tokenizerOrIds as LlamaTokenizer;
  if (typeof tokenizer?.decode !== "function") throw new TypeError("generate: pass (model, tokenizer, prompt, options), or (model, promptIds, options) for token ids");
  if (maybeOptions === undefined || typeof maybeOptions !== "object") throw new TypeError("generate: options are required ({ maxNewTokens })");
  const prompt = promptOrOptions as GeneratePrompt | readonly GeneratePrompt[];
  const isBatch = Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => typeof p === "string" || Array.isArray(p));
  if (!isBatch) return prepareStream(model, tokenizer, prompt as GeneratePrompt, maybeOptions);
  return (prompt as readonly GeneratePrompt[]).map((p) => prepareStream(model, tokenizer, p, maybeOptions));
}
