/**
 * PEFT's `adapter_config.json`: writing it for an adapter ({@link peftAdapterConfig}), and reading
 * and validating one (ours, or one PEFT wrote). PEFT options this toolkit does not implement are
 * refused by name; `target_modules` and `exclude_modules` become module-name selectors.
 * @module
 */
import { moduleSelector, ModulePatternError } from "../module-pattern.js";
import type { LoRAConfig } from "./attach.js";
import { ADAPTER_CONFIG_FILE } from "./metadata.js";

function sortedObject(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}

/** adapter_config.json for an adapter (PEFT's LoraConfig fields; keys sorted as PEFT writes them). */
export function peftAdapterConfig(config: LoRAConfig, baseModelNameOrPath: string | null): Record<string, unknown> {
  return sortedObject({
    alpha_pattern: {},
    base_model_name_or_path: baseModelNameOrPath,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: config.layers,
    lora_alpha: config.alpha,
    lora_dropout: config.dropout,
    modules_to_save: null,
    peft_type: "LORA",
    r: config.r,
    rank_pattern: {},
    target_modules: [...config.targets],
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: config.rsLora,
  });
}

/** PEFT LoraConfig fields this loader refuses when set to anything but their default. */
const REFUSED: readonly { key: string; ok: (v: unknown) => boolean; why: string }[] = [
  { key: "use_dora", ok: (v) => v === false || v == null, why: "DoRA (weight-decomposed LoRA) is not supported" },
  { key: "bias", ok: (v) => v === "none" || v == null, why: 'trained biases are not supported; only bias "none"' },
  { key: "modules_to_save", ok: (v) => v == null || (Array.isArray(v) && v.length === 0), why: "fully trained extra modules (modules_to_save) are not supported" },
  { key: "fan_in_fan_out", ok: (v) => v === false || v == null, why: "fan_in_fan_out (Conv1D/GPT-2 weight layout) does not apply to LLaMA linears" },
  { key: "lora_bias", ok: (v) => v === false || v == null, why: "a bias on lora_B is not supported" },
  { key: "rank_pattern", ok: (v) => v == null || (typeof v === "object" && Object.keys(v).length === 0), why: "per-module ranks (rank_pattern) are not supported" },
  { key: "alpha_pattern", ok: (v) => v == null || (typeof v === "object" && Object.keys(v).length === 0), why: "per-module alphas (alpha_pattern) are not supported" },
  { key: "layer_replication", ok: (v) => v == null, why: "layer_replication is not supported" },
  { key: "use_qalora", ok: (v) => v === false || v == null, why: "QA-LoRA is not supported" },
  { key: "target_parameters", ok: (v) => v == null || (Array.isArray(v) && v.length === 0), why: "LoRA on parameters (target_parameters) is not supported" },
  { key: "trainable_token_indices", ok: (v) => v == null, why: "trainable token embeddings are not supported" },
];

/** Module-name selectors of PEFT (see module-pattern.ts: regexes run on a linear-time NFA, never on `RegExp`). */
type Selector = (path: string) => boolean;

/** An `adapter_config.json` that passed the checks: the adapter's config and its module selectors. */
export interface ParsedPeftConfig {
  config: LoRAConfig;
  /** target_modules as written. */
  spec: string | string[];
  targets: Selector;
  exclude: Selector | null;
}

/**
 * Checks an `adapter_config.json` (parsed JSON) and turns it into a {@link LoRAConfig} (targets
 * left empty: the loader sets them from the tensors it finds). Adds every problem found to
 * `problems`; null when the config is unusable.
 */
export function parsePeftConfig(json: unknown, numLayers: number, problems: string[]): ParsedPeftConfig | null {
  const f = ADAPTER_CONFIG_FILE;
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    problems.push(`${f} must hold a JSON object`);
    return null;
  }
  const c = json as Record<string, unknown>;
  const before = problems.length;
  if (c["peft_type"] !== "LORA") problems.push(`${f}: peft_type is ${JSON.stringify(c["peft_type"])}, this loader reads "LORA" adapters`);
  if (c["task_type"] != null && c["task_type"] !== "CAUSAL_LM") problems.push(`${f}: task_type is ${JSON.stringify(c["task_type"])}; only "CAUSAL_LM" adapters apply to a causal LM`);
  for (const { key, ok, why } of REFUSED) if (!ok(c[key])) problems.push(`${f}: ${key} = ${JSON.stringify(c[key])}: ${why}`);
  const r = c["r"];
  if (typeof r !== "number" || !Number.isInteger(r) || r < 1) problems.push(`${f}: r must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = c["lora_alpha"];
  if (typeof alpha !== "number" || !(alpha > 0) || !Number.isFinite(alpha)) problems.push(`${f}: lora_alpha must be a positive number, got ${JSON.stringify(alpha)}`);
  const dropout = c["lora_dropout"] ?? 0;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) problems.push(`${f}: lora_dropout must be a number in [0, 1), got ${JSON.stringify(dropout)}`);
  const rs = c["use_rslora"] ?? false;
  if (typeof rs !== "boolean") problems.push(`${f}: use_rslora must be true or false, got ${JSON.stringify(rs)}`);
  const isSpec = (v: unknown): v is string | string[] => typeof v === "string" || (Array.isArray(v) && v.length > 0 && v.every((t) => typeof t === "string"));
  const tm = c["target_modules"];
  if (!isSpec(tm)) problems.push(`${f}: target_modules must be a non-empty list of module names or a regex string, got ${JSON.stringify(tm)}`);
  const em = c["exclude_modules"];
  if (em != null && !isSpec(em)) problems.push(`${f}: exclude_modules must be a list of module names or a regex string, got ${JSON.stringify(em)}`);
  let layers: number[] | null = null;
  const lt = c["layers_to_transform"];
  if (lt != null) {
    const list = typeof lt === "number" ? [lt] : lt;
    if (!Array.isArray(list) || list.length === 0 || !list.every((l) => Number.isInteger(l) && l >= 0)) problems.push(`${f}: layers_to_transform must be a block index or a list of them, got ${JSON.stringify(lt)}`);
    else {
      layers = [...new Set(list as number[])].sort((a, b) => a - b);
      const out = layers.filter((l) => l >= numLayers);
      if (out.length) problems.push(`${f}: layers_to_transform names block(s) ${out.join(", ")}, the model has ${numLayers} (0–${numLayers - 1})`);
    }
  }
  let targets: Selector | null = null;
  let exclude: Selector | null = null;
  for (const [key, spec] of [["target_modules", tm], ["exclude_modules", em]] as const) {
    if (spec == null || !isSpec(spec)) continue;
    try {
      const sel = moduleSelector(spec);
      if (key === "target_modules") targets = sel;
      else exclude = sel;
    } catch (err) {
      const why = err instanceof ModulePatternError ? "the regex is outside the supported subset (literals, ., classes, groups, |, ? * + {m,n}, ^ $)" : "the regex is not valid";
      problems.push(`${f}: ${key}: ${why}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (problems.length > before || !targets) return null;
  // targets: the linears found in the file (set after the tensors are checked).
  const config: LoRAConfig = { r: r as number, alpha: alpha as number, dropout: dropout as number, targets: [], rsLora: rs as boolean, seed: 0, layers };
  return { config, spec: tm as string | string[], targets, exclude };
}
