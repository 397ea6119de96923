// The `quantization_config` of a quantized checkpoint: written into config.json and as
// quantize_config.json (as transformers and GPTQ tools read them), and read back.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { gptqCheckpointFormat, type GptqCheckpointSettings, type QuantizedWeight, type QuantizerPlugin, type QuantizeOptions } from "@modulora/core";
import { readJsonFile } from "../config.js";
import type { LlamaModel } from "../model.js";
import { linearModuleName } from "../quantize.js";
import { LINEAR_MODULE, LINEAR_NAMES, type LlamaConfig } from "../types.js";

/** Files of a quantized checkpoint besides the tokenizer's. */
export const QUANTIZE_CONFIG_FILE = "quantize_config.json";

/** A quantized checkpoint that cannot be read: the message names the directory and the tensor or key. */
export class QuantizedCheckpointError extends Error {
  constructor(readonly dir: string, problem: string) {
    super(`quantized checkpoint ${dir}: ${problem}`);
    this.name = "QuantizedCheckpointError";
  }
}

/** The `quantization_config` block (also written as quantize_config.json). */
export function quantizationConfig(
  model: LlamaModel, layers: Map<string, QuantizedWeight>, gptq: GptqCheckpointSettings | null,
  plugin: QuantizerPlugin | undefined, quantizer: string | null, options: Partial<QuantizeOptions> | undefined,
): Record<string, unknown> {
  const provenance = { quantizer: [`modulora-ts:${quantizer ?? "unknown"}`], options: options ?? null };
  // Which linears of a block are quantized (transformers' `modules_in_block_to_quantize`), when not all.
  const inBlock = LINEAR_NAMES.filter((n) => model.layers.every((_, i) => layers.has(linearModuleName(i, n))));
  const partial = inBlock.length < LINEAR_NAMES.length ? { modules_in_block_to_quantize: [inBlock.map((n) => `${LINEAR_MODULE[n]}.${n}`)] } : {};
  if (gptq) {
    return {
      quant_method: "gptq", bits: gptq.bits, group_size: gptq.groupSize, desc_act: gptq.actOrder, sym: gptq.symmetric,
      // quantizeModel calibrates true-sequentially unless told otherwise.
      true_sequential: plugin !== undefined && plugin.calibration !== "none" && options?.["trueSequential"] !== false,
      static_groups: options?.["staticGroups"] === true, ...(typeof options?.["percdamp"] === "number" ? { damp_percent: options["percdamp"] } : {}),
      lm_head: layers.has("lm_head"),
      checkpoint_format: gptqCheckpointFormat(gptq.zeroFormat), ...partial, meta: provenance,
    };
  }
  const ws = [...layers.values()];
  return {
    quant_method: "modulora", formats: [...new Set(ws.map((w) => w.format))].sort(), bits: [...new Set(ws.map((w) => w.bits))].sort(),
    plugin: quantizer, lm_head: layers.has("lm_head"), ...partial, meta: provenance,
  };
}

/** The quantization settings of a directory: config.json's `quantization_config`, else quantize_config.json. */
export function readQuantizationConfig(dir: string, config: LlamaConfig): Record<string, unknown> {
  let qc = config.raw["quantization_config"];
  if (qc === undefined || qc === null) {
    const path = join(dir, QUANTIZE_CONFIG_FILE);
    if (!existsSync(path)) throw new QuantizedCheckpointError(dir, `config.json has no quantization_config and there is no ${QUANTIZE_CONFIG_FILE}: not a quantized checkpoint (load it with loadLlama)`);
    qc = readJsonFile(path, QUANTIZE_CONFIG_FILE);
  }
  if (typeof qc !== "object" || qc === null || Array.isArray(qc)) throw new QuantizedCheckpointError(dir, "quantization_config must be an object");
  const q = qc as Record<string, unknown>;
  // AutoGPTQ's quantize_config.json predates quant_method; its keys say GPTQ.
  const method = q["quant_method"] ?? (typeof q["bits"] === "number" && "group_size" in q ? "gptq" : undefined);
  if (method !== "gptq" && method !== "modulora") {
    throw new QuantizedCheckpointError(dir, `unknown quant_method ${JSON.stringify(method)} in quantization_config; this loader reads "gptq" and "modulora"`);
  }
  return { ...q, quant_method: method };
}

/**
 * The quantizer named by a quantization_config: `plugin` (quant_method "modulora"), else the
 * provenance `meta.quantizer` (`["modulora-ts:rtn"]` → `rtn`; another tool's entry, e.g.
 * `auto_gptq:0.7.1`, as written), else null.
 */
export function recordedQuantizer(qc: Record<string, unknown>): string | null {
  if (typeof qc["plugin"] === "string" && qc["plugin"]) return qc["plugin"];
  const meta = qc["meta"] as { quantizer?: unknown } | null | undefined;
  const q = Array.isArray(meta?.quantizer) ? meta!.quantizer[0] : meta?.quantizer;
  if (typeof q !== "string" || !q) return null;
  const name = q.replace(/^modulora-ts:/, "");
  return name === "unknown" ? null : name;
}
