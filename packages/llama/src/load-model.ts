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
import { looksLikeModelId } from "./hub/model-id.js";
import { resolveModel, resolveModelSync, type ResolveModelOptions } from "./hub/resolve.js";

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
  /** For a Hugging Face id `org/name`: the branch, tag or commit hash of the cached snapshot (default `main`). */
  revision?: string;
  /** For a Hugging Face id: the cache directory (default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /**
   * {@link loadModelAsync} with a Hugging Face id: fetch the files the cache lacks from the Hub
   * first (token HF_TOKEN, address HF_ENDPOINT; see {@link resolveModel} for byte progress).
   * {@link loadModel} refuses it (a download does not run synchronously).
   */
  download?: boolean;
}

/** Whether `dir` is to be resolved as a Hugging Face id (an existing path never is). */
function isModelId(dir: string, options: LoadModelOptions): boolean {
  return options.revision !== undefined || (!existsSync(dir) && looksLikeModelId(dir));
}

function hubOptions(options: LoadModelOptions): ResolveModelOptions {
  return { ...(options.revision !== undefined ? { revision: options.revision } : {}), ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}) };
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
 * whole model is never on the host. `dirOrId` may be a Hugging Face id `org/name`, found in the
 * local Hugging Face cache at `options.revision` ({@link resolveModelSync}).
 */
export function loadModel(dirOrId: string, options: LoadModelOptions = {}): LoadedLlama {
  if (options.download) throw new Error(`loadModel: download: true needs loadModelAsync (a download does not run synchronously)`);
  const dir = isModelId(dirOrId, options) ? resolveModelSync(dirOrId, hubOptions(options)).dir : dirOrId;
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
 * The result is the same model. A Hugging Face id `org/name` is resolved with
 * {@link resolveModel}, downloading the missing files when `options.download` is set.
 */
export async function loadModelAsync(dirOrId: string, options: LoadModelOptions = {}): Promise<LoadedLlama> {
  const dir = isModelId(dirOrId, options) ? (await resolveModel(dirOrId, { ...hubOptions(options), download: options.download === true })).dir : dirOrId;
  const dtype = checkModelDType(options.dtype, "loadModel");
  const device = options.device ?? "cpu";
  if (isQuantizedDir(dir)) {
    const r = await loadQuantizedModelAsync(dir, { device, dtype, ...(options.plugin !== undefined ? { plugin: options.plugin } : {}) });
    return { ...r, quantized: true };
  }
  const r = await loadLlamaAsync(dir, { device, dtype, ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
  return { ...r, quantized: false };
}
