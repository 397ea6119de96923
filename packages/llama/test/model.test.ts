// Golden tests of the LLaMA forward against Hugging Face `transformers` outputs of tiny-llama
// (fixtures/tiny-llama/reference.safetensors: logits, hidden_states[1], the last hidden state
// and the loss, computed in float32). The max difference per tensor is printed.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as T from "@modulora/tensor";
import { maxAbsDiff } from "@modulora/tensor/testing";
import { KVCache } from "../src/kv-cache.js";
import { LlamaModel, loadLlama } from "../src/model.js";
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
let ref: Map<string, T.Tensor>;
let refLoss: number;

beforeAll(() => {
  model = LlamaModel.fromTensors(tinyConfig(), T.loadSafetensors(`${TINY}model.safetensors`));
  ref = T.loadSafetensors(`${TINY}reference.safetensors`);
  refLoss = (JSON.parse(readFileSync(`${TINY}reference.json`, "utf8")) as { reference_loss: number }).reference_loss;
});
afterAll(() => {
  model.dispose();
  T.dispose(ref);
});

const ids = () => ref.get("input_ids")!; // i32 [3, 48]
const report = (what: string, d: number) => console.log(`tiny-llama ${what}: max abs diff ${d.toExponential(2)}`);

describe("LlamaModel.fromTensors", () => {
  it("builds 4 dense blocks and an untied lm_head from the Hugging Face names", () => {
    expect(model.layers).toHaveLength(4);
    expect(model.embedTokens.shape).toEqual([4096, 256]);
    expect(model.layers[0]!.linears.k_proj.outFeatures).toBe(256);
    expect(model.lmHead.kind).toBe("dense");
    expect(model.parameters()).toEqual([]);
  });
  it("names what is missing, misshapen or unexpected", () => {
    const cfg = tinyConfig();
    const tensors = T.loadSafetensors(`${TINY}model.safetensors`, { names: ["model.embed_tokens.weight", "model.norm.weight"] });
    tensors.set("model.extra.weight", T.zeros([2]));
    expect(() => LlamaModel.fromTensors(cfg, tensors)).toThrow(/missing 37: lm_head\.weight, model\.layers\.0\.input_layernorm\.weight.*unexpected 1: model\.extra\.weight/);
    T.dispose(tensors);
    const bad = T.loadSafetensors(`${TINY}model.safetensors`);
    expect(() => LlamaModel.fromTensors({ ...cfg, numKvHeads: 2 }, bad)).toThrow(/wrong shapes: model\.layers\.0\.self_attn\.k_proj\.weight is \[256,256\], expected \[128,256\]/);
    T.dispose(bad);
  });
  it("loadLlama (config, weights and tokenizer from the directory) gives the same model", () => {
    const { model: loaded, tokenizer, config } = loadLlama(TINY);
    expect(config.numKvHeads).toBe(4);
    expect(tokenizer.encode("Hello world", { addSpecialTokens: false })).toEqual([1311, 303, 81, 1161]);
    const d = T.tidy(() => maxAbsDiff(loaded.forward(ids()).logits.dataSync(), model.forward(ids()).logits.dataSync()));
    expect(d).toBe(0);
    loaded.dispose();
  });
  it("ties lm_head to the embedding (shared storage, each handle disposed once)", () => {
    const tensors = T.loadSafetensors(`${TINY}model.safetensors`);
    tensors.get("lm_head.weight")!.dispose();
    tensors.delete("lm_head.weight");
    const before = T.memory().bytes;
    const tied = LlamaModel.fromTensors({ ...tinyConfig(), tieWordEmbeddings: true }, tensors);
    expect(T.memory().bytes).toBe(before);
    const lm = tied.lmHead as unknown as { weight: T.Tensor };
    expect(lm.weight.storage).toBe(tied.embedTokens.storage);
    tied.dispose();
    expect(T.memory().bytes).toBe(before - 4 * 5507328 + 4 * 4096 * 256);
  });
});

