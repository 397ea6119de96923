// Generation with the KV cache on tiny-llama: greedy equals the argmax of full (uncached) forwards
// at every step, sampling is reproducible per seed, filtering follows Hugging Face's warpers.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as T from "@modulora/tensor";
import { argmax, generate, generateTokens, sampleToken } from "../src/generate.js";
import { LlamaModel } from "../src/model.js";
import type { LlamaConfig } from "../src/types.js";

const TINY = fileURLToPath(new URL("../../../fixtures/tiny-llama/", import.meta.url));

/** tiny-llama's config.json, by hand (independent of the config loader). */
function tinyConfig(): LlamaConfig {
  const raw = JSON.parse(readFileSync(`${TINY}config.json`, "utf8")) as Record<string, unknown>;
  return {
    architecture: "LlamaForCausalLM", modelType: "llama", hiddenSize: 256, numLayers: 4, numHeads: 4, numKvHeads: 4, headDim: 64,
    intermediateSize: 768, rmsNormEps: 1e-5, vocabSize: 4096, tieWordEmbeddings: false, maxPositionEmbeddings: 1024,
    rope: { theta: 10000, scaling: null }, bosTokenId: 0, eosTokenIds: [1], padTokenId: null, dtype: "float32", raw,
  };
}

let model: LlamaModel;
let prompt: number[];

beforeAll(() => {
  model = LlamaModel.fromTensors(tinyConfig(), T.loadSafetensors(`${TINY}model.safetensors`));
  const ref = T.loadSafetensors(`${TINY}reference.safetensors`, { names: ["input_ids"] });
  prompt = Array.from(ref.get("input_ids")!.dataSync() as Int32Array).slice(0, 12); // 12 tokens of validation text
  T.dispose(ref);
});
afterAll(() => model.dispose());

/** The next token by argmax of an uncached forward over the whole sequence. */
function fullArgmax(ids: number[]): number {
  return T.noGrad(() =>
    T.tidy(() => {
      const { logits } = model.forward(T.tensor(Int32Array.from(ids), [1, ids.length], { dtype: "i32" }));
      return argmax(T.slice(logits, [0, ids.length - 1], [1, ids.length]).dataSync() as Float32Array);
    }),
  );
}

