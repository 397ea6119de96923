// The LLaMA decoder (Hugging Face `LlamaForCausalLM`) from the fused transformer ops:
//   x = embed(ids)                                                   // [B, T, C]
//   per block: x = x + o(attention(rope(q(h)), rope(k(h)), v(h)))    with h = rmsnorm(x)
//              x = x + down(swiglu(gate(h), up(h)))                  with h = rmsnorm(x)
//   logits = lm_head(rmsnorm(x))                                     // [B, T, V]
// Grouped-query heads, causal, RoPE on the [B, T, H, D] layout at explicit positions. The linears
// are the `Linear` interface (dense, quantized or LoRA), so quantization and adapters swap them
// without touching this file.
import {
  arange, attention, cast, checkpoint, concat, crossEntropy, embedding, full, isGradEnabled, keep, reshape, rmsnorm, rope, slice, swiglu,
  add, tidy, type Device, type RopeOptions, type Tensor,
} from "@modulora/tensor";
import { checkContextLength } from "./config.js";
import type { KVCache } from "./kv-cache.js";
import { DenseLinear } from "./linear.js";
import { loadLlamaFiles, loadLlamaFilesAsync, type LlamaFiles, type LoadLlamaFilesOptions } from "./load.js";
import type { LlamaTokenizer } from "./tokenizer.js";
import { LINEAR_MODULE, LINEAR_NAMES, type LayerForwardOptions, type Linear, type LinearName, type LlamaConfig, type LlamaLayer } from "./types.js";

/** Options of {@link LlamaModel.blockForward}. */
export interface BlockForwardOptions extends LayerForwardOptions {
  /** Append this block's keys and values to the cache and attend over everything cached. */
  cache?: KVCache;
  /** Wrap the block in `checkpoint()` (recompute it in backward instead of keeping activations). */
  checkpointing?: boolean;
}

/** Options of {@link LlamaModel.forward}. */
export interface LlamaForwardOptions extends BlockForwardOptions {
  /** i32 `[T]` or `[B, T]`; default `cache.length … cache.length + T − 1` (0 … T − 1 without a cache). */
  positions?: Tensor;
  /** Also return the hidden states (Hugging Face `output_hidden_states`). */
  outputHiddenStates?: boolean;
  /** Compute the logits of the last position only (`[B, 1, V]`): what generation needs. */
  lastLogitsOnly?: boolean;
}

/** What {@link LlamaModel.forward} returns. */
export interface LlamaForwardOutput {
  /** `[B, T, V]` (`[B, 1, V]` with `lastLogitsOnly`) in the model's compute dtype (f32, or bf16: cast before reading many of them, `crossEntropy` of bf16 logits is f32). */
  logits: Tensor;
  /**
   * With `outputHiddenStates`: `numLayers + 1` tensors `[B, T, C]`, Hugging Face's convention —
   * the embeddings, the output of each block but the last, and the output of the last block after
   * the final norm.
   */
  hiddenStates?: Tensor[];
}

/** Hugging Face tensor names of one block. */
export function llamaLayerTensorNames(layer: number): { inputNorm: string; postAttentionNorm: string; linears: Record<LinearName, string> } {
  const p = `model.layers.${layer}`;
  const linears = Object.fromEntries(LINEAR_NAMES.map((n) => [n, `${p}.${LINEAR_MODULE[n]}.${n}.weight`])) as Record<LinearName, string>;
  return { inputNorm: `${p}.input_layernorm.weight`, postAttentionNorm: `${p}.post_attention_layernorm.weight`, linears };
}

/** Tensors a checkpoint may carry that the model does not use (old checkpoints saved RoPE buffers). */
const IGNORED_TENSOR = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/** Compute dtypes a model can be built in: see {@link ModelDType}. */
export const MODEL_DTYPES = ["f32", "bf16"] as const;

/**
 * The compute dtype of a model. `"f32"` (the default): every weight and activation f32.
 * `"bf16"`: the frozen dense base weights (embeddings, norms, dense linears, lm_head) are bf16 on
 * the device and so are the activations, computed in f32 by the engine's kernels and rounded once
 * per op; LoRA factors, their gradients and the optimizer state stay f32 (the LoRA branch runs
 * on an f32 cast of its input); the loss is f32; quantized linears decode and accumulate in f32.
 */
