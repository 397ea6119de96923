// config.json of a Hugging Face LLaMA-family checkpoint → LlamaConfig.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { LlamaConfig, RopeConfig } from "./types.js";

/**
 * A `config.json` that cannot be used: malformed, a required key missing, or an option this
 * project does not implement. The message names the file, the key and the value.
 */
export class LlamaConfigError extends Error {
  /** The key concerned (dotted for nested keys, e.g. `rope_scaling.factor`), if any. */
  readonly key?: string;
  /** Where the config came from (a path or a label). */
  readonly source: string;

  constructor(source: string, problem: string, key?: string) {
    super(`${source}: ${problem}`);
    this.name = "LlamaConfigError";
    this.source = source;
    if (key !== undefined) this.key = key;
  }
}

/**
 * Reads and parses a JSON file. A missing file, a read failure or malformed JSON raises the
 * error made by `fail` from a short problem statement (by default an `Error` reading
 * `<what> <path>: <problem>`).
 */
export function readJsonFile(path: string, what: string, fail: (problem: string, cause?: unknown) => Error = (p, cause) => new Error(`${what} ${path}: ${p}`, { cause })): unknown {
  if (!existsSync(path)) throw fail("the file does not exist");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw fail(`the file cannot be read: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw fail(`the file is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, err);
  }
}

/** Architectures (`architectures[0]`) and their `model_type`; both share LLaMA's weights and forward. */
const ARCHITECTURES: Readonly<Record<string, string>> = {
  LlamaForCausalLM: "llama",
  MistralForCausalLM: "mistral",
};

/** RoPE types we implement (`rope_type`/`type`); `default` means plain rotary frequencies. */
const ROPE_TYPES = ["default", "llama3"] as const;

const show = (v: unknown) => (v === undefined ? "undefined" : JSON.stringify(v));

/** Typed access to one JSON object, every error naming the file and the (dotted) key. */
class Keys {
  constructor(
    private readonly obj: Record<string, unknown>,
    private readonly source: string,
    private readonly prefix = "",
  ) {}

  fail(key: string, problem: string): never {
    const k = this.prefix + key;
    throw new LlamaConfigError(this.source, `"${k}" ${problem}`, k);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  raw(key: string): unknown {
    return this.obj[key];
  }

  /** A positive integer (required unless a default is given). */
  int(key: string, fallback?: number, min = 1): number {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      this.fail(key, "is missing (required)");
    }
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) this.fail(key, `must be an integer >= ${min}, got ${show(v)}`);
    return v;
  }

  /** A finite positive number. */
  num(key: string, fallback?: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      this.fail(key, "is missing (required)");
    }
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) this.fail(key, `must be a positive number, got ${show(v)}`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") this.fail(key, `must be true or false, got ${show(v)}`);
    return v;
  }

  /** A token id: a non-negative integer, or null when absent. */
  tokenId(key: string): number | null {
    const v = this.obj[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) this.fail(key, `must be a token id (integer >= 0) or null, got ${show(v)}`);
    return v;
  }

  /** Token ids given as one id or a list (as `eos_token_id` may be). */
  tokenIds(key: string): number[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const id of list) {
      if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) this.fail(key, `must be a token id or a list of token ids, got ${show(v)}`);
    }
    return list as number[];
  }

  /** A nested object, or null when absent/null. */
  object(key: string): Keys | null {
    const v = this.obj[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== "object" || Array.isArray(v)) this.fail(key, `must be an object or null, got ${show(v)}`);
    return new Keys(v as Record<string, unknown>, this.source, `${this.prefix}${key}.`);
  }
}

/**
 * RoPE from the newer `rope_parameters: {rope_theta, rope_type, ...}` (transformers 5) or the
 * older top-level `rope_theta` + `rope_scaling: {rope_type | type, ...}`. `rope_parameters` wins
 * when both are present (transformers 5 converts the old keys into it the same way).
 */
