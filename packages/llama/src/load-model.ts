// One entry point for a model directory on a device: full precision or quantized, decided by the
// directory's own config.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Device } from "@modulora/tensor";
import type { QuantizerPlugin } from "@modulora/core";
import { readLlamaConfig } from "./config.js";
import { checkModelDType, loadLlama, loadLlamaAsync, type LlamaModel, type ModelDType } from "./model.js";
import { loadQuantizedModel, loadQuantizedModelAsync, QUANTIZE_CONFIG_FILE } from "./quantized-checkpoint.js";
import type { LlamaTokenizer } from "./tokenizer.js";
import type { LlamaConfig } from "./types.js";

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /** Where the weights go and every computation runs (default `cpu`). */
  device?: Device;
  /** Compute dtype (default `"f32"`; `"bf16"`: a bf16 frozen base and bf16 activations, see {@link ModelDType}). */
  dtype?: ModelDType;
  /** The plugin that made `custom`-format quantized weights (needed to read them). */
  plugin?: QuantizerPlugin | string;
  /** Full-precision loads: called after each tensor is placed, with the count so far and the total. */
  onProgress?: (done: number, total: number, name: string) => void;
}

/** What {@link loadModel} returns. */
export interface LoadedLlama {
  model: LlamaModel;
  /** Null for a quantized directory without tokenizer.json. */
  tokenizer: LlamaTokenizer | null;
  config: LlamaConfig;
  /** Whether the directory held a quantized checkpoint. */
  quantized: boolean;
}

/** Whether a model directory holds a quantized checkpoint (a `quantization_config`, or quantize_config.json). */
export function isQuantizedDir(dir: string, config: LlamaConfig = readLlamaConfig(dir)): boolean {
  const qc = config.raw["quantization_config"];
  return (qc !== undefined && qc !== null) || existsSync(join(dir, QUANTIZE_CONFIG_FILE));
}

/**
 * Loads a LLaMA-family model directory onto `options.device`: a quantized checkpoint with
 * {@link loadQuantizedModel}, else full precision with {@link loadLlama}. Weights are read and
 * checked on the host one tensor at a time and copied onto the device one transfer each, so the
 * whole model is never on the host.
 */
export function loadModel(dir: string, options: LoadModelOptions = {}): LoadedLlama {
  const dtype = checkModelDType(options.dtype, "loadModel");
  const device = options.device ?? "cpu";
  if (isQuantizedDir(dir)) {
    const r = loadQuantizedModel(dir, { device, dtype, ...(options.plugin !== undefined ? { plugin: options.plugin } : {}) });
    return { ...r, quantized: true };
  }
  const r = loadLlama(dir, { device, dtype, ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
  return { ...r, quantized: false };
}

/**
 * {@link loadModel} without blocking the event loop: every file read runs on libuv's thread pool,
 * one tensor at a time, so signals, timers and progress output keep running during a long load.
 * The result is the same model.
 */
export async function loadModelAsync(dir: string, options: LoadModelOptions = {}): Promise<LoadedLlama> {
  const dtype = checkModelDType(options.dtype, "loadModel");
  const device = options.device ?? "cpu";
  if (isQuantizedDir(dir)) {
    const r = await loadQuantizedModelAsync(dir, { device, dtype, ...(options.plugin !== undefined ? { plugin: options.plugin } : {}) });
    return { ...r, quantized: true };
  }
  const r = await loadLlamaAsync(dir, { device, dtype, ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
  return { ...r, quantized: false };
}
