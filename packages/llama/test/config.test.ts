import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LlamaConfigError, parseLlamaConfig, readLlamaConfig } from "../src/config.js";
import { smallLlamaDir } from "./fixtures.js";

const FIXTURES = new URL("../../../fixtures/", import.meta.url).pathname;
const TINY = join(FIXTURES, "tiny-llama");

/** A minimal valid config in the older style (top-level rope_theta), to be varied by each test. */
const base = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 128,
  vocab_size: 100,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-6,
  ...over,
});

/** The error `fn` throws, checked to be a LlamaConfigError. */
function configError(fn: () => unknown): LlamaConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LlamaConfigError);
    return err as LlamaConfigError;
  }
  throw new Error("expected a LlamaConfigError");
}

describe("fixture configs", () => {
  it("tiny-llama", () => {
    const c = readLlamaConfig(TINY);
    expect(c).toMatchObject({
      architecture: "LlamaForCausalLM",
      modelType: "llama",
      hiddenSize: 256,
      numLayers: 4,
      numHeads: 4,
      numKvHeads: 4,
      headDim: 64,
      intermediateSize: 768,
      rmsNormEps: 1e-5,
      vocabSize: 4096,
      tieWordEmbeddings: false,
      maxPositionEmbeddings: 1024,
      rope: { theta: 10000, scaling: null },
      bosTokenId: 0,
      eosTokenIds: [1],
      padTokenId: null,
      dtype: "float32",
    });
    expect(c.raw).toEqual(JSON.parse(readFileSync(join(TINY, "config.json"), "utf8")));
  });

  it("small-llama (GQA, bf16)", () => {
    const c = readLlamaConfig(smallLlamaDir());
    expect(c).toMatchObject({
      hiddenSize: 512,
      numLayers: 6,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 64,
      intermediateSize: 1408,
      vocabSize: 8192,
      maxPositionEmbeddings: 2048,
      rope: { theta: 10000, scaling: null },
      bosTokenId: 1,
      eosTokenIds: [2],
      dtype: "bfloat16",
    });
  });
});

describe("defaults", () => {
  it("KV heads = heads, head_dim = hidden/heads, theta 10000, untied, no special ids", () => {
    const c = parseLlamaConfig(base());
    expect(c).toMatchObject({ numKvHeads: 4, headDim: 16, rope: { theta: 10000, scaling: null }, tieWordEmbeddings: false, bosTokenId: null, eosTokenIds: [], padTokenId: null, dtype: null });
  });

  it("explicit head_dim, tied embeddings, eos list, torch_dtype", () => {
    const c = parseLlamaConfig(base({ head_dim: 32, num_key_value_heads: 2, tie_word_embeddings: true, eos_token_id: [5, 7], pad_token_id: 3, torch_dtype: "bfloat16" }));
    expect(c).toMatchObject({ headDim: 32, numKvHeads: 2, tieWordEmbeddings: true, eosTokenIds: [5, 7], padTokenId: 3, dtype: "bfloat16" });
  });

  it("architecture from model_type when architectures is absent; Mistral", () => {
    const { architectures: _, ...noArch } = base();
    expect(parseLlamaConfig(noArch).architecture).toBe("LlamaForCausalLM");
    const m = parseLlamaConfig(base({ architectures: ["MistralForCausalLM"], model_type: "mistral", sliding_window: null }));
    expect(m).toMatchObject({ architecture: "MistralForCausalLM", modelType: "mistral", maxPositionEmbeddings: 256 });
  });

  it("a Mistral sliding window smaller than the context caps maxPositionEmbeddings", () => {
    const m = parseLlamaConfig(base({ architectures: ["MistralForCausalLM"], model_type: "mistral", sliding_window: 128 }));
    expect(m.maxPositionEmbeddings).toBe(128);
    expect(m.slidingWindow).toBe(128); // so that errors name sliding_window, not max_position_embeddings
    expect(m.raw["max_position_embeddings"]).toBe(256);
    expect(parseLlamaConfig(base({ sliding_window: 128 })).maxPositionEmbeddings).toBe(256); // LLaMA has no sliding window
  });
});