function parseRope(c: Keys): RopeConfig {
  const params: Keys | null = c.object("rope_parameters");
  const scalingKeys: Keys | null = params ?? c.object("rope_scaling");
  const theta = params ? params.num("rope_theta", c.num("rope_theta", 10000)) : c.num("rope_theta", 10000);
  for (const keys of [c, scalingKeys]) {
    const partial = keys?.raw("partial_rotary_factor");
    if (keys && partial !== undefined && partial !== null && partial !== 1) {
      keys.fail("partial_rotary_factor", `= ${show(partial)} is not supported (only full rotary embeddings, 1.0)`);
    }
  }
  if (!scalingKeys) return { theta, scaling: null };

  const typeKey = scalingKeys.has("rope_type") ? "rope_type" : "type";
  const type = scalingKeys.raw(typeKey) ?? "default";
  if (typeof type !== "string" || !(ROPE_TYPES as readonly string[]).includes(type)) {
    scalingKeys.fail(typeKey, `= ${show(type)} is not supported (supported RoPE types: ${ROPE_TYPES.join(", ")})`);
  }
  if (type === "default") return { theta, scaling: null };

  const original = scalingKeys.int("original_max_position_embeddings");
  const lowFreqFactor = scalingKeys.num("low_freq_factor");
  const highFreqFactor = scalingKeys.num("high_freq_factor");
  if (highFreqFactor <= lowFreqFactor) {
    scalingKeys.fail("high_freq_factor", `= ${highFreqFactor} must be greater than low_freq_factor (${lowFreqFactor})`);
  }
  return {
    theta,
    scaling: { type: "llama3", factor: scalingKeys.num("factor"), lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: original },
  };
}

/**
 * Parses a LLaMA-family `config.json` (already JSON-parsed). `source` labels errors (a path).
 *
 * Accepted: `LlamaForCausalLM` and `MistralForCausalLM` (from `architectures[0]`, or from
 * `model_type` when `architectures` is absent). Defaults follow transformers: KV heads = heads,
 * `head_dim` = hidden / heads, RoPE theta 10000, untied embeddings, `hidden_act` silu.
 *
 * Refused, with an error naming the key and its value: other architectures; RoPE types other
 * than default and llama3 (`linear`, `dynamic`, `yarn`, ... change the frequencies or the
 * attention scale, which this loader does not support); `attention_bias` / `mlp_bias` true (the layers have
 * no bias); `hidden_act` other than silu; `partial_rotary_factor` other than 1.
 *
 * Mistral's `sliding_window`: each query attends to the last W positions (itself included), which
 * equals full causal attention as long as a sequence (KV cache included) is at most W long; a
 * null window, or one at least the context, is full attention. This project implements full
 * attention only, so rather than refuse Mistral checkpoints, `maxPositionEmbeddings` is lowered to
 * W (and `slidingWindow` says so): {@link checkContextLength} and the model then refuse longer
 * sequences instead of silently computing something different. (`raw` keeps the original.)
 *
 * `pretraining_tp` is ignored: in transformers it only splits the same matmuls into slices.
 */
