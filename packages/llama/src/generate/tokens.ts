// Autoregressive decoding with a KV cache: the prompt goes through the model once, then each new
// token costs one position's compute. Random numbers are Philox4x32-10 uniforms (the same
// generator as the tensors'): step i uses counter i of the seed's stream, so a seed reproduces a
// sample anywhere. `tokenSteps` is the loop both APIs share: the synchronous `generateTokens`
// (ids in, ids out) and the streaming `generate` (text chunks, stream.ts).
import { cast, noGrad, tensorFrom, tidy, uniformFill } from "@modulora/tensor";
import { checkContextLength } from "../config.js";
import { KVCache } from "../kv-cache.js";
import type { LlamaModel } from "../model.js";
import { NON_FINITE_HINT, NonFiniteError } from "../types.js";
import { argmax, checkOptions, sampleToken, type Sampling } from "./sampling.js";

/** Options of {@link generateTokens} (and, with more, of the streaming `generate`). */
export interface GenerateOptions {
  /** Upper bound on the number of new tokens. */
  maxNewTokens: number;
  /** 0 (default): greedy. > 0: sample from softmax(logits / temperature). */
  temperature?: number;
  /** Sample only among the k most likely tokens (ties at the k-th logit kept, as in HF). */
  topK?: number;
  /** Sample only from the smallest set of most likely tokens whose probability reaches topP, in (0, 1]. */
  topP?: number;
  /** Seed of the sampling stream (default 0). */
  seed?: number;
  /** Tokens that end generation (default: the config's EOS ids). The stop token is included in the output ids. */
  stopTokens?: readonly number[];
  /** Called with each new token as soon as it is chosen (ids, not text; the streaming `generate` yields text). */
  onToken?: (id: number) => void;
  /**
   * Edits the f32 logits of each step in place before the token is chosen, as Hugging Face's
   * `LogitsProcessor` (ban tokens with `-Infinity`, bias others, force one). `ids` are the
   * prompt and the tokens chosen so far. At least one logit must stay finite.
   */
  logitsProcessor?: (ids: readonly number[], logits: Float32Array) => void;
}

/** What {@link generateTokens} returns. */
export interface GenerateResult {
  /** The new tokens (not the prompt), including the stop token if one ended generation. */
  ids: number[];
  /** `"eos"`: an EOS id of the config; `"stop-token"`: another of `stopTokens`; `"max-tokens"`: `maxNewTokens` reached. */
  stoppedBy: "eos" | "max-tokens" | "stop-token";
}

/** Checks the prompt plus `maxNewTokens` against the model's context (nothing to check for 0 new tokens). */
export function checkGenerationLength(model: LlamaModel, promptLength: number, maxNewTokens: number): void {
  if (maxNewTokens === 0) return;
  checkContextLength(model.config, promptLength + maxNewTokens, `generate: the prompt (${promptLength} tokens) plus maxNewTokens (${maxNewTokens})`, "lower maxNewTokens or shorten the prompt");
}

/**
 * The decoding loop: yields up to `maxNewTokens` ids, one forward per id, and stops when the
 * caller stops asking. The KV cache is made at the first `next()` and freed when the generator
 * ends, throws or is `return()`ed (a `for … of` that breaks), so nothing outlives it. Options are
 * checked by the caller.
 */
export function* tokenSteps(model: LlamaModel, promptIds: readonly number[], sampling: Sampling, options: Pick<GenerateOptions, "maxNewTokens" | "logitsProcessor">): Generator<number, void, undefined> {
  const { maxNewTokens, logitsProcessor } = options;
  if (maxNewTokens === 0) return;
  const cache = new KVCache(model.config, { batchSize: 1, maxLength: promptIds.length + maxNewTokens - 1, dtype: model.dtype, device: model.device });
  const u = new Float64Array(1);
  const seen = logitsProcessor ? [...promptIds] : null;
  try {
    let next: readonly number[] = promptIds;
    for (let step = 0; step < maxNewTokens; step++) {
      const logits = noGrad(() =>
        tidy(() => {
          // One transfer in (the new ids) and one out (the last position's logits) per token.
          const input = tensorFrom(Int32Array.from(next), { shape: [1, next.length], dtype: "i32", device: model.device });
          const last = model.forward(input, { cache, lastLogitsOnly: true }).logits; // [1, 1, V], the model's dtype
          return (last.dtype === "f32" ? last : cast(last, "f32")).dataSync() as Float32Array; // [V]
        }),
      );
      for (let i = 0; i < logits.length; i++) {
        if (!Number.isFinite(logits[i]!)) throw new NonFiniteError(`generate: logit ${i} of step ${step} is ${logits[i]}: ${NON_FINITE_HINT}`);
      }
      if (seen) {
        logitsProcessor!(seen, logits);
        if (!(logits[argmax(logits)]! > -Infinity)) throw new RangeError(`generate: the logitsProcessor left no token with a finite logit at step ${step}`);
      }
      if (sampling.temperature > 0) uniformFill(u, sampling.seed, step);
      const id = sampleToken(logits, sampling, u[0]!);
      seen?.push(id);
      yield id;
      next = [id];
    }
  } finally {
    cache.dispose();
  }
}

/**
 * Generates up to `maxNewTokens` token ids after `promptIds` with a KV cache, synchronously.
 * Runs without autograd; every tensor it makes is freed before it returns (memory returns to where
 * it started). For text, streamed and stoppable, see `generate(model, tokenizer, prompt, options)`.
 */
export function generateTokens(model: LlamaModel, promptIds: readonly number[], options: GenerateOptions): GenerateResult {
  const sampling = checkOptions(model, promptIds, options);
  const eos = new Set(model.config.eosTokenIds);
  const stops = new Set(options.stopTokens ?? model.config.eosTokenIds);
  checkGenerationLength(model, promptIds.length, options.maxNewTokens);
  const ids: number[] = [];
  for (const id of tokenSteps(model, promptIds, sampling, options)) {
    ids.push(id);
    options.onToken?.(id);
    if (stops.has(id)) return { ids, stoppedBy: eos.has(id) ? "eos" : "stop-token" }; // leaving the loop frees the cache
  }
  return { ids, stoppedBy: "max-tokens" };
}
