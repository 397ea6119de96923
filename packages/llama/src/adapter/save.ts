/**
 * Writing an adapter as a PEFT directory ({@link saveAdapter}): `adapter_config.json`,
 * `adapter_model.safetensors` with keys
 * `base_model.model.model.layers.{i}.{self_attn|mlp}.{name}.lora_A.weight` (f32 [r, in]) and
 * `….lora_B.weight` (f32 [out, r]), and `modulora.json`, all renamed into place at once.
 * @module
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { saveSafetensors, type Tensor } from "@modulora/tensor";
import type { Adapter, LoRAConfig } from "./attach.js";
import { adapterQuantizationOf, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, baseModelFingerprint, MODULORA_ADAPTER_FILE, MODULORA_ADAPTER_VERSION, type ModuloraAdapterMetadata } from "./metadata.js";
import { peftAdapterConfig } from "./peft-config.js";

/** modulora.json fields given by the caller; known ones are written in snake_case. */
export interface AdapterExtra {
  /** Name of the quantizer plugin that made the base (bits, group size and format are read from the model). */
  quantizer?: string;
  taskFormat?: string;
  promptTemplate?: string;
  labels?: string[];
  /** Anything else, written as given. */
  [key: string]: unknown;
}

/** Options of {@link saveAdapter}. */
export interface SaveAdapterOptions {
  /** PEFT's `base_model_name_or_path` (a hub id or a path); null if unknown. */
  baseModelNameOrPath: string | null;
  extra?: AdapterExtra;
  /** Replace an existing non-empty directory (default false: refuse). */
  overwrite?: boolean;
}

const EXTRA_KEYS: Record<string, string> = { taskFormat: "task_format", promptTemplate: "prompt_template", labels: "labels" };

/**
 * Writes the adapter as a PEFT directory (`adapter_config.json`, `adapter_model.safetensors`)
 * plus `modulora.json`. The files go into a temporary sibling directory that is renamed into
 * place, so `dir` never holds a half-written adapter; an existing non-empty `dir` is refused
 * unless `overwrite`. Returns the directory and the files written.
 */
export function saveAdapter(adapter: Adapter, dir: string, options: SaveAdapterOptions): { dir: string; files: string[] } {
  if (!options || options.baseModelNameOrPath === undefined) throw new TypeError("saveAdapter: options.baseModelNameOrPath is required (a hub id or a path, or null)");
  const model = adapter.attachedModel;
  const target = resolve(dir);
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new Error(`saveAdapter: ${target} exists and is not a directory`);
    if (readdirSync(target).length > 0 && !options.overwrite) throw new Error(`saveAdapter: ${target} exists and is not empty; pass overwrite: true to replace it`);
  }
  const { quantizer, ...rest } = options.extra ?? {};
  if (quantizer !== undefined && typeof quantizer !== "string") throw new TypeError(`saveAdapter: extra.quantizer must be a string, got ${JSON.stringify(quantizer)}`);
  const extra = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined).map(([k, v]) => [EXTRA_KEYS[k] ?? k, v]));
  const metadata: ModuloraAdapterMetadata = {
    modulora_adapter_version: MODULORA_ADAPTER_VERSION,
    base_model: baseModelFingerprint(model.config),
    quantization: (() => {
      try {
        return adapterQuantizationOf([...adapter.layers.values()].map((l) => l.base), quantizer ?? null);
      } catch (err) {
        throw new Error(`saveAdapter: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    })(),
    seed: adapter.config.seed,
    ...extra,
  };
  const tensors = new Map<string, Tensor>();
  for (const [name, layer] of [...adapter.layers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    tensors.set(`base_model.model.${name}.lora_A.weight`, layer.loraA);
    tensors.set(`base_model.model.${name}.lora_B.weight`, layer.loraB);
  }
  const tmp = `${target}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  const old = `${target}.old-${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    mkdirSync(tmp, { recursive: true });
    writeFileSync(join(tmp, ADAPTER_CONFIG_FILE), `${JSON.stringify(peftAdapterConfig(adapter.config as LoRAConfig, options.baseModelNameOrPath), null, 2)}\n`);
    saveSafetensors(join(tmp, ADAPTER_WEIGHTS_FILE), tensors, { format: "pt" });
    writeFileSync(join(tmp, MODULORA_ADAPTER_FILE), `${JSON.stringify(metadata, null, 2)}\n`);
    // An existing directory moves aside first and is removed once the new one is in place.
    if (existsSync(target)) renameSync(target, old);
    renameSync(tmp, target);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(old) && !existsSync(target)) renameSync(old, target);
    throw new Error(`saveAdapter: cannot write ${target}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  rmSync(old, { recursive: true, force: true });
  return { dir: target, files: [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, MODULORA_ADAPTER_FILE] };
}