describe("forward vs Hugging Face (tiny-llama, f32)", () => {
  it("logits, hidden_states[1] and the last hidden state match to well under 1e-3", () => {
    T.tidy(() => {
      const { logits, hiddenStates } = model.forward(ids(), { outputHiddenStates: true });
      expect(logits.shape).toEqual([3, 48, 4096]);
      expect(hiddenStates).toHaveLength(5);
      const diffs = {
        logits: maxAbsDiff(logits.dataSync(), ref.get("logits")!.dataSync()),
        hidden_layer1: maxAbsDiff(hiddenStates![1]!.dataSync(), ref.get("hidden_layer1")!.dataSync()),
        hidden_last: maxAbsDiff(hiddenStates![4]!.dataSync(), ref.get("hidden_last")!.dataSync()),
      };
      for (const [k, d] of Object.entries(diffs)) report(k, d);
      expect(diffs.logits, "logits").toBeLessThan(2e-4);
      expect(diffs.hidden_layer1, "hidden_layer1").toBeLessThan(1e-4);
      expect(diffs.hidden_last, "hidden_last").toBeLessThan(1e-4);
    });
  });
  it("reference_loss (LlamaForCausalLM(labels=input_ids)) to 1e-4", () => {
    const loss = T.tidy(() => model.loss(ids(), ids()).item());
    report(`loss ${loss.toFixed(6)} vs ${refLoss.toFixed(6)}`, Math.abs(loss - refLoss));
    expect(Math.abs(loss - refLoss)).toBeLessThan(1e-4);
  });
  it("labels −100 are ignored; all ignored gives 0", () => {
    T.tidy(() => {
      const x = T.slice(ids(), [0], [1]);
      const labels = T.tensor(Int32Array.from(x.dataSync() as Int32Array, (v, i) => (i < 24 ? -100 : v)), [1, 48], { dtype: "i32" });
      const { logits } = model.forward(x);
      // hand: mean over t = 23..46 of −log softmax(logits[t])[ids[t + 1]]
      const l = T.logSoftmax(logits).dataSync() as Float32Array;
      const xi = x.dataSync() as Int32Array;
      let s = 0;
      for (let t = 23; t < 47; t++) s -= l[t * 4096 + xi[t + 1]!]!;
      expect(model.loss(x, labels).item()).toBeCloseTo(s / 24, 5);
      expect(model.loss(x, T.full([1, 48], -100, { dtype: "i32" })).item()).toBe(0);
    });
  });
  it("a batch of 3 windows equals the windows one at a time", () => {
    T.tidy(() => {
      const all = model.forward(ids()).logits;
      for (let b = 0; b < 3; b++) {
        const one = model.forward(T.slice(ids(), [b], [b + 1])).logits;
        const d = maxAbsDiff(one.dataSync(), T.slice(all, [b], [b + 1]).dataSync());
        expect(d, `window ${b}`).toBeLessThan(1e-5);
      }
    });
  });
  it("the KV cache (prefix, then one token at a time) gives the full forward's logits", () => {
    T.tidy(() => {
      const full = model.forward(ids()).logits.dataSync() as Float32Array; // [3, 48, V]
      const cache = new KVCache(model.config, { batchSize: 3, maxLength: 48 });
      const parts = [model.forward(T.slice(ids(), [0, 0], [3, 20]), { cache }).logits];
      expect(cache.length).toBe(20);
      for (let t = 20; t < 48; t++) parts.push(model.forward(T.slice(ids(), [0, t], [3, t + 1]), { cache }).logits);
      expect(cache.length).toBe(48);
      const cached = T.concat(parts, 1).dataSync() as Float32Array;
      const d = maxAbsDiff(cached, full);
      report("KV-cache logits vs full forward", d);
      expect(d).toBeLessThan(1e-4);
      expect(() => model.forward(T.slice(ids(), [0, 0], [3, 1]), { cache })).toThrow(/exceed maxLength 48/);
      cache.reset();
      expect(cache.length).toBe(0);
      cache.dispose();
    });
  });
  it("lastLogitsOnly returns the last position's logits", () => {
    T.tidy(() => {
      const full = model.forward(ids()).logits;
      const last = model.forward(ids(), { lastLogitsOnly: true }).logits;
      expect(last.shape).toEqual([3, 1, 4096]);
      // fewer rows take the GEMV path of the matmul: equal up to rounding
      expect(maxAbsDiff(last.dataSync(), T.slice(full, [0, 47], [3, 48]).dataSync())).toBeLessThan(1e-4);
    });
  });
  it("explicit positions: a window at positions 0..T−1 equals the default", () => {
    T.tidy(() => {
      const a = model.forward(ids()).logits.dataSync();
      const b = model.forward(ids(), { positions: T.arange(48, undefined, 1, { dtype: "i32" }) }).logits.dataSync();
      expect(maxAbsDiff(a, b)).toBe(0);
    });
  });
});

describe("memory and autograd", () => {
  it("a forward inside tidy leaves memory where it started", () => {
    const before = T.memory();
    T.tidy(() => {
      model.forward(ids(), { outputHiddenStates: true });
      const cache = new KVCache(model.config, { batchSize: 3, maxLength: 48 });
      model.forward(ids(), { cache });
      cache.dispose();
    });
    const after = T.memory();
    expect(after.bytes).toBe(before.bytes);
    expect(after.tensors).toBe(before.tensors);
  });
  it("checkpointed blocks give the plain forward's loss and gradients (a norm weight as the trainable dummy)", () => {
    const w = model.layers[1]!.postAttentionNorm;
    const run = (checkpointing: boolean) => {
      w.requiresGrad = true;
      const loss = T.tidy(() => {
        const l = model.loss(ids(), ids(), { checkpointing });
        T.backward(l);
        return l.item();
      });
      const grad = w.grad!.toArray();
      w.zeroGrad();
      w.requiresGrad = false;
      return { loss, grad };
    };
    const before = T.memory().bytes;
    const plain = run(false);
    const ck = run(true);
    expect(T.memory().bytes).toBe(before);
    expect(ck.loss).toBe(plain.loss);
    expect(ck.grad).toEqual(plain.grad);
    expect(Math.max(...plain.grad.map(Math.abs))).toBeGreaterThan(0);
  });
  it("refuses gradients through the KV cache and a cache with checkpointing", () => {
    const w = model.layers[0]!.inputNorm;
    w.requiresGrad = true;
    T.tidy(() => {
      const cache = new KVCache(model.config, { batchSize: 3, maxLength: 48 });
      expect(() => model.forward(ids(), { cache })).toThrow(/gradients do not flow through the cache; run cached forwards under noGrad/);
      expect(() => model.forward(ids(), { cache, checkpointing: true })).toThrow(/checkpointing .* KV cache/);
      cache.dispose();
    });
    w.requiresGrad = false;
  });
});
