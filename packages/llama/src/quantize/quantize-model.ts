/**
 * {@link quantizeModel}: the per-layer quantization loop and its report. Every targeted
 * `DenseLinear` is replaced by a `QuantizedLinear` holding `plugin.quantize(W, options, stats)`;
 * its dense weight is freed as soon as it is replaced. Plugins without calibration quantize the
 * layers in order; the others go through the calibration driver (`calibrate.ts`).
 * @module
 */
import { cast, keep } from "@modulora/tensor";
import { resolveQuantizer, type CalibrationStats, type QuantizedWeight, type QuantizerPlugin } from "@modulora/core";
import { DenseLinear, QuantizedLinear } from "../linear.js";
import type { LlamaModel } from "../model.js";
import type { LinearName } from "../types.js";
import { calibrateAndQuantize } from "./calibrate.js";
import { checkQuantizeModelOptions, type QuantizedLayerReport, type QuantizeModelOptions, type QuantizeModelResult } from "./options.js";
import { materializeOn, outputErrorOf, weightErrorOf } from "./reconstruction-error.js";
import { disposeStats } from "./statistics.js";
import { stagesOf, type Target } from "./targets.js";

/**
 * Quantizes the model's linear layers in place with `plugin` (an object or a registered name).
 * Embeddings and norms stay in full precision, and lm_head unless `includeLmHead`. Returns a
 * per-layer report. Plugins with `calibration` other than `"none"` need `options.calibration`.
 */
export async function quantizeModel(model: LlamaModel, pluginOrName: QuantizerPlugin | string, options: QuantizeModelOptions): Promise<QuantizeModelResult> {
  const t0 = performance.now();
  const plugin = resolveQuantizer(pluginOrName);
  const { names, pluginOptions } = checkQuantizeModelOptions(plugin, options);
  const stages = stagesOf(model, names, options.includeLmHead === true);
  const all = stages.flatMap((s) => s.targets);
  if (all.length === 0) throw new RangeError("quantizeModel: nothing to quantize (targets is empty and includeLmHead is not set)");
  for (const t of all) {
    const l = t.get();
    if (!(l instanceof DenseLinear)) throw new Error(`quantizeModel: ${t.name} is a ${l.kind} layer, not a dense one; quantize a full-precision model`);
  }
  const total = all.length;
  const report: QuantizedLayerReport[] = [];
  const measure = options.measureError !== false;

  const quantizeOne = async (t: Target, stats?: CalibrationStats): Promise<void> => {
    const dense = t.get() as DenseLinear;
    const s0 = performance.now();
    let weight = dense.weight;
    if (weight.dtype !== "f32" || !weight.isContiguous) weight = keep(cast(weight, "f32"));
    let q: QuantizedWeight;
    let error: number | undefined;
    let outErr: number | undefined;
    try {
      // Measured before quantize: a plugin may work on the statistics in place.
      const hCopy = measure && stats?.hessian ? keep(stats.hessian.clone()) : null;
      try {
        try {
          q = await plugin.quantize(weight, pluginOptions, stats);
        } catch (err) {
          // Name the layer: the plugin only saw a matrix.
          const Kind = err instanceof RangeError ? RangeError : err instanceof TypeError ? TypeError : Error;
          throw new Kind(`${t.name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        if (q.outFeatures !== dense.outFeatures || q.inFeatures !== dense.inFeatures) {
          q.dispose();
          throw new Error(`quantizer '${plugin.name}' returned a [${q.outFeatures}, ${q.inFeatures}] weight for ${t.name} [${dense.outFeatures}, ${dense.inFeatures}]`);
        }
        if (measure) {
          // Ŵ once on the device for both measures; two (four with H) numbers come back.
          const hat = keep(materializeOn(q, weight.device));
          try {
            if (hCopy) outErr = outputErrorOf(weight, hat, hCopy);
            error = weightErrorOf(weight, hat);
          } finally {
            hat.dispose();
          }
        }
      } finally {
        hCopy?.dispose();
      }
    } finally {
      if (weight !== dense.weight) weight.dispose();
      disposeStats(stats);
    }
    t.set(new QuantizedLinear(q, plugin.name));
    dense.dispose();
    report.push({
      name: t.name, block: t.block, layer: t.layer, bits: q.bits, bitsPerWeight: q.bitsPerWeight(),
      seconds: (performance.now() - s0) / 1000, ...(error !== undefined ? { error } : {}), ...(outErr !== undefined ? { outputError: outErr } : {}),
      ...(stats ? { samples: stats.samples } : {}),
    });
    options.onProgress?.({ stage: "quantize", block: t.block, layer: t.layer, done: report.length, total });
  };

  let calibrationSeconds = 0;
  let statisticsSeconds = 0;
  if (plugin.calibration === "none") {
    for (const t of all) await quantizeOne(t);
  } else {
    if (!options.calibration) {
      throw new Error(`quantizeModel: quantizer '${plugin.name}' needs calibration data (${plugin.calibration}); pass calibration: { ids } or { text, tokenizer }`);
    }
    ({ seconds: calibrationSeconds, statisticsSeconds } = await calibrateAndQuantize(model, plugin.calibration, options, stages, quantizeOne));
  }
  const bytes = report.reduce((s, r) => s + (r.bitsPerWeight * weightsOf(model, r)) / 8, 0);
  const weights = report.reduce((s, r) => s + weightsOf(model, r), 0);
  return { report, seconds: (performance.now() - t0) / 1000, calibrationSeconds, statisticsSeconds, bitsPerWeight: weights ? (bytes * 8) / weights : 0 };
}

function weightsOf(model: LlamaModel, r: QuantizedLayerReport): number {
  const l = r.block === null ? model.lmHead : model.layers[r.block]!.linears[r.layer as LinearName];
  return l.inFeatures * l.outFeatures;
}
