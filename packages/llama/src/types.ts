import type { Tensor } from "@modulora/tensor";

/** RoPE settings, from either `rope_theta`/`rope_scaling` or `rope_parameters`. */
export interface RopeConfig {
  theta: number;
  /** null: default rotary frequencies. */
  scaling: null | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };
}

/** A parsed `config.json` of a LLaMA-family model (LlamaForCausalLM, MistralForCausalLM). */
export interface LlamaConfig {
  architecture: string;
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  rmsNormEps: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  /**
   * The longest sequence (KV cache included) the model accepts: `max_position_embeddings`, or a
   * shorter Mistral `sliding_window` (see `parseLlamaConfig`).
   */
  maxPositionEmbeddings: number;
  /** The Mistral `sliding_window` when it made `maxPositionEmbeddings` shorter, else null or absent. */
  slidingWindow?: number | null;
  rope: RopeConfig;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  /** Storage dtype named in the config (`torch_dtype`/`dtype`), if any. */
  dtype: string | null;
  /** The config as read, for writing it back. */
  raw: Record<string, unknown>;
}

/** The projections of one block, in Hugging Face's names. */
export const LINEAR_NAMES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
/** One of {@link LINEAR_NAMES}. */
export type LinearName = (typeof LINEAR_NAMES)[number];
/** Which module holds a projection: `self_attn` or `mlp`. */
export const LINEAR_MODULE: Readonly<Record<LinearName, "self_attn" | "mlp">> = {
  q_proj: "self_attn", k_proj: "self_attn", v_proj: "self_attn", o_proj: "self_attn",
  gate_proj: "mlp", up_proj: "mlp", down_proj: "mlp",
};

/** Options of one forward call through a layer or the model. */
export interface LayerForwardOptions {
  /** Apply dropout (training). */
  training?: boolean;
  /** Training step (dropout masks are a function of seed and step). */
  step?: number;
}

/**
 * A linear layer of the model: dense (full precision), quantized (frozen), or quantized with a
 * LoRA adapter (`ModuLoRALinear`). Weight layout is PyTorch's: [out, in].
 */
export interface Linear {
  readonly kind: "dense" | "quantized" | "lora";
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** x [..., in] → [..., out]. */
  forward(x: Tensor, options?: LayerForwardOptions): Tensor;
  /** Trainable tensors (empty for frozen layers). */
  parameters(): Tensor[];
  /** Bytes held by the weight (and adapter). */
  storageBytes(): number;
  dispose(): void;
}

/** One transformer block's weights. */
export interface LlamaLayer {
  /** RMSNorm weight before attention (`input_layernorm`). */
  inputNorm: Tensor;
  /** RMSNorm weight before the MLP (`post_attention_layernorm`). */
  postAttentionNorm: Tensor;
  linears: Record<LinearName, Linear>;
}

/**
 * A metric or an output computed from non-finite values (NaN or ±Inf logits: NaN or infinite
 * weights, or an adapter whose training diverged). Evaluation and generation raise it instead of
 * returning a number that looks valid.
 */
export class NonFiniteError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "NonFiniteError";
  }
}

/** The hint every {@link NonFiniteError} ends with. */
export const NON_FINITE_HINT = "the model's outputs are not finite (NaN or infinite weights, or an adapter whose training diverged)";