export function parseLlamaConfig(json: unknown, source = "config.json"): LlamaConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new LlamaConfigError(source, `the config must be a JSON object, got ${Array.isArray(json) ? "an array" : show(json)}`);
  }
  const raw = json as Record<string, unknown>;
  const c: Keys = new Keys(raw, source);

  // Architecture and model type.
  const archs = raw["architectures"];
  let architecture: string;
  if (archs === undefined || archs === null) {
    const mt = raw["model_type"];
    const found = Object.entries(ARCHITECTURES).find(([, t]) => t === mt);
    if (mt === undefined) c.fail("architectures", "is missing (and so is model_type): cannot tell which model this is");
    if (!found) c.fail("model_type", `= ${show(mt)} is not supported (supported: ${Object.values(ARCHITECTURES).join(", ")})`);
    architecture = found[0];
  } else {
    if (!Array.isArray(archs) || archs.length === 0 || typeof archs[0] !== "string") {
      c.fail("architectures", `must be a non-empty list of names, got ${show(archs)}`);
    }
    architecture = archs[0] as string;
    if (!(architecture in ARCHITECTURES)) {
      c.fail("architectures", `= ${show(archs)}: ${show(architecture)} is not supported (supported: ${Object.keys(ARCHITECTURES).join(", ")})`);
    }
  }
  const modelType = raw["model_type"] ?? ARCHITECTURES[architecture]!;
  if (typeof modelType !== "string" || !Object.values(ARCHITECTURES).includes(modelType)) {
    c.fail("model_type", `= ${show(modelType)} is not supported (supported: ${Object.values(ARCHITECTURES).join(", ")})`);
  }

  // Options we do not implement.
  const act = c.raw("hidden_act") ?? "silu";
  if (act !== "silu") c.fail("hidden_act", `= ${show(act)} is not supported (only "silu", as in LLaMA's SwiGLU MLP)`);
  if (c.bool("attention_bias", false)) c.fail("attention_bias", "= true is not supported (the attention projections have no bias)");
  if (c.bool("mlp_bias", false)) c.fail("mlp_bias", "= true is not supported (the MLP projections have no bias)");

  // Sizes.
  const hiddenSize = c.int("hidden_size");
  const numLayers = c.int("num_hidden_layers");
  const numHeads = c.int("num_attention_heads");
  const numKvHeads = c.int("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    c.fail("num_key_value_heads", `= ${numKvHeads} must divide num_attention_heads (${numHeads})`);
  }
  if (!c.has("head_dim") && hiddenSize % numHeads !== 0) {
    c.fail("hidden_size", `= ${hiddenSize} is not a multiple of num_attention_heads (${numHeads}) and head_dim is not given`);
  }
  const headDim = c.int("head_dim", hiddenSize / numHeads);
  if (headDim % 2 !== 0) c.fail("head_dim", `= ${headDim} must be even (rotary embeddings rotate pairs)`);
  const intermediateSize = c.int("intermediate_size");
  const vocabSize = c.int("vocab_size");
  let maxPositionEmbeddings = c.int("max_position_embeddings");
  const rmsNormEps = c.num("rms_norm_eps", 1e-6);
  const tieWordEmbeddings = c.bool("tie_word_embeddings", false);
  const rope = parseRope(c);

  let slidingWindow: number | null = null;
  if (modelType === "mistral" && c.has("sliding_window")) {
    const window = c.int("sliding_window");
    if (window < maxPositionEmbeddings) maxPositionEmbeddings = slidingWindow = window; // see the doc comment
  }

  const dtypeRaw = c.raw("torch_dtype") ?? c.raw("dtype") ?? null;
  if (dtypeRaw !== null && typeof dtypeRaw !== "string") c.fail(c.has("torch_dtype") ? "torch_dtype" : "dtype", `must be a string, got ${show(dtypeRaw)}`);

  return {
    architecture,
    modelType,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize,
    rmsNormEps,
    vocabSize,
    tieWordEmbeddings,
    maxPositionEmbeddings,
    slidingWindow,
    rope,
    bosTokenId: c.tokenId("bos_token_id"),
    eosTokenIds: c.tokenIds("eos_token_id"),
    padTokenId: c.tokenId("pad_token_id"),
    dtype: dtypeRaw,
    raw,
  };
}

/** Reads and parses `<dir>/config.json` (see {@link parseLlamaConfig}). */
export function readLlamaConfig(dir: string): LlamaConfig {
  const path = join(dir, "config.json");
  const json = readJsonFile(path, "model config", (problem) => new LlamaConfigError(path, problem));
  return parseLlamaConfig(json, path);
}

/**
 * Why the model's context is `maxPositionEmbeddings` tokens long: `max_position_embeddings N`, or,
 * for a Mistral model whose window is shorter, `sliding_window W`.
 */
export function contextLengthSource(config: LlamaConfig): string {
  return config.slidingWindow != null && config.slidingWindow === config.maxPositionEmbeddings
    ? `sliding_window ${config.slidingWindow} in config.json: Mistral attends to the last ${config.slidingWindow} positions, and this project computes full attention, which is the same only up to that length`
    : `max_position_embeddings ${config.maxPositionEmbeddings} in config.json`;
}

/**
 * Refuses a sequence longer than the model's context (see {@link parseLlamaConfig}): a
 * `RangeError` reading `<what> is <tokens> tokens, longer than the model's context of N tokens
 * (<why>)`, with `hint` appended when given (e.g. which option to lower).
 */
export function checkContextLength(config: LlamaConfig, tokens: number, what: string, hint?: string): void {
  if (tokens <= config.maxPositionEmbeddings) return;
  throw new RangeError(`${what} is ${tokens} tokens, longer than the model's context of ${config.maxPositionEmbeddings} tokens (${contextLengthSource(config)})${hint ? `: ${hint}` : ""}`);
}
