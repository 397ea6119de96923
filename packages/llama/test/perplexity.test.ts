// Perplexity by the fixtures' protocol: against a hand-written loop on a few windows, then the
// whole validation file for tiny-llama against `valid_ppl_seq256` of reference.json (computed by
// transformers) — an end-to-end check of the weights, the forward, the tokenizer and the protocol.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as T from "@modulora/tensor";
import { LlamaModel } from "../src/model.js";
import { evaluatePerplexity, windowCount } from "../src/perplexity.js";
import type { LlamaConfig } from "../src/types.js";

const FIXTURES = fileURLToPath(new URL("../../../fixtures/", import.meta.url));
const TINY = `${FIXTURES}tiny-llama/`;
const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;

/** tiny-llama's config.json, by hand (independent of the config loader). */
function tinyConfig(): LlamaConfig {
  return {
    architecture: "LlamaForCausalLM", modelType: "llama", hiddenSize: 256, numLayers: 4, numHeads: 4, numKvHeads: 4, headDim: 64,
    intermediateSize: 768, rmsNormEps: 1e-5, vocabSize: 4096, tieWordEmbeddings: false, maxPositionEmbeddings: 1024,
    rope: { theta: 10000, scaling: null }, bosTokenId: 0, eosTokenIds: [1], padTokenId: null, dtype: "float32", raw: readJson(`${TINY}config.json`),
  };
}

let model: LlamaModel;
let ids: number[];
let tokenizeSeconds: number;

beforeAll(() => {
  model = LlamaModel.fromTensors(tinyConfig(), T.loadSafetensors(`${TINY}model.safetensors`));
  const t0 = performance.now();
  // The protocol: the whole file as ONE string, no special tokens.
  const tokenizer = new Tokenizer(readJson(`${TINY}tokenizer.json`), readJson(`${TINY}tokenizer_config.json`));
  ids = tokenizer.encode(readFileSync(`${FIXTURES}data/lm/valid.txt`, "utf8"), { add_special_tokens: false }).ids;
  tokenizeSeconds = (performance.now() - t0) / 1000;
});
afterAll(() => model.dispose());

/** The protocol written out: per window, −Σ log softmax(logits[t])[ids[t + 1]] in f64. */
function handNll(windows: number, seqLen: number): number {
  let total = 0;
  for (let w = 0; w < windows; w++) {
    const win = ids.slice(w * seqLen, (w + 1) * seqLen);
    const logp = T.noGrad(() =>
      T.tidy(() => T.logSoftmax(model.forward(T.tensor(Int32Array.from(win), [1, seqLen], { dtype: "i32" })).logits).dataSync() as Float32Array),
    );
    for (let t = 0; t < seqLen - 1; t++) total -= logp[t * 4096 + win[t + 1]!]!;
  }
  return total / (windows * (seqLen - 1));
}

