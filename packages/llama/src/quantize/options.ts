/**
 * The options and results of {@link quantizeModel}: what it takes ({@link QuantizeModelOptions}),
 * the progress events it sends, the per-layer report and the result, and the checks of the
 * options that do not need the model, which also split off the plugin's own options.
 * @module
 */
import { groupSizeFor, type QuantizeOptions, type QuantizerPlugin } from "@modulora/core";
import { LINEAR_NAMES, type LinearName } from "../types.js";
import type { CalibrationSource } from "./calibration-windows.js";

/** A progress event: calibration forward passes of a block, or one layer quantized. */
export interface QuantizeProgressEvent {
  stage: "calibrate" | "quantize";
  /** Block index (`null` for lm_head). */
  block: number | null;
  /** The layer just quantized (`quantize`), or null (`calibrate`). */
  layer: LinearName | "lm_head" | null;
  /** `calibrate`: the layers whose inputs this pass records (one true-sequential group, or the whole block). */
  layers?: readonly (LinearName | "lm_head")[];
  /** `calibrate`: micro-batches of this pass done (of `total`); `quantize`: layers done in the model (of `total`). */
  done: number;
  total: number;
}

/** Options of {@link quantizeModel}. Keys it does not know go to the plugin. */
export interface QuantizeModelOptions {
  bits: number;
  /** Columns per group, or "row" (default: the plugin's `defaultGroupSize`, else 128). */
  groupSize?: number | "row";
  symmetric?: boolean;
  /** Linears of every block to quantize (default all seven). */
  targets?: readonly LinearName[];
  /** Also quantize lm_head (default false: embeddings, norms and lm_head stay in full precision). */
  includeLmHead?: boolean;
  /** Required by plugins with `calibration` other than `"none"`. */
  calibration?: CalibrationSource;
  /** Windows per forward pass in calibration (default ⌈4096 / L⌉ tokens' worth, at least 1). */
  microBatch?: number;
  /**
   * Calibrate a block's linears group by group in the order of {@link SEQUENTIAL_GROUPS}, each on
   * the outputs of the groups already quantized (default true); false calibrates the whole block on
   * full-precision inputs in one pass. Only calibrating plugins are affected.
   */
  trueSequential?: boolean;
  /** Compute each layer's relative reconstruction error (default true). */
  measureError?: boolean;
  onProgress?(event: QuantizeProgressEvent): void;
  /** Plugin-specific options. */
  [key: string]: unknown;
}

/** What happened to one layer. */
export interface QuantizedLayerReport {
  /** Hugging Face module name, e.g. `model.layers.3.mlp.down_proj` or `lm_head`. */
  name: string;
  block: number | null;
  layer: LinearName | "lm_head";
  bits: number;
  /** True storage cost, metadata included. */
  bitsPerWeight: number;
  /** Seconds spent in `plugin.quantize` (and the error measurement). */
  seconds: number;
  /** ‖W − Ŵ‖_F / ‖W‖_F (unless `measureError: false`). */
  error?: number;
  /**
   * With a Hessian (calibrated plugins): the layer's output error on the calibration inputs,
   * ‖XŴᵀ − XWᵀ‖_F / ‖XWᵀ‖_F = sqrt(tr(ΔHΔᵀ) / tr(WHWᵀ)) with Δ = Ŵ − W and H = XᵀX.
   */
  outputError?: number;
  /** Calibration rows (tokens) behind the statistics, for calibrated plugins. */
  samples?: number;
}

/** What {@link quantizeModel} returns. */
export interface QuantizeModelResult {
  report: QuantizedLayerReport[];
  /** Wall time of the whole call. */
  seconds: number;
  /** Of which in calibration forward passes and statistics. */
  calibrationSeconds: number;
  /** Of which in accumulating the statistics (the Hessians' xᵀx GEMMs, or the activation sums). */
  statisticsSeconds: number;
  /** Bits per weight over all quantized layers together. */
  bitsPerWeight: number;
}

const DRIVER_KEYS = new Set(["targets", "includeLmHead", "calibration", "microBatch", "trueSequential", "measureError", "onProgress"]);

/**
 * Checks the options of {@link quantizeModel} that do not need the model (an object, `bits` the
 * plugin supports, known `targets`) and returns the targets (default all seven linears) and the
 * plugin's options: `bits`, `groupSize` (default: the plugin's `defaultGroupSize`, else 128) and every key the driver does not know.
 */
export function checkQuantizeModelOptions(plugin: QuantizerPlugin, options: QuantizeModelOptions): { names: readonly LinearName[]; pluginOptions: QuantizeOptions } {
  if (!options || typeof options !== "object") throw new TypeError("quantizeModel: options must be an object with at least bits");
  if (!plugin.supportedBits.includes(options.bits)) {
    throw new RangeError(`quantizeModel: quantizer '${plugin.name}' does not support bits = ${JSON.stringify(options.bits)}; it supports ${plugin.supportedBits.join(", ")}`);
  }
  const names = options.targets ?? LINEAR_NAMES;
  for (const n of names) {
    if (!(LINEAR_NAMES as readonly string[]).includes(n)) throw new RangeError(`quantizeModel: unknown target '${n}'; targets are ${LINEAR_NAMES.join(", ")}`);
  }
  const pluginOptions: QuantizeOptions = { bits: options.bits, groupSize: groupSizeFor(plugin, options.groupSize) };
  for (const [k, v] of Object.entries(options)) if (!DRIVER_KEYS.has(k) && k !== "groupSize" && v !== undefined) pluginOptions[k] = v;
  return { names, pluginOptions };
}
