// LLaMA-shaped models with random weights, made on the device, for throughput and memory
// benchmarks (no checkpoint to read, nothing of weight size crosses from the host): dense bases
// drawn by the `random` creation kernel, quantized `affine` bases whose packed codes are random
// bits filled on the device, f16 scales drawn on the device and integer mid-range zero points.
import { cast, full, keep, rand, randn, randomPackedCodes, tidy, Tensor, type Device } from "@modulora/tensor";
import { affineFromTensors, packedWords, AFFINE_BITS } from "@modulora/core";
import { parseLlamaConfig } from "./config.js";
import { DenseLinear, QuantizedLinear } from "./linear.js";
import { checkModelDType, LlamaModel, type ModelDType } from "./model.js";
import { LINEAR_NAMES, type Linear, type LinearName, type LlamaConfig, type LlamaLayer } from "./types.js";

/** The sizes of a LLaMA-family model (Hugging Face's `config.json` keys, camel-cased). */
export interface RandomLlamaShape {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  /** Default: `numHeads` (no grouped-query attention). */
  numKvHeads?: number;
  vocabSize: number;
  /** Default 4096. */
  maxPositionEmbeddings?: number;
}

/** Options of {@link randomLlama}. */
export interface RandomLlamaOptions {
  /** Where the weights are made (default `cpu`). */
  device?: Device;
  /** Compute dtype (default `"bf16"`): the dtype of the embedding, norms, lm_head and dense bases. */
  dtype?: ModelDType;
  /**
   * Bits of the frozen base linears: 2, 3, 4 or 8 for `affine` weights, 16 for a dense base in
   * the compute dtype (default 4).
   */
  bits?: number;
  /** Input columns per group of the `affine` weights (default 128). */
  groupSize?: number;
  /** Seed of every draw (default 0): the same seed makes the same model on every device. */
  seed?: number;
}

/** A `LlamaConfig` for a shape (LlamaForCausalLM, RoPE theta 10000, untied embeddings, eps 1e-6). */
export function randomLlamaConfig(shape: RandomLlamaShape): LlamaConfig {
  return parseLlamaConfig(
    {
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_size: shape.hiddenSize,
      intermediate_size: shape.intermediateSize,
      num_hidden_layers: shape.numLayers,
      num_attention_heads: shape.numHeads,
      num_key_value_heads: shape.numKvHeads ?? shape.numHeads,
      vocab_size: shape.vocabSize,
      max_position_embeddings: shape.maxPositionEmbeddings ?? 4096,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      tie_word_embeddings: false,
      hidden_act: "silu",
    },
    "random LLaMA shape",
  );
}

/**
 * How {@link randomLlama} draws packed codes: by `randomPackedCodes` of @modulora/tensor, random
 * bits written by a kernel of the weight's device (Philox; no host array).
 */
export function randomCodesSource(): "randomPackedCodes" {
  return "randomPackedCodes";
}

/** An i32 tensor of `shape` on `device` holding uniform random 32-bit words, made on the device. */
function randomWords(shape: number[], device: Device, seed: number): Tensor {
  return randomPackedCodes(Tensor.empty(shape, "i32", device), seed);
}

/**
 * A LLaMA-shaped {@link LlamaModel} with random weights, every tensor made by kernels on
 * `options.device` (only scalars and kernel arguments cross from the host):
 * embedding and lm_head N(0, 0.02²) and RMSNorm weights ones, in the compute dtype; each of the
 * seven linears of every block either dense N(0, 0.02²) (`bits: 16`) or an `affine` weight with
 * groups of `groupSize`: packed codes uniform random bits, scales U(0.001, 0.021) stored in f16,
 * integer zero points 2^(bits−1) (mid-range). Meant for speed and memory measurements: the
 * outputs are meaningless. The model owns every tensor (`model.dispose()` frees them).
 */
export function randomLlama(shape: RandomLlamaShape, options: RandomLlamaOptions = {}): LlamaModel {
  const config = randomLlamaConfig(shape);
  const dtype = checkModelDType(options.dtype ?? "bf16", "randomLlama");
  const device = options.device ?? "cpu";
  const bits = options.bits ?? 4;
  const groupSize = options.groupSize ?? 128;
  const seed = options.seed ?? 0;
  if (bits !== 16 && !(AFFINE_BITS as readonly number[]).includes(bits)) throw new RangeError(`randomLlama: bits must be 16 (dense) or one of ${AFFINE_BITS.join(", ")}, got ${bits}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`randomLlama: seed must be a non-negative integer, got ${seed}`);
  const { hiddenSize: c, intermediateSize: m, numHeads, numKvHeads, headDim: d, vocabSize: v } = config;
  const shapes: Record<LinearName, [number, number]> = {
    q_proj: [numHeads * d, c], k_proj: [numKvHeads * d, c], v_proj: [numKvHeads * d, c], o_proj: [c, numHeads * d],
    gate_proj: [m, c], up_proj: [m, c], down_proj: [c, m],
  };
  if (bits !== 16) {
    for (const [name, [, inF]] of Object.entries(shapes)) {
      if (inF % groupSize !== 0) throw new RangeError(`randomLlama: group size ${groupSize} does not divide ${name}'s ${inF} input features`);
    }
  }
  // Every draw gets its own seed: (seed, tensor counter) → one safe integer.
  let counter = 0;
  const nextSeed = () => seed * 1_000_003 + counter++;
  const owned: { dispose(): void }[] = [];
  const own = <T extends { dispose(): void }>(x: T): T => {
    owned.push(x);
    return x;
  };
  const normal = (s: number[]) => own(keep(tidy(() => randn(s, { seed: nextSeed(), std: 0.02, dtype, device }))));
  const ones = (n: number) => own(keep(tidy(() => full([n], 1, { dtype, device }))));
  const linear = (out: number, inF: number): Linear => {
    if (bits === 16) return own(new DenseLinear(normal([out, inF])));
    const groups = inF / groupSize;
    const qweight = keep(tidy(() => randomWords([packedWords(inF, bits), out], device, nextSeed())));
    const scales = keep(tidy(() => rand([groups, out], { seed: nextSeed(), low: 0.001, high: 0.021, dtype: "f16", device })));
    const zeros = keep(tidy(() => full([groups, out], 2 ** (bits - 1), { dtype: "u8", device })));
    const weight = affineFromTensors({ outFeatures: out, inFeatures: inF, bits, groupSize, qweight, scales, zeros });
    return own(new QuantizedLinear(weight, "random"));
  };
  try {
    const embed = normal([v, c]);
    const layers: LlamaLayer[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      layers.push({
        inputNorm: ones(c),
        postAttentionNorm: ones(c),
        linears: Object.fromEntries(LINEAR_NAMES.map((n) => [n, linear(...shapes[n])])) as Record<LinearName, Linear>,
      });
    }
    const norm = ones(c);
    const head = own(new DenseLinear(normal([v, c])));
    return new LlamaModel(config, embed, layers, norm, head);
  } catch (err) {
    for (const x of owned) x.dispose();
    throw err;
  }
}