describe("evaluatePerplexity", () => {
  it("equals a hand-computed loop over a few windows, for any batch size", () => {
    const want = handNll(5, 64);
    for (const batchSize of [1, 2, 5, 8]) {
      const r = evaluatePerplexity(model, ids, { seqLen: 64, maxWindows: 5, batchSize });
      expect(r.windows).toBe(5);
      expect(r.tokens).toBe(5 * 63);
      expect(r.nll, `batchSize ${batchSize}`).toBeCloseTo(want, 5);
      expect(r.perplexity).toBeCloseTo(Math.exp(want), 3);
    }
  });
  it("drops the last partial window and reports progress", () => {
    const progress: [number, number][] = [];
    const r = evaluatePerplexity(model, ids.slice(0, 3 * 32 + 31), { seqLen: 32, batchSize: 2, onProgress: (d, n) => progress.push([d, n]) });
    expect(r.windows).toBe(3);
    expect(progress).toEqual([[2, 3], [3, 3]]);
    expect(r.nll).toBeCloseTo(handNll(3, 32), 5);
  });
  it("with a stride, scores each token once: the first window whole, then each window's last `stride` targets", () => {
    const seqLen = 48, stride = 16, windows = 4;
    // By hand: window w starts at w·stride; it scores the targets at positions ≥ seqLen − stride
    // (all of them in window 0), each with the window's own context.
    let total = 0, count = 0;
    for (let w = 0; w < windows; w++) {
      const win = ids.slice(w * stride, w * stride + seqLen);
      const logp = T.noGrad(() =>
        T.tidy(() => T.logSoftmax(model.forward(T.tensor(Int32Array.from(win), [1, seqLen], { dtype: "i32" })).logits).dataSync() as Float32Array),
      );
      for (let t = w === 0 ? 0 : seqLen - stride - 1; t < seqLen - 1; t++, count++) total -= logp[t * 4096 + win[t + 1]!]!;
    }
    expect(count).toBe(47 + 3 * 16);
    for (const batchSize of [1, 3]) {
      const r = evaluatePerplexity(model, ids, { seqLen, stride, maxWindows: windows, batchSize });
      expect(r).toMatchObject({ windows, tokens: count });
      expect(r.nll, `batchSize ${batchSize}`).toBeCloseTo(total / count, 5);
    }
    // Every position from 1 to the last window's end is predicted exactly once.
    expect(1 + count).toBe((windows - 1) * stride + seqLen);
    // stride = seqLen is the non-overlapping protocol, bit for bit.
    expect(evaluatePerplexity(model, ids, { seqLen: 32, stride: 32, maxWindows: 3 }).nll).toBe(evaluatePerplexity(model, ids, { seqLen: 32, maxWindows: 3 }).nll);
    // Windows: full ones only, one every stride tokens.
    expect(evaluatePerplexity(model, ids.slice(0, 48 + 2 * 16 + 15), { seqLen: 48, stride: 16 }).windows).toBe(3);
    expect(windowCount(47, 48, 16)).toBe(0);
    expect(windowCount(48 + 2 * 16 + 15, 48, 16)).toBe(3);
    expect(windowCount(100, 10)).toBe(10);
  });
  it("rejects bad options", () => {
    expect(() => evaluatePerplexity(model, ids, { seqLen: 8, stride: 9 })).toThrow("evaluatePerplexity: stride must be an integer from 1 to seqLen (8), got 9");
    expect(() => evaluatePerplexity(model, ids, { seqLen: 8, stride: 0 })).toThrow(/stride must be an integer from 1/);
    expect(() => evaluatePerplexity(model, ids, { seqLen: 1 })).toThrow(/seqLen must be an integer ≥ 2/);
    expect(() => evaluatePerplexity(model, ids, { seqLen: 8, batchSize: 0 })).toThrow(/batchSize must be an integer ≥ 1/);
    expect(() => evaluatePerplexity(model, ids, { seqLen: 8, maxWindows: 0 })).toThrow(/maxWindows must be an integer ≥ 1/);
    expect(() => evaluatePerplexity(model, ids.slice(0, 7), { seqLen: 8 })).toThrow(/7 tokens make no full window of 8/);
  });
  it("tiny-llama on the whole validation file: valid_ppl_seq256 of transformers (1276 windows)", () => {
    const want = readJson(`${TINY}reference.json`) as { valid_ppl_seq256: number; valid_windows: number };
    const before = T.memory().bytes;
    const t0 = performance.now();
    const r = evaluatePerplexity(model, ids, { seqLen: 256, batchSize: 4 });
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `tiny-llama valid ppl (seq 256): ${r.perplexity.toFixed(4)} vs transformers ${want.valid_ppl_seq256.toFixed(4)} ` +
        `(rel diff ${(Math.abs(r.perplexity - want.valid_ppl_seq256) / want.valid_ppl_seq256).toExponential(1)}); ` +
        `${ids.length} tokens, ${r.windows} windows; tokenize ${tokenizeSeconds.toFixed(1)} s, evaluate ${seconds.toFixed(1)} s`,
    );
    expect(T.memory().bytes).toBe(before);
    expect(r.windows).toBe(want.valid_windows);
    expect(r.perplexity.toPrecision(3)).toBe(want.valid_ppl_seq256.toPrecision(3)); // 21.8
    expect(Math.abs(r.perplexity - want.valid_ppl_seq256) / want.valid_ppl_seq256).toBeLessThan(1e-5);
  }, 300_000);
});