export type ModelDType = (typeof MODEL_DTYPES)[number];

/** Options of {@link LlamaModel.fromTensors}. */
export interface FromTensorsOptions {
  /** Compute dtype of the weights (default `"f32"`; see {@link ModelDType}). */
  dtype?: ModelDType;
}

/** Checks a requested compute dtype (`who` names the caller in the error). */
export function checkModelDType(dtype: unknown, who: string): ModelDType {
  if (dtype === undefined) return "f32";
  if ((MODEL_DTYPES as readonly unknown[]).includes(dtype)) return dtype as ModelDType;
  const hint = dtype === "f16" ? " (f16 is a storage type only: it does not compute)" : "";
  throw new RangeError(`${who}: dtype ${JSON.stringify(dtype)} is not a compute dtype${hint}; use one of ${MODEL_DTYPES.map((d) => `"${d}"`).join(", ")}`);
}

/** A LLaMA-family causal language model. */
export class LlamaModel {
  private readonly ropeOptions: RopeOptions;

  constructor(
    readonly config: LlamaConfig,
    /** `[V, C]`. */
    readonly embedTokens: Tensor,
    readonly layers: LlamaLayer[],
    /** Final RMSNorm weight `[C]`. */
    readonly norm: Tensor,
    readonly lmHead: Linear,
  ) {
    if (layers.length !== config.numLayers) throw new RangeError(`LlamaModel: ${layers.length} layers given, config.numLayers is ${config.numLayers}`);
    const s = config.rope.scaling;
    this.ropeOptions = { theta: config.rope.theta, ...(s ? { scaling: { ...s } } : {}) };
  }

  /**
   * Builds the model from Hugging Face tensor names (`model.embed_tokens.weight`,
   * `model.layers.N.self_attn.q_proj.weight`, …) with dense linears. Takes ownership of every
   * tensor in `tensors` (the map is emptied): weights not already in `options.dtype` (default
   * f32) are cast one tensor at a time by a kernel on the tensor's own device and their
   * originals freed (f64 stays f64 under f32); with tied embeddings
   * `lm_head` shares the embedding's storage. All tensors must be on one device: the model's.
   */
  static fromTensors(config: LlamaConfig, tensors: Map<string, Tensor>, options: FromTensorsOptions = {}): LlamaModel {
    const dtype = checkModelDType(options.dtype, "LlamaModel.fromTensors");
    const { hiddenSize: c, numHeads, numKvHeads, headDim: d, intermediateSize: m, vocabSize: v } = config;
    const taken = new Set<string>();
    const missing: string[] = [];
    const errors: string[] = [];
    const take = (name: string, shape: number[]): Tensor | null => {
      const t = tensors.get(name);
      if (!t) {
        missing.push(name);
        return null;
      }
      taken.add(name);
      if (t.shape.length !== shape.length || t.shape.some((n, i) => n !== shape[i])) errors.push(`${name} is [${t.shape}], expected [${shape}]`);
      return t;
    };
    const linearShapes: Record<LinearName, number[]> = {
      q_proj: [numHeads * d, c], k_proj: [numKvHeads * d, c], v_proj: [numKvHeads * d, c], o_proj: [c, numHeads * d],
      gate_proj: [m, c], up_proj: [m, c], down_proj: [c, m],
    };
    const embed = take("model.embed_tokens.weight", [v, c]);
    const norm = take("model.norm.weight", [c]);
    const head = config.tieWordEmbeddings ? null : take("lm_head.weight", [v, c]);
    const rawLayers = Array.from({ length: config.numLayers }, (_, i) => {
      const names = llamaLayerTensorNames(i);
      return {
        inputNorm: take(names.inputNorm, [c]),
        postAttentionNorm: take(names.postAttentionNorm, [c]),
        linears: Object.fromEntries(LINEAR_NAMES.map((n) => [n, take(names.linears[n], linearShapes[n])])) as Record<LinearName, Tensor | null>,
      };
    });
    const devices = new Set([...tensors.values()].map((t) => t.device));
    if (devices.size > 1) errors.push(`the tensors are on several devices (${[...devices].join(", ")}); load them all onto one`);
    const unexpected = [...tensors.keys()].filter((n) => !taken.has(n) && !IGNORED_TENSOR.test(n) && !(config.tieWordEmbeddings && n === "lm_head.weight"));
    if (missing.length || errors.length || unexpected.length) {
      const parts = [
        missing.length ? `missing ${missing.length}: ${missing.slice(0, 8).join(", ")}${missing.length > 8 ? ", …" : ""}` : "",
        errors.length ? `wrong shapes: ${errors.slice(0, 8).join("; ")}` : "",
        unexpected.length ? `unexpected ${unexpected.length}: ${unexpected.slice(0, 8).join(", ")}${unexpected.length > 8 ? ", …" : ""}` : "",
      ].filter(Boolean);
      throw new Error(`LlamaModel.fromTensors: the tensors do not match the config (${config.numLayers} layers, hidden ${c}, ${numHeads}/${numKvHeads} heads × ${d}, MLP ${m}, vocab ${v}): ${parts.join("; ")}`);
    }
    // Ownership: every tensor leaves the caller's scopes; those we do not use are freed.
    const own = (t: Tensor): Tensor => {
      keep(t);
      if (t.dtype === dtype || (dtype === "f32" && t.dtype === "f64")) return t;
      const f = keep(cast(t, dtype));
      t.dispose();
      return f;
    };
    for (const [name, t] of tensors) if (!taken.has(name)) t.dispose();
    tensors.clear();
    const embedTokens = own(embed!);
    const layers: LlamaLayer[] = rawLayers.map((l) => ({
      inputNorm: own(l.inputNorm!),
      postAttentionNorm: own(l.postAttentionNorm!),
      linears: Object.fromEntries(LINEAR_NAMES.map((n): [LinearName, Linear] => [n, new DenseLinear(own(l.linears[n]!))])) as Record<LinearName, Linear>,
    }));
    // Tied: a second handle on the embedding's storage, so each owner disposes its own handle.
    const lmHead = new DenseLinear(head ? own(head) : keep(embedTokens.detach()));
    return new LlamaModel(config, embedTokens, layers, own(norm!), lmHead);
  }

