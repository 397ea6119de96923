// What the loaders and the evaluation refuse instead of computing something wrong (issue 13's
// reliability review): a config that does not describe the weights (num_hidden_layers), NaN/Inf
// weights, sequences longer than the context (max_position_embeddings, Mistral's sliding_window),
// metrics from non-finite outputs; and perplexity's tokenization of only what the windows need.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as T from "@modulora/tensor";
import { quantizeRtn, rtnQuantizer } from "@modulora/quantizer-rtn";
import {
  checkCheckpointHeaders, CheckpointError, evaluateClassification, evaluatePerplexity, findNonFinite, generate, LINEAR_NAMES, LlamaModel, LlamaTokenizer,
  loadLlama, loadQuantizedModel, NonFiniteError, parseLlamaConfig, perplexityTokenIds, QuantizedLinear, readLlamaConfig, saveQuantizedModel, type DenseLinear,
} from "../src/index.js";

const FIX = fileURLToPath(new URL("../../../fixtures/", import.meta.url));
const TINY = `${FIX}tiny-llama/`;
const TEXT = readFileSync(`${FIX}data/lm/valid.txt`, "utf8");
const rawConfig = JSON.parse(readFileSync(`${TINY}config.json`, "utf8")) as Record<string, unknown>;
const tmp = mkdtempSync(join(tmpdir(), "modulora-load-checks-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of tiny-llama with config.json keys overridden (and, optionally, other weights). */
function tinyCopy(name: string, override: Record<string, unknown> = {}, tensors?: Map<string, T.Tensor>): string {
  const dir = join(tmp, name);
  cpSync(TINY, dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...rawConfig, ...override }));
  if (tensors) T.saveSafetensors(join(dir, "model.safetensors"), tensors);
  return dir;
}

const errorOf = (fn: () => unknown): Error => {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a failure");
};

describe("config against the weight headers", () => {
  it("num_hidden_layers 10000000 fails at once, naming both counts, before anything is allocated", () => {
    const dir = tinyCopy("layers", { num_hidden_layers: 10_000_000 });
    const config = readLlamaConfig(dir);
    const before = T.memory().bytes;
    T.resetPeakMemory();
    const e = errorOf(() => loadLlama(dir)); // it took 51 s and 3 GB to fail
    expect(T.memory().peakBytes).toBe(before); // not one tensor was allocated
    expect(e).toBeInstanceOf(CheckpointError);
    expect((e as CheckpointError).problems).toEqual([
      "config.json num_hidden_layers is 10000000, but the weights hold blocks 0–3 (4 layers): the config does not describe these weights (fix num_hidden_layers, or use the config that came with them)",
    ]);
    expect(() => checkCheckpointHeaders(dir, config)).toThrow("config.json num_hidden_layers is 10000000, but the weights hold blocks 0–3 (4 layers)");
    expect(T.memory().bytes).toBe(before);
  });

  it("fewer layers in the config, and a block missing from the weights, are named", () => {
    expect(() => loadLlama(tinyCopy("layers-2", { num_hidden_layers: 2 }))).toThrow("config.json num_hidden_layers is 2, but the weights hold blocks 0–3 (4 layers)");
    const t = T.loadSafetensors(`${TINY}model.safetensors`);
    for (const k of [...t.keys()]) if (k.startsWith("model.layers.2.")) { t.get(k)!.dispose(); t.delete(k); }
    const dir = tinyCopy("no-block-2", {}, t);
    T.dispose(t);
    expect(() => checkCheckpointHeaders(dir, readLlamaConfig(dir))).toThrow("config.json num_hidden_layers is 4, but the weights hold blocks 0, 1, 3 (3 layers); missing blocks 2");
  });

  it("a quantized checkpoint is cross-checked the same way", () => {
    const { model } = loadLlama(TINY);
    model.layers.forEach((layer) => {
      for (const n of LINEAR_NAMES) {
        const d = layer.linears[n] as DenseLinear;
        layer.linears[n] = new QuantizedLinear(quantizeRtn(d.weight, { bits: 4, groupSize: 64 }), "rtn");
        d.dispose();
      }
    });
    const dir = join(tmp, "q4");
    saveQuantizedModel(model, dir, { sourceDir: TINY, plugin: rtnQuantizer });
    model.dispose();
    const q = loadQuantizedModel(dir);
    expect((q.model.layers[0]!.linears.q_proj as QuantizedLinear).quantizer).toBe("rtn"); // from quantization_config.meta
    q.model.dispose();
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, num_hidden_layers: 10_000_000 }));
    expect(() => loadQuantizedModel(dir)).toThrow("config.json num_hidden_layers is 10000000, but the weights hold blocks 0–3 (4 layers)");
    expect(() => checkCheckpointHeaders(dir, readLlamaConfig(dir), { quantized: true })).toThrow("num_hidden_layers is 10000000");
    // a NaN in a quantized layer's f16 scales is refused too, naming the tensor
    writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
    const t = T.loadSafetensors(join(dir, "model.safetensors"));
    const name = "model.layers.3.mlp.down_proj.scales";
    const scales = t.get(name)!.toFloat64Array();
    scales[10] = NaN;
    const shape = t.get(name)!.shape;
    t.get(name)!.dispose();
    t.set(name, T.keep(T.cast(T.tensor(Float32Array.from(scales), shape), "f16")));
    T.saveSafetensors(join(dir, "model.safetensors"), t, { format: "pt" });
    T.dispose([...t.values()]);
    expect(() => loadQuantizedModel(dir)).toThrow(`tensor "${name}" holds NaN at element 10 (1 of ${scales.length} values are not finite)`);
  });
});

