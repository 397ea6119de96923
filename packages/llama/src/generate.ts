// Autoregressive decoding with a KV cache: the prompt goes through the model once, then each new
// token costs one position's compute. Greedy (temperature 0) or seeded sampling with top-k and
// top-p (nucleus) filtering, in Hugging Face's order (temperature, then top-k, then top-p).
// Random numbers are Philox4x32-10 uniforms (the same generator as the tensors'): step i uses
// counter i of the seed's stream, so a seed reproduces a sample anywhere.
import { checkContextLength } from "./config.js";
import { cast, noGrad, tensorFrom, tidy, uniformFill } from "@modulora/tensor";
import { KVCache } from "./kv-cache.js";
import type { LlamaModel } from "./model.js";
import { NON_FINITE_HINT, NonFiniteError } from "./types.js";

/** Options of {@link generate}. */
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
  /** Tokens that end generation (default: the config's EOS ids). The stop token is included in the output. */
  stopTokens?: readonly number[];
  /** Called with each new token as soon as it is chosen (streaming). */
  onToken?: (id: number) => void;
}

/** What {@link generate} returns. */
export interface GenerateResult {
  /** The new tokens (not the prompt), including the stop token if one ended generation. */
  ids: number[];
  /** `"eos"`: an EOS id of the config; `"stop-token"`: another of `stopTokens`; `"max-tokens"`: `maxNewTokens` reached. */
  stoppedBy: "eos" | "max-tokens" | "stop-token";
}

/** Sampling settings of one generation (internal to generate and sampleToken). */
export interface Sampling {
  temperature: number;
  topK: number | null;
  topP: number;
  seed: number;
}

function checkOptions(model: LlamaModel, promptIds: readonly number[], o: GenerateOptions): Sampling {
  const vocab = model.config.vocabSize;
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) throw new RangeError(`generate: maxNewTokens must be an integer ≥ 0, got ${o.maxNewTokens}`);
  const temperature = o.temperature ?? 0;
  if (!(Number.isFinite(temperature) && temperature >= 0)) throw new RangeError(`generate: temperature must be a finite number ≥ 0 (0 = greedy), got ${temperature}`);
  const topK = o.topK ?? null;
  if (topK !== null && !(Number.isInteger(topK) && topK >= 1)) throw new RangeError(`generate: topK must be an integer ≥ 1, got ${topK}`);
  const topP = o.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`generate: topP must be in (0, 1], got ${topP}`);
  const seed = o.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new RangeError(`generate: seed must be a safe integer, got ${seed}`);
  if (promptIds.length === 0) throw new RangeError("generate: the prompt is empty (add the BOS token for an unconditional start)");
  for (const id of [...promptIds, ...(o.stopTokens ?? [])]) {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new RangeError(`generate: token id ${id} is outside the vocabulary [0, ${vocab})`);
  }
  return { temperature, topK, topP, seed };
}

/** Index of the largest logit (the first one on ties, as `torch.argmax`). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/**
 * Picks the next token from one row of logits: greedy when `temperature` is 0, else a sample
 * from the temperature softmax restricted by top-k then top-p, using uniform `u` in [0, 1).
 */
export function sampleToken(logits: ArrayLike<number>, s: Omit<Sampling, "seed">, u: number): number {
  if (s.temperature === 0) return argmax(logits);
  const n = logits.length;
  // Candidates sorted by logit, largest first (index breaks ties, so the order is deterministic).
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => {
    const la = logits[a]!, lb = logits[b]!;
    return lb > la ? 1 : lb < la ? -1 : a - b; // not lb − la: −∞ − −∞ is NaN
  });
  let keep = n;
  if (s.topK !== null && s.topK < n) {
    const kth = logits[order[s.topK - 1]!]!;
    keep = s.topK;
    while (keep < n && logits[order[keep]!]! === kth) keep++;
  }
  const maxLogit = logits[order[0]!]!;
  const probs = new Float64Array(keep);
  let total = 0;
  for (let i = 0; i < keep; i++) total += probs[i] = Math.exp((logits[order[i]!]! - maxLogit) / s.temperature);
  if (s.topP < 1) {
    // Keep the most likely tokens until their mass reaches topP (the one that crosses included).
    let mass = 0;
    let cut = 0;
    while (cut < keep && mass < s.topP * total) mass += probs[cut++]!;
    keep = Math.max(1, cut);
    total = mass || probs[0]!;
  }
  let target = u * total;
  for (let i = 0; i < keep; i++) {
    target -= probs[i]!;
    if (target < 0) return order[i]!;
  }
  return order[keep - 1]!; // rounding: u·total landed past the last kept probability
}

/**
 * Generates up to `maxNewTokens` tokens after `promptIds` with a KV cache. Runs without autograd;
 * every tensor it makes is freed before it returns (memory returns to where it started).
 */
export function generate(model: LlamaModel, promptIds: readonly number[], options: GenerateOptions): GenerateResult {
  const sampling = checkOptions(model, promptIds, options);
  const eos = new Set(model.config.eosTokenIds);
  const stops = new Set(options.stopTokens ?? model.config.eosTokenIds);
  const ids: number[] = [];
  if (options.maxNewTokens === 0) return { ids, stoppedBy: "max-tokens" };
  checkContextLength(model.config, promptIds.length + options.maxNewTokens, `generate: the prompt (${promptIds.length} tokens) plus maxNewTokens (${options.maxNewTokens})`, "lower maxNewTokens or shorten the prompt");
  const cache = new KVCache(model.config, { batchSize: 1, maxLength: promptIds.length + options.maxNewTokens - 1, dtype: model.dtype, device: model.device });
  const u = new Float64Array(1);
  try {
    let next: readonly number[] = promptIds;
    for (let step = 0; step < options.maxNewTokens; step++) {
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
      if (sampling.temperature > 0) uniformFill(u, sampling.seed, step);
      const id = sampleToken(logits, sampling, u[0]!);
      ids.push(id);
      options.onToken?.(id);
      if (stops.has(id)) return { ids, stoppedBy: eos.has(id) ? "eos" : "stop-token" };
      next = [id];
    }
    return { ids, stoppedBy: "max-tokens" };
  } finally {
    cache.dispose();
  }
}
