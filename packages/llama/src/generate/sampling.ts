// Choosing the next token from one row of logits: greedy (temperature 0) or a sample with top-k
// and top-p (nucleus) filtering, in Hugging Face's order (temperature, then top-k, then top-p).
import type { LlamaModel } from "../model.js";
import type { GenerateOptions } from "./tokens.js";

/** Sampling settings of one generation (internal to generate and sampleToken). */
export interface Sampling {
  temperature: number;
  topK: number | null;
  topP: number;
  seed: number;
}

/** Checks the options every generation takes and returns its sampling settings. */
export function checkOptions(model: LlamaModel, promptIds: readonly number[], o: GenerateOptions): Sampling {
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
  if (o.onToken !== undefined && typeof o.onToken !== "function") throw new TypeError("generate: onToken must be a function (id) => void");
  if (o.logitsProcessor !== undefined && typeof o.logitsProcessor !== "function") throw new TypeError("generate: logitsProcessor must be a function (ids, logits) => void");
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