describe("non-finite weights", () => {
  it("findNonFinite reads f32, bf16 and f16 exponents: first index, value, count", () => {
    const f32 = new Float32Array([1, NaN, 2, -Infinity]);
    expect(findNonFinite(new Uint8Array(f32.buffer), "f32")).toEqual({ index: 1, value: NaN, count: 2 });
    expect(findNonFinite(new Uint8Array(new Float32Array([0, -3.4e38, 1e-45]).buffer), "f32")).toBeNull();
    // bf16: 0x7f80 +Inf, 0xffc0 NaN, 0x3f80 1; f16: 0xfc00 −Inf, 0x3c00 1
    expect(findNonFinite(new Uint8Array(new Uint16Array([0x3f80, 0x7f80, 0xffc0]).buffer), "bf16")).toEqual({ index: 1, value: Infinity, count: 2 });
    expect(findNonFinite(new Uint8Array(new Uint16Array([0x3c00, 0xfc00]).buffer), "f16")).toEqual({ index: 1, value: -Infinity, count: 1 });
    expect(findNonFinite(new Uint8Array(new Uint16Array([0x3c00, 0x7bff]).buffer), "f16")).toBeNull();
    expect(findNonFinite(new Uint8Array(new Int32Array([0x7fc00000]).buffer), "i32")).toBeNull();
  });

  for (const dtype of ["f32", "bf16"] as const) {
    it(`a NaN in ${dtype} weights is refused at load, naming the tensor and the element`, () => {
      const t = T.loadSafetensors(`${TINY}model.safetensors`);
      const name = "model.layers.2.self_attn.q_proj.weight";
      const w = t.get(name)!.toFloat64Array();
      w[1234] = NaN;
      w[2000] = Infinity;
      t.get(name)!.dispose();
      t.set(name, T.tensor(Float32Array.from(w), [256, 256]));
      if (dtype === "bf16") for (const [k, v] of t) { t.set(k, T.keep(T.cast(v, "bf16"))); v.dispose(); }
      const dir = tinyCopy(`nan-${dtype}`, {}, t);
      T.dispose([...t.values()]);
      const e = errorOf(() => loadLlama(dir)) as CheckpointError;
      expect(e.problems).toEqual([
        `tensor "${name}" holds NaN at element 1234 (2 of 65536 values are not finite): the weights are damaged, or a run that wrote them diverged`,
      ]);
    });
  }
});