describe("generateTokens (tiny-llama)", () => {
  it("greedy equals the argmax of a full forward at every step, and leaves memory where it started", () => {
    const before = T.memory();
    const out = generateTokens(model, prompt, { maxNewTokens: 24, stopTokens: [] });
    expect(T.memory().bytes).toBe(before.bytes);
    expect(T.memory().tensors).toBe(before.tensors);
    expect(out.ids).toHaveLength(24);
    expect(out.stoppedBy).toBe("max-tokens");
    for (let i = 0; i < out.ids.length; i++) expect(out.ids[i], `step ${i}`).toBe(fullArgmax([...prompt, ...out.ids.slice(0, i)]));
  });
  it("streams each token through onToken as it is chosen", () => {
    const seen: number[] = [];
    const out = generateTokens(model, prompt, { maxNewTokens: 8, temperature: 0.8, seed: 3, onToken: (id) => seen.push(id) });
    expect(seen).toEqual(out.ids);
  });
  it("sampling is reproducible per seed and differs across seeds", () => {
    const run = (seed: number) => generateTokens(model, prompt, { maxNewTokens: 20, temperature: 1, seed, stopTokens: [] }).ids;
    const a = run(1);
    expect(run(1)).toEqual(a);
    expect(run(2)).not.toEqual(a);
    expect(run(0)).toEqual(generateTokens(model, prompt, { maxNewTokens: 20, temperature: 1, stopTokens: [] }).ids); // seed defaults to 0
  });
  it("top-k = 1 is greedy at any temperature; top-p that keeps one token is greedy too", () => {
    const greedy = generateTokens(model, prompt, { maxNewTokens: 12, stopTokens: [] }).ids;
    expect(generateTokens(model, prompt, { maxNewTokens: 12, temperature: 1.5, topK: 1, seed: 7, stopTokens: [] }).ids).toEqual(greedy);
    expect(generateTokens(model, prompt, { maxNewTokens: 12, temperature: 1, topP: 1e-6, seed: 7, stopTokens: [] }).ids).toEqual(greedy);
  });
  it("stops at EOS (the config's ids by default), at a stop token, or at maxNewTokens", () => {
    const greedy = generateTokens(model, prompt, { maxNewTokens: 10, stopTokens: [] }).ids;
    const third = greedy[2]!;
    const eos = model.config.eosTokenIds;
    model.config.eosTokenIds = [third]; // pretend the third greedy token is EOS
    try {
      expect(generateTokens(model, prompt, { maxNewTokens: 10 })).toEqual({ ids: greedy.slice(0, 3), stoppedBy: "eos" });
    } finally {
      model.config.eosTokenIds = eos;
    }
    expect(generateTokens(model, prompt, { maxNewTokens: 10, stopTokens: [third] })).toEqual({ ids: greedy.slice(0, 3), stoppedBy: "stop-token" });
    expect(generateTokens(model, prompt, { maxNewTokens: 2, stopTokens: [third] })).toEqual({ ids: greedy.slice(0, 2), stoppedBy: "max-tokens" });
    expect(generateTokens(model, prompt, { maxNewTokens: 0 })).toEqual({ ids: [], stoppedBy: "max-tokens" });
  });
  it("the deprecated generate(model, ids, options) is generateTokens", () => {
    const opts = { maxNewTokens: 6, temperature: 0.9, seed: 4, stopTokens: [] };
    expect(generate(model, prompt, opts)).toEqual(generateTokens(model, prompt, opts));
  });
  it("a logitsProcessor edits each step's logits in place, seeing the prompt and the tokens so far", () => {
    const seen: number[][] = [];
    const banned = generateTokens(model, prompt, { maxNewTokens: 1, stopTokens: [] }).ids[0]!;
    const out = generateTokens(model, prompt, {
      maxNewTokens: 3, stopTokens: [],
      logitsProcessor: (ids, logits) => {
        seen.push([...ids]);
        logits[banned] = -Infinity;
      },
    });
    expect(out.ids).not.toContain(banned);
    expect(seen).toEqual([prompt, [...prompt, out.ids[0]!], [...prompt, ...out.ids.slice(0, 2)]]);
    expect(() => generateTokens(model, prompt, { maxNewTokens: 1, logitsProcessor: (_, l) => void l.fill(-Infinity) })).toThrow(/logitsProcessor left no token with a finite logit at step 0/);
  });
  it("rejects bad options with clear errors", () => {
    const g = (o: object, p = prompt) => () => generateTokens(model, p, { maxNewTokens: 4, ...o });
    expect(g({ temperature: -0.5 })).toThrow(/temperature must be a finite number ≥ 0 \(0 = greedy\), got -0\.5/);
    expect(g({ temperature: NaN })).toThrow(/temperature/);
    expect(g({ topP: 0 })).toThrow(/topP must be in \(0, 1\], got 0/);
    expect(g({ topP: 1.5 })).toThrow(/topP must be in \(0, 1\], got 1\.5/);
    expect(g({ topK: 0 })).toThrow(/topK must be an integer ≥ 1, got 0/);
    expect(g({ maxNewTokens: -1 })).toThrow(/maxNewTokens must be an integer ≥ 0/);
    expect(g({ seed: 0.5 })).toThrow(/seed must be a safe integer/);
    expect(g({}, [])).toThrow(/prompt is empty/);
    expect(g({}, [4096])).toThrow(/token id 4096 is outside the vocabulary \[0, 4096\)/);
    expect(g({ stopTokens: [-1] })).toThrow(/token id -1/);
  });
});

describe("sampleToken (Hugging Face's temperature → top-k → top-p order)", () => {
  const logits = Float32Array.from([0.5, 0.3, 0.2, 0.0], (p) => (p > 0 ? Math.log(p) : -Infinity));
  const s = (o: Partial<{ temperature: number; topK: number | null; topP: number }>, u: number) => sampleToken(logits, { temperature: 1, topK: null, topP: 1, ...o }, u);
  it("inverts the CDF of the softmax", () => {
    expect([0, 0.49, 0.51, 0.79, 0.81, 0.999].map((u) => s({}, u))).toEqual([0, 0, 1, 1, 2, 2]);
  });
  it("top-k keeps the k largest (ties at the k-th kept), renormalized", () => {
    expect([0, 0.62, 0.63, 0.999].map((u) => s({ topK: 2 }, u))).toEqual([0, 0, 1, 1]); // 0.5/0.8 = 0.625
    expect(sampleToken([1, 2, 2, 0], { temperature: 1, topK: 1, topP: 1 }, 0.99)).toBe(2); // tie at the 1st: both kept
  });
  it("top-p keeps the most likely tokens until their mass reaches p", () => {
    expect([0.1, 0.99].map((u) => s({ topP: 0.45 }, u))).toEqual([0, 0]);
    expect([0.62, 0.63, 0.999].map((u) => s({ topP: 0.75 }, u))).toEqual([0, 1, 1]);
    expect(s({ topP: 0.85 }, 0.999)).toBe(2);
  });
  it("temperature sharpens (low) or flattens (high) the distribution", () => {
    expect(s({ temperature: 0.05 }, 0.999)).toBe(0);
    expect(s({ temperature: 100 }, 0.4)).toBe(1); // ~uniform over the three finite tokens
    expect(s({ temperature: 0 }, 0.999)).toBe(0);
  });
});
