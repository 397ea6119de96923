// Streaming text generation: an async iterable of decoded text chunks over the token loop, with
// stop strings, an AbortSignal and the final result. Each chunk holds only complete characters
// (IncrementalDecoder) and never the start of a stop string (StopStringMatcher). Between tokens
// the loop yields to the event loop (setImmediate), so timers, I/O and an abort from elsewhere
// run while a long generation streams.
import { setImmediate as nextMacrotask } from "node:timers/promises";
import type { LlamaModel } from "../model.js";
import type { LlamaTokenizer } from "../tokenizer.js";
import { IncrementalDecoder } from "./detokenize.js";
import { checkOptions, type Sampling } from "./sampling.js";
import { StopStringMatcher } from "./stop-strings.js";
import { checkGenerationLength, tokenSteps, type GenerateOptions } from "./tokens.js";

/** A prompt: text (encoded with the tokenizer, special tokens as its config adds them) or token ids. */
export type GeneratePrompt = string | readonly number[];

/** Options of the streaming `generate(model, tokenizer, prompt, options)`. */
export interface GenerateTextOptions extends GenerateOptions {
  /**
   * Tokens that end generation (default: the config's EOS ids and the tokenizer's EOS token). The
   * token that ends it is in the result's `ids`, never in the text.
   */
  stopTokens?: readonly number[];
  /**
   * Stop strings: generation ends at the first occurrence of any of them in the text, even one
   * split across tokens; the stop string and anything after it are not emitted.
   */
  stop?: string | readonly string[];
  /**
   * Aborts generation between two tokens: the iterator (and `result()`) reject with
   * `signal.reason` (a `DOMException` named `"AbortError"` unless `abort(reason)` gave another),
   * as `fetch` does, and the KV cache is freed.
   */
  signal?: AbortSignal;
}

/** What a generation ended with ({@link TextGenerationStream.result}). */
export interface TextGenerationResult {
  /** The generated text: every chunk, concatenated. */
  text: string;
  /** The new token ids, including a stop token that ended generation. */
  ids: number[];
  /** Tokens of the prompt. */
  promptTokens: number;
  /**
   * `"eos"`: an EOS id; `"stop-token"`: another of `stopTokens`; `"stop-string"`: one of `stop`;
   * `"max-tokens"`: `maxNewTokens` reached.
   */
  stoppedBy: "eos" | "stop-token" | "stop-string" | "max-tokens";
}

/** Everything a stream needs, checked by `generate` before the stream exists. */
export interface PreparedGeneration {
  model: LlamaModel;
  tokenizer: LlamaTokenizer;
  promptIds: readonly number[];
  sampling: Sampling;
  options: GenerateTextOptions;
}

type Outcome = { ok: true; value: TextGenerationResult } | { ok: false; error: unknown };

/**
 * One generation as an async iterable of text chunks (`for await (const chunk of stream)`),
 * iterable once. Nothing runs until it is iterated or {@link result} is called. Leaving the loop
 * early (`break`, a thrown error) stops generation and frees its tensors.
 */
export class TextGenerationStream implements AsyncIterable<string> {
  /** The prompt's token ids. */
  readonly promptIds: readonly number[];
  private started = false;
  private outcome: Outcome | null = null;
  private readonly waiters: ((o: Outcome) => void)[] = [];

  /** Made by `generate(model, tokenizer, prompt, options)`. */
  constructor(private readonly job: PreparedGeneration) {
    this.promptIds = job.promptIds;
  }

  /** The chunks. A second iteration throws a TypeError. */
  [Symbol.asyncIterator](): AsyncIterator<string> {
    if (this.started) throw new TypeError("generate: a generation stream can be iterated only once (await result() for the text)");
    this.started = true;
    return this.chunks();
  }

  /**
   * The final result, once generation ends. If nobody iterates the stream, this runs it to the
   * end; while a loop iterates it, this resolves when the loop has seen the last chunk. Rejects
   * with the error that ended generation (an abort's reason), or with an `AbortError` when the
   * loop stopped early.
   */
  result(): Promise<TextGenerationResult> {
    const settled = new Promise<Outcome>((resolve) => (this.outcome ? resolve(this.outcome) : this.waiters.push(resolve)));
    if (!this.started) {
      void (async () => {
        try {
          const it = this[Symbol.asyncIterator]();
          while (!(await it.next()).done); // the outcome is recorded by chunks()
        } catch {
          // reported through the promise
        }
      })();
    }
    return settled.then((o) => (o.ok ? o.value : Promise.reject(o.error)));
  }

  private settle(o: Outcome): void {
    if (this.outcome) return;
    this.outcome = o;
    for (const w of this.waiters.splice(0)) w(o);
  }

  private async *chunks(): AsyncGenerator<string, void, undefined> {
    const { model, tokenizer, promptIds, sampling, options } = this.job;
    const { signal } = options;
    const eos = new Set([...model.config.eosTokenIds, ...(tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : [])]);
    const stops = new Set(options.stopTokens ?? eos);
    const decoder = new IncrementalDecoder(tokenizer, promptIds);
    const matcher = new StopStringMatcher(options.stop);
    const ids: number[] = [];
    let text = "";
    let stoppedBy: TextGenerationResult["stoppedBy"] = "max-tokens";
    const steps = tokenSteps(model, promptIds, sampling, options);
    try {
      for (;;) {
        signal?.throwIfAborted();
        const step = steps.next(); // one forward
        if (step.done) break;
        const id = step.value;
        ids.push(id);
        options.onToken?.(id);
        if (stops.has(id)) {
          stoppedBy = eos.has(id) ? "eos" : "stop-token";
          break;
        }
        const out = matcher.push(decoder.push(id));
        if (out.text) {
          text += out.text;
          yield out.text;
        }
        if (out.stop !== null) {
          stoppedBy = "stop-string";
          break;
        }
        await nextMacrotask();
      }
      steps.return(); // frees the KV cache before the last chunk goes out
      let rest = "";
      if (stoppedBy !== "stop-string") {
        // The end: bytes of an incomplete character (U+FFFD) and a held tail that matched no stop string.
        const out = matcher.push(decoder.flush());
        if (out.stop !== null) stoppedBy = "stop-string";
        rest = out.text + (out.stop === null ? matcher.flush() : "");
      }
      // Settled before the last chunk: a loop that stops on it has still seen the whole text.
      this.settle({ ok: true, value: { text: text + rest, ids, promptTokens: promptIds.length, stoppedBy } });
      if (rest) yield rest;
    } catch (error) {
      this.settle({ ok: false, error });
      throw error;
    } finally {
      steps.return();
      this.settle({ ok: false, error: new DOMException("generate: the stream was closed before generation ended", "AbortError") });
    }
  }
}

/** Checks one prompt and the options, and makes its stream (nothing runs yet). */
export function prepareStream(model: LlamaModel, tokenizer: LlamaTokenizer, prompt: GeneratePrompt, options: GenerateTextOptions): TextGenerationStream {
  if (typeof prompt !== "string" && !Array.isArray(prompt)) throw new TypeError(`generate: the prompt must be a string or an array of token ids, got ${typeof prompt}`);
  const promptIds = typeof prompt === "string" ? tokenizer.encode(prompt) : prompt;
  const sampling = checkOptions(model, promptIds, options);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new TypeError("generate: signal must be an AbortSignal (new AbortController().signal)");
  new StopStringMatcher(options.stop); // checks the stop strings now, not at the first chunk
  checkGenerationLength(model, promptIds.length, options.maxNewTokens);
  return new TextGenerationStream({ model, tokenizer, promptIds, sampling, options });
}