describe("non-finite outputs never become a metric", () => {
  let model: LlamaModel;
  let tokenizer: LlamaTokenizer;
  beforeAll(() => {
    ({ model, tokenizer } = loadLlama(TINY));
  });
  afterAll(() => model.dispose());

  it("a NaN in one q_proj weight makes perplexity an error (the attention kernel once mapped the NaN query to 0: a finite, wrong perplexity)", () => {
    const ids = perplexityTokenIds(tokenizer, TEXT, { seqLen: 64, maxWindows: 2 });
    const clean = evaluatePerplexity(model, ids, { seqLen: 64 });
    expect(Number.isFinite(clean.perplexity)).toBe(true);
    const w = (model.layers[1]!.linears.q_proj as DenseLinear).weight;
    const saved = new Float32Array(w.dataSync() as Float32Array);
    const poisoned = new Float32Array(saved);
    poisoned[5] = NaN; // row 0 of q_proj: query head 0, one element
    T.noGrad(() => T.tidy(() => T.assign(w, T.tensor(poisoned, w.shape))));
    try {
      expect(() => evaluatePerplexity(model, ids, { seqLen: 64 })).toThrow(NonFiniteError);
      expect(() => evaluatePerplexity(model, ids, { seqLen: 64 })).toThrow(/^evaluatePerplexity: the negative log-likelihood of window 0 is NaN: the model's outputs are not finite/);
      const cand = { inputIds: ids.slice(0, 12), targetStart: 10, targetEnd: 12 };
      expect(() => evaluateClassification(model, [{ label: "a", candidates: [{ ...cand, label: "a" }, { ...cand, label: "b" }] }])).toThrow(/^evaluateClassification: the log-probability of example 0's candidate 'a' is NaN/);
      expect(() => generate(model, ids.slice(0, 8), { maxNewTokens: 4, temperature: 0 })).toThrow(/^generate: logit 0 of step 0 is NaN/);
    } finally {
      T.noGrad(() => T.tidy(() => T.assign(w, T.tensor(saved, w.shape))));
    }
    expect(evaluatePerplexity(model, ids, { seqLen: 64 })).toEqual(clean);
  });
});

describe("context length: max_position_embeddings and Mistral's sliding_window", () => {
  const tensorsOf = () => T.loadSafetensors(`${TINY}model.safetensors`);
  const ids64 = () => T.tensor(Int32Array.from({ length: 64 }, (_, i) => (i * 37) % 4096), [1, 64], { dtype: "i32" });

  it("a Mistral sliding_window of 16 refuses 64 tokens (forward, perplexity, generation); 16 tokens equal LLaMA's full attention", () => {
    const mistral = LlamaModel.fromTensors(parseLlamaConfig({ ...rawConfig, architectures: ["MistralForCausalLM"], model_type: "mistral", sliding_window: 16 }), tensorsOf());
    const llama = LlamaModel.fromTensors(parseLlamaConfig(rawConfig), tensorsOf());
    try {
      const ids = ids64();
      expect(() => mistral.forward(ids)).toThrow(
        "LlamaModel.forward: the sequence is 64 tokens, longer than the model's context of 16 tokens (sliding_window 16 in config.json: Mistral attends to the last 16 positions, and this project computes full attention, which is the same only up to that length)",
      );
      const tokens = Array.from(ids.dataSync() as Int32Array);
      expect(() => evaluatePerplexity(mistral, tokens, { seqLen: 64 })).toThrow(/context of 16 tokens \(sliding_window 16/);
      expect(() => generate(mistral, tokens.slice(0, 10), { maxNewTokens: 7, temperature: 0 })).toThrow(
        /^generate: the prompt \(10 tokens\) plus maxNewTokens \(7\) is 17 tokens, longer than the model's context of 16 tokens .*: lower maxNewTokens or shorten the prompt$/,
      );
      expect(generate(mistral, tokens.slice(0, 10), { maxNewTokens: 6, temperature: 0 }).ids).toEqual(generate(llama, tokens.slice(0, 10), { maxNewTokens: 6, temperature: 0 }).ids);
      const a = T.tidy(() => Array.from(mistral.forward(T.slice(ids, [0, 0], [1, 16])).logits.dataSync() as Float32Array));
      const b = T.tidy(() => Array.from(llama.forward(T.slice(ids, [0, 0], [1, 16])).logits.dataSync() as Float32Array));
      expect(a).toEqual(b);
      ids.dispose();
    } finally {
      mistral.dispose();
      llama.dispose();
    }
  });

  it("sliding_window null or ≥ the context is full attention; max_position_embeddings bounds every model, KV cache included", () => {
    expect(parseLlamaConfig({ ...rawConfig, model_type: "mistral", architectures: ["MistralForCausalLM"], sliding_window: null }).maxPositionEmbeddings).toBe(1024);
    expect(parseLlamaConfig({ ...rawConfig, model_type: "mistral", architectures: ["MistralForCausalLM"], sliding_window: 4096 }).slidingWindow).toBeNull();
    const short = LlamaModel.fromTensors(parseLlamaConfig({ ...rawConfig, max_position_embeddings: 32 }), tensorsOf());
    try {
      const ids = ids64();
      expect(() => short.forward(ids)).toThrow("LlamaModel.forward: the sequence is 64 tokens, longer than the model's context of 32 tokens (max_position_embeddings 32 in config.json)");
      const tokens = Array.from(ids.dataSync() as Int32Array);
      expect(() => generate(short, tokens.slice(0, 30), { maxNewTokens: 3, temperature: 0 })).toThrow(/plus maxNewTokens \(3\) is 33 tokens, longer than the model's context of 32/);
      expect(generate(short, tokens.slice(0, 30), { maxNewTokens: 2, temperature: 0 }).ids).toHaveLength(2);
      ids.dispose();
    } finally {
      short.dispose();
    }
  });
});

describe("perplexityTokenIds", () => {
  let tokenizer: LlamaTokenizer;
  let whole: number[];
  beforeAll(() => {
    tokenizer = LlamaTokenizer.fromDir(TINY);
    whole = tokenizer.encode(TEXT, { addSpecialTokens: false });
  });

  it("equals the whole text's tokens for the windows used, tokenizing only a prefix", () => {
    for (const [seqLen, maxWindows] of [[64, 1], [256, 3], [128, 40], [1000, 7]] as const) {
      const lengths: number[] = [];
      const spy = { encode: (s: string, o?: { addSpecialTokens?: boolean }) => (lengths.push(s.length), tokenizer.encode(s, o)) };
      const ids = perplexityTokenIds(spy, TEXT, { seqLen, maxWindows });
      expect(ids).toEqual(whole.slice(0, seqLen * maxWindows));
      expect(Math.max(...lengths)).toBeLessThan(TEXT.length / 4); // 1.1 MB of text was tokenized whole for one window
    }
  });

  it("the whole text without maxWindows, or when the windows need more than it has", () => {
    expect(perplexityTokenIds(tokenizer, TEXT, { seqLen: 256 })).toEqual(whole);
    const short = TEXT.slice(0, 3000);
    const all = tokenizer.encode(short, { addSpecialTokens: false });
    expect(perplexityTokenIds(tokenizer, short, { seqLen: 256, maxWindows: 100 })).toEqual(all);
  });

  it("cuts only where a word ends: text without spaces is tokenized whole", () => {
    const dense = "x".repeat(20000);
    const lengths: number[] = [];
    const spy = { encode: (s: string, o?: { addSpecialTokens?: boolean }) => (lengths.push(s.length), tokenizer.encode(s, o)) };
    expect(perplexityTokenIds(spy, dense, { seqLen: 8, maxWindows: 1 })).toEqual(tokenizer.encode(dense, { addSpecialTokens: false }).slice(0, 8));
    expect(lengths).toEqual([20000]);
  });
});