  /** The device the model's weights are on (every input goes there; every computation runs there). */
  get device(): Device {
    return this.embedTokens.device;
  }

  /**
   * The compute dtype: the dtype of the frozen base weights and of the activations (`"f32"` for
   * an f64 model too; see {@link ModelDType}).
   */
  get dtype(): ModelDType {
    return this.embedTokens.dtype === "bf16" ? "bf16" : "f32";
  }

  /** ids i32 `[B, T]` → embeddings `[B, T, C]`. */
  embed(ids: Tensor): Tensor {
    return embedding(this.embedTokens, ids);
  }

  /** Final norm and lm_head: hidden `[B, T, C]` → logits `[B, T, V]`. */
  head(hidden: Tensor, options: LayerForwardOptions = {}): Tensor {
    return tidy(() => this.lmHead.forward(rmsnorm(hidden, this.norm, this.config.rmsNormEps), options));
  }

  /**
   * One decoder block: hidden `[B, T, C]` at `positions` (i32 `[T]` or `[B, T]`) → `[B, T, C]`.
   * With a cache, the block's keys and values are appended to layer `layerIndex` of the cache and
   * the queries attend over all cached positions (the T queries being the newest).
   */
  blockForward(layerIndex: number, hidden: Tensor, positions: Tensor, options: BlockForwardOptions = {}): Tensor {
    const layer = this.layers[layerIndex];
    if (!layer) throw new RangeError(`blockForward: layer ${layerIndex} out of range [0, ${this.layers.length})`);
    const { cache, checkpointing, ...linearOptions } = options;
    if (checkpointing && cache && isGradEnabled()) {
      throw new Error("blockForward: checkpointing re-runs the block in backward, which would append to the KV cache twice; use one or the other");
    }
    const run = (x: Tensor, pos: Tensor): Tensor => this.block(layerIndex, layer, x, pos, cache, linearOptions);
    if (!checkpointing) return run(hidden, positions);
    // positions go in as an input, so the node keeps them for the re-run in backward.
    return checkpoint((x, pos) => run(x!, pos!), [hidden, positions]);
  }

