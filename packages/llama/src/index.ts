/**
 * `@modulora/llama`: LLaMA-family models from Hugging Face directories — config, sharded
 * safetensors checkpoints, tokenizer and chat template, the model with a KV cache and
 * generation, evaluation, and quantizing a whole model with any quantizer plugin.
 * @packageDocumentation
 */
export * from "./types.js";
export * from "./linear.js";
export * from "./config.js";
export * from "./checkpoint.js";
export * from "./tokenizer.js";
export * from "./load.js";
export * from "./load-model.js";
export * from "./hub/index.js";
export * from "./model.js";
export * from "./kv-cache.js";
export * from "./generate.js";
export * from "./perplexity.js";
export * from "./quantize.js";
export * from "./quantized-checkpoint.js";
export * from "./module-pattern.js";
export * from "./adapter.js";
export * from "./finetune.js";
export * from "./random-model.js";