describe("RoPE", () => {
  const llama3 = { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 };
  const expected = { theta: 500000, scaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } };

  it("older style: top-level rope_theta + rope_scaling (rope_type or type)", () => {
    expect(parseLlamaConfig(base({ rope_theta: 500000, rope_scaling: { rope_type: "llama3", ...llama3 } })).rope).toEqual(expected);
    expect(parseLlamaConfig(base({ rope_theta: 500000, rope_scaling: { type: "llama3", ...llama3 } })).rope).toEqual(expected);
    expect(parseLlamaConfig(base({ rope_theta: 1e6, rope_scaling: null })).rope).toEqual({ theta: 1e6, scaling: null });
    expect(parseLlamaConfig(base({ rope_scaling: { rope_type: "default" } })).rope).toEqual({ theta: 10000, scaling: null });
  });

  it("newer style: rope_parameters", () => {
    expect(parseLlamaConfig(base({ rope_parameters: { rope_theta: 500000, rope_type: "llama3", ...llama3 } })).rope).toEqual(expected);
    expect(parseLlamaConfig(base({ rope_parameters: { rope_theta: 250000, rope_type: "default" } })).rope).toEqual({ theta: 250000, scaling: null });
  });

  it("unsupported RoPE types are refused, naming the key and the value", () => {
    for (const type of ["yarn", "dynamic", "linear", "longrope"]) {
      const e = configError(() => parseLlamaConfig(base({ rope_scaling: { type, factor: 2 } }), "/m/config.json"));
      expect(e.key).toBe("rope_scaling.type");
      expect(e.message).toContain("/m/config.json");
      expect(e.message).toContain(`"${type}"`);
      const e2 = configError(() => parseLlamaConfig(base({ rope_parameters: { rope_type: type, rope_theta: 1e4 } })));
      expect(e2.key).toBe("rope_parameters.rope_type");
    }
  });

  it("llama3 scaling without its keys names the missing key", () => {
    const { low_freq_factor: _, ...partial } = llama3;
    const e = configError(() => parseLlamaConfig(base({ rope_scaling: { rope_type: "llama3", ...partial } })));
    expect(e.key).toBe("rope_scaling.low_freq_factor");
    expect(e.message).toContain("missing");
  });
});

describe("errors", () => {
  it("unknown architecture", () => {
    const e = configError(() => parseLlamaConfig(base({ architectures: ["GPT2LMHeadModel"], model_type: "gpt2" }), "cfg.json"));
    expect(e.key).toBe("architectures");
    expect(e.message).toMatch(/^cfg\.json: .*GPT2LMHeadModel.*not supported.*LlamaForCausalLM/);
  });

  it("unsupported options name the key and the value", () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ attention_bias: true }, "attention_bias"],
      [{ mlp_bias: true }, "mlp_bias"],
      [{ hidden_act: "gelu" }, "hidden_act"],
      [{ model_type: "qwen2" }, "model_type"],
      [{ num_key_value_heads: 3 }, "num_key_value_heads"],
      [{ partial_rotary_factor: 0.5 }, "partial_rotary_factor"],
    ];
    for (const [over, key] of cases) {
      const e = configError(() => parseLlamaConfig(base(over)));
      expect(e.key).toBe(key);
      expect(e.message).toContain(`"${key}"`);
      expect(e.message).toContain(JSON.stringify(Object.values(over)[0]));
    }
  });

  it("missing or mistyped required keys are named", () => {
    for (const key of ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size", "max_position_embeddings"]) {
      const cfg = base();
      delete cfg[key];
      const e = configError(() => parseLlamaConfig(cfg));
      expect(e.key).toBe(key);
      expect(e.message).toContain(`"${key}" is missing`);
    }
    expect(configError(() => parseLlamaConfig(base({ hidden_size: "64" }))).message).toContain(`"hidden_size" must be an integer >= 1, got "64"`);
    expect(configError(() => parseLlamaConfig(base({ eos_token_id: [1, "x"] }))).key).toBe("eos_token_id");
    expect(configError(() => parseLlamaConfig([])).message).toContain("must be a JSON object");
  });

  it("readLlamaConfig: missing file and malformed JSON name the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "modulora-config-"));
    try {
      expect(configError(() => readLlamaConfig(dir)).message).toContain(join(dir, "config.json"));
      writeFileSync(join(dir, "config.json"), "{ not json");
      const e = configError(() => readLlamaConfig(dir));
      expect(e.message).toContain(join(dir, "config.json"));
      expect(e.message).toContain("not valid JSON");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});