  private block(index: number, layer: LlamaLayer, x: Tensor, positions: Tensor, cache: KVCache | undefined, opts: LayerForwardOptions): Tensor {
    const { numHeads, numKvHeads, headDim, rmsNormEps: eps } = this.config;
    const [b, t] = x.shape as [number, number, number];
    const l = layer.linears;
    return tidy(() => {
      const h = rmsnorm(x, layer.inputNorm, eps);
      const q = rope(reshape(l.q_proj.forward(h, opts), [b, t, numHeads, headDim]), positions, this.ropeOptions); // [B, T, Hq, D]
      let k = rope(reshape(l.k_proj.forward(h, opts), [b, t, numKvHeads, headDim]), positions, this.ropeOptions); // [B, T, Hkv, D]
      let v = reshape(l.v_proj.forward(h, opts), [b, t, numKvHeads, headDim]);
      if (cache) ({ keys: k, values: v } = cache.append(index, k, v)); // [B, S, Hkv, D]
      const a = attention(q, k, v, { causal: true }); // [B, T, Hq, D]
      const x2 = add(x, l.o_proj.forward(reshape(a, [b, t, numHeads * headDim]), opts));
      const h2 = rmsnorm(x2, layer.postAttentionNorm, eps);
      const mlp = swiglu(l.gate_proj.forward(h2, opts), l.up_proj.forward(h2, opts)); // [B, T, M]
      return add(x2, l.down_proj.forward(mlp, opts));
    });
  }

  /** ids i32 `[B, T]` → logits f32 `[B, T, V]` (and the hidden states if asked). */
  forward(ids: Tensor, options: LlamaForwardOptions = {}): LlamaForwardOutput {
    if (ids.dtype !== "i32" || ids.rank !== 2) throw new TypeError(`LlamaModel.forward: ids must be i32 [B, T], got ${ids.dtype} [${ids.shape}]`);
    if (ids.device !== this.device) throw new TypeError(`LlamaModel.forward: ids are on device '${ids.device}', the model on '${this.device}'; create them there (tensorFrom(..., { device: model.device }))`);
    const { positions: givenPositions, outputHiddenStates, lastLogitsOnly, ...blockOptions } = options;
    const [b, t] = ids.shape as [number, number];
    const cache = options.cache;
    if (cache && cache.batchSize !== b) throw new RangeError(`LlamaModel.forward: ids have batch ${b}, the cache was made for batch ${cache.batchSize}`);
    // Positions past the context are not something this model computes correctly (see parseLlamaConfig).
    checkContextLength(this.config, (cache?.length ?? 0) + t, cache?.length ? `LlamaModel.forward: the sequence (${cache.length} cached + ${t} new)` : "LlamaModel.forward: the sequence");
    return tidy(() => {
      const past = cache?.length ?? 0;
      // Made by a kernel on the model's device: nothing crosses from the host per forward.
      const positions = givenPositions ?? arange(past, past + t, 1, { dtype: "i32", device: this.device });
      let h = this.embed(ids);
      const hiddenStates = outputHiddenStates ? [h] : undefined;
      for (let i = 0; i < this.layers.length; i++) {
        const next = this.blockForward(i, h, positions, blockOptions);
        // Free each block's input as we go (the autograd tape keeps its own handles).
        if (hiddenStates) {
          if (i < this.layers.length - 1) hiddenStates.push(next);
        } else {
          h.dispose();
        }
        h = next;
      }
      const last = lastLogitsOnly && t > 1 ? slice(h, [0, t - 1], [b, t]) : h;
      const normed = rmsnorm(last, this.norm, this.config.rmsNormEps);
      if (hiddenStates) hiddenStates.push(lastLogitsOnly ? rmsnorm(h, this.norm, this.config.rmsNormEps) : normed);
      const logits = this.lmHead.forward(normed, blockOptions);
      return hiddenStates ? { logits, hiddenStates } : { logits };
    });
  }

  /**
   * Mean next-token cross-entropy, as `LlamaForCausalLM(input_ids, labels=labels)` computes it:
   * position t predicts `labels[t + 1]` (the shift happens here), labels −100 are ignored.
   * ids and labels i32 `[B, T]`; returns a scalar f32 tensor (differentiable).
   */
  loss(ids: Tensor, labels: Tensor, options: Omit<LlamaForwardOptions, "lastLogitsOnly" | "outputHiddenStates"> = {}): Tensor {
    if (labels.dtype !== "i32" || labels.shape.length !== 2 || labels.shape[0] !== ids.shape[0] || labels.shape[1] !== ids.shape[1]) {
      throw new TypeError(`LlamaModel.loss: labels must be i32 with the shape of ids [${ids.shape}], got ${labels.dtype} [${labels.shape}]`);
    }
    return tidy(() => {
      const { logits } = this.forward(ids, options);
      return crossEntropy(logits, shiftLabels(labels), { ignoreIndex: -100, reduction: "mean" });
    });
  }

  /** Trainable tensors of all linears (LoRA adapters; none for a dense or quantized model). */
  parameters(): Tensor[] {
    const out: Tensor[] = [];
    for (const layer of this.layers) for (const n of LINEAR_NAMES) out.push(...layer.linears[n].parameters());
    out.push(...this.lmHead.parameters());
    return out;
  }

  /** Frees every weight (and adapter) of the model. */
  dispose(): void {
    this.embedTokens.dispose();
    this.norm.dispose();
    this.lmHead.dispose();
    for (const layer of this.layers) {
      layer.inputNorm.dispose();
      layer.postAttentionNorm.dispose();
      for (const n of LINEAR_NAMES) layer.linears[n].dispose();
    }
  }
}

/**
 * labels `[B, T]` → targets `[B, T]` with `targets[:, t] = labels[:, t + 1]` and −100 in the last
 * column. Computed on the labels' device (a slice, a fill and a concat: no transfer).
 */
export function shiftLabels(labels: Tensor): Tensor {
  const [b, t] = labels.shape as [number, number];
  return tidy(() => {
    const last = full([b, 1], -100, { dtype: "i32", device: labels.device });
    return t > 1 ? concat([slice(labels, [0, 1], [b, t]), last], 1) : last;
  });
}

/** Options of {@link loadLlama}: those of {@link loadLlamaFiles} (`device`, `dtype`, progress). */
export type LoadLlamaOptions = LoadLlamaFilesOptions;

/**
 * Loads a Hugging Face LLaMA directory (config.json, safetensors — one file or shards, f32 or
 * bf16 — and the tokenizer) as a dense model on `options.device` (default `cpu`) in
 * `options.dtype` (default `"f32"`; `"bf16"`: see {@link ModelDType}), placing the weights there
 * tensor by tensor. A bf16 checkpoint loads into a bf16 model with no f32 copy; other
 * combinations are cast per tensor on the device.
 */
export function loadLlama(dir: string, options: LoadLlamaOptions = {}): LoadedDenseLlama {
  const dtype = checkModelDType(options.dtype, "loadLlama");
  return fromFiles(loadLlamaFiles(dir, { ...options, dtype }), dtype);
}

/** {@link loadLlama} with the weights read off the event loop (libuv's thread pool), one tensor at a time. */
export async function loadLlamaAsync(dir: string, options: LoadLlamaOptions = {}): Promise<LoadedDenseLlama> {
  const dtype = checkModelDType(options.dtype, "loadLlama");
  return fromFiles(await loadLlamaFilesAsync(dir, { ...options, dtype }), dtype);
}

/** What {@link loadLlama} returns. */
export interface LoadedDenseLlama {
  model: LlamaModel;
  tokenizer: LlamaTokenizer;
  config: LlamaConfig;
}

function fromFiles({ config, tensors, tokenizer }: LlamaFiles, dtype: ModelDType): LoadedDenseLlama {
  return { model: LlamaModel.fromTensors(config, tensors, { dtype }), tokenizer, config };
}
