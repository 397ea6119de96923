/**
 * Loading a PEFT LoRA adapter directory onto a model ({@link loadAdapter}): the tensors of
 * `adapter_model.safetensors` are checked against the model and the config (names, coverage of
 * modules and layers, shapes, ranks), the base identity and quantization against `modulora.json`
 * when present, and every problem is reported at once in one {@link AdapterError}.
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { assign, cast, noGrad, SafetensorsReader, tensorFrom, tidy, type SafetensorsEntry, type Tensor } from "@modulora/tensor";
import { nonFiniteProblem, readHostArray } from "../checkpoint.js";
import { readJsonFile } from "../config.js";
import type { LlamaModel } from "../model.js";
import { LINEAR_MODULE, LINEAR_NAMES, type LinearName } from "../types.js";
import { install, loraModuleName, type Adapter } from "./attach.js";
import { LORA_DISPATCHERS, type LoRADispatcher } from "./lora-layer.js";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, compareFingerprint, compareQuantization, MODULORA_ADAPTER_FILE, readModuloraJson } from "./metadata.js";
import { parsePeftConfig, type ParsedPeftConfig } from "./peft-config.js";

/** An adapter that cannot be applied to a model; every problem found is listed. */
export class AdapterError extends Error {
  readonly dir: string;
  readonly problems: string[];

  constructor(dir: string, problems: string[], cause?: unknown) {
    const shown = problems.slice(0, 40);
    const more = problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : "";
    super(`adapter ${dir}: ${problems.length === 1 ? "1 problem" : `${problems.length} problems`}:\n  ${shown.join("\n  ")}${more}`, cause !== undefined ? { cause } : undefined);
    this.name = "AdapterError";
    this.dir = dir;
    this.problems = problems;
  }
}

/** Options of {@link loadAdapter}. */
export interface LoadAdapterOptions {
  /**
   * Default true: a base-model identity in modulora.json that differs from the model's is an
   * error. With false it becomes a warning (`adapter.warnings`). Shapes, names and ranks must
   * match either way: an adapter that does not fit cannot be attached.
   */
  strict?: boolean;
  dispatchers?: readonly LoRADispatcher[];
}

/** "0–3" / "5" / "1, 4, 6" */
function rangeText(xs: number[]): string {
  if (xs.length > 1 && xs.every((x, i) => i === 0 || x === xs[i - 1]! + 1)) return `${xs[0]}–${xs[xs.length - 1]}`;
  return xs.join(", ");
}

const KEY = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.([A-Za-z0-9_]+)\.lora_([AB])\.weight$/;

/**
 * Checks every tensor of the adapter file against the model and the config: names, which
 * modules and layers are covered, shapes and ranks. Returns the entries to load by (block, name).
 */
function checkTensors(model: LlamaModel, entries: readonly SafetensorsEntry[], parsed: ParsedPeftConfig, problems: string[]): Map<string, { block: number; name: LinearName; a: string; b: string }> {
  const numLayers = model.layers.length;
  const { config, targets, exclude } = parsed;
  const found = new Map<string, { block: number; name: LinearName; a?: SafetensorsEntry; b?: SafetensorsEntry }>();
  const outOfRange = new Set<number>();
  const blocksSeen = new Set<number>();
  for (const e of entries) {
    const m = KEY.exec(e.name);
    if (!m) {
      const why = /lora_magnitude_vector/.test(e.name) ? "a DoRA magnitude vector (DoRA is not supported)"
        : /lora_embedding_[AB]/.test(e.name) ? "LoRA on an embedding (not supported)"
        : "not a LoRA factor of a block linear (keys are base_model.model.model.layers.{i}.{self_attn|mlp}.{name}.lora_{A|B}.weight)";
      problems.push(`tensor ${e.name}: ${why}`);
      continue;
    }
    const block = Number(m[1]);
    const [, , module, rawName, factor] = m as unknown as [string, string, string, string, "A" | "B"];
    blocksSeen.add(block);
    if (block >= numLayers) {
      outOfRange.add(block);
      continue;
    }
    const path = `model.layers.${block}.${module}.${rawName}`;
    if (!(LINEAR_NAMES as readonly string[]).includes(rawName) || LINEAR_MODULE[rawName as LinearName] !== module) {
      problems.push(`tensor ${e.name}: ${path} is not a linear of a LLaMA block (${LINEAR_NAMES.map((n) => `${LINEAR_MODULE[n]}.${n}`).join(", ")})`);
      continue;
    }
    const name = rawName as LinearName;
    if (!targets(path) || exclude?.(path)) {
      problems.push(`tensor ${e.name}: ${path} is not one of the adapter's target_modules`);
      continue;
    }
    if (config.layers && !config.layers.includes(block)) {
      problems.push(`tensor ${e.name}: block ${block} is not in layers_to_transform [${config.layers.join(", ")}]`);
      continue;
    }
    const slot = found.get(path) ?? { block, name };
    if (factor === "A") slot.a = e;
    else slot.b = e;
    found.set(path, slot);
  }
  if (outOfRange.size) {
    const seen = [...blocksSeen].sort((a, b) => a - b);
    problems.unshift(`layer count: the adapter has tensors for blocks ${rangeText(seen)} (${seen.length} layers), the model has ${numLayers}; blocks ${rangeText([...outOfRange].sort((a, b) => a - b))} do not exist`);
  }
  // Coverage: every targeted linear of every targeted block has both factors.
  const blocks = config.layers ?? model.layers.map((_, i) => i);
  const empty: number[] = [];
  const missing: string[] = [];
  for (const block of blocks) {
    const expected = LINEAR_NAMES.filter((n) => targets(loraModuleName(block, n)) && !exclude?.(loraModuleName(block, n)));
    const slots = expected.map((n) => found.get(loraModuleName(block, n)));
    if (expected.length && slots.every((x) => !x)) {
      empty.push(block);
      continue;
    }
    const ms = expected.flatMap((n, i) => (!slots[i] ? [n] : [!slots[i]!.a ? `${n}.lora_A` : "", !slots[i]!.b ? `${n}.lora_B` : ""].filter(Boolean)));
    if (ms.length) missing.push(`missing tensors in block ${block}: ${ms.join(", ")}`);
  }
  if (empty.length === blocks.length) problems.push(`no LoRA tensors for the targeted modules in any block (target_modules ${JSON.stringify(parsed.spec)})`);
  else if (empty.length && !config.layers && !outOfRange.size) {
    const have = blocks.filter((b) => !empty.includes(b));
    problems.unshift(`layer count: the adapter has tensors for ${have.length} layers (${rangeText(have)}), the model has ${numLayers}; blocks ${rangeText(empty)} have none`);
  } else if (empty.length) missing.push(`blocks ${rangeText(empty)} have no tensors`);
  problems.push(...missing);
  // Shapes and ranks.
  const out = new Map<string, { block: number; name: LinearName; a: string; b: string }>();
  for (const [path, slot] of found) {
    if (!slot.a || !slot.b) continue;
    const base = model.layers[slot.block]!.linears[slot.name];
    const wantA = [config.r, base.inFeatures];
    const wantB = [base.outFeatures, config.r];
    let ok = true;
    for (const [e, want, f] of [[slot.a, wantA, "A"], [slot.b, wantB, "B"]] as const) {
      if (e.shape.length !== 2 || e.shape[0] !== want[0] || e.shape[1] !== want[1]) {
        const rankHint = e.shape.length === 2 && (f === "A" ? e.shape[0] : e.shape[1]) !== config.r ? ` (r is ${config.r} in ${ADAPTER_CONFIG_FILE})` : "";
        problems.push(`${path}.lora_${f} is [${e.shape.join(", ")}], the model needs [${want.join(", ")}]${rankHint}`);
        ok = false;
      }
      if (!["f32", "f16", "bf16", "f64"].includes(e.dtype)) {
        problems.push(`${path}.lora_${f} has dtype ${e.dtype}; LoRA factors are floating point`);
        ok = false;
      }
    }
    if (ok) out.set(path, { block: slot.block, name: slot.name, a: slot.a.name, b: slot.b.name });
  }
  return out;
}

/**
 * Loads a PEFT LoRA adapter directory (ours, or one PEFT wrote) and attaches it to the model.
 * Everything is checked before anything is attached — the config (PEFT options this toolkit
 * does not implement are refused, by name), the tensors against the model (layer count, module
 * names, shapes, r), and the base identity in modulora.json when present — and every problem
 * is reported in one {@link AdapterError}. Scaling follows the config: `lora_alpha / r`, or
 * `lora_alpha / √r` with `use_rslora`.
 */
export function loadAdapter(model: LlamaModel, dir: string, options: LoadAdapterOptions = {}): Adapter {
  const strict = options.strict ?? true;
  const root = resolve(dir);
  const fail = (problems: string[], cause?: unknown) => new AdapterError(root, problems, cause);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw fail(["the directory does not exist"]);
  const configPath = join(root, ADAPTER_CONFIG_FILE);
  const weightsPath = join(root, ADAPTER_WEIGHTS_FILE);
  const problems: string[] = [];
  let json: unknown;
  try {
    json = readJsonFile(configPath, ADAPTER_CONFIG_FILE, (p) => new Error(`${ADAPTER_CONFIG_FILE}: ${p}`));
  } catch (err) {
    throw fail([err instanceof Error ? err.message : String(err)], err);
  }
  const parsed = parsePeftConfig(json, model.layers.length, problems);
  const warnings: string[] = [];
  const metadataPath = join(root, MODULORA_ADAPTER_FILE);
  const metadata = existsSync(metadataPath) ? readModuloraJson(metadataPath, problems) : null;
  if (metadata) {
    const diffs = compareFingerprint(metadata.base_model, model);
    if (strict) problems.push(...diffs);
    else warnings.push(...diffs);
  }
  if (!existsSync(weightsPath)) {
    const bin = existsSync(join(root, "adapter_model.bin"));
    problems.push(bin ? `${ADAPTER_WEIGHTS_FILE} is missing; adapter_model.bin (PyTorch pickle) is not read: re-save the adapter with safe_serialization=True` : `${ADAPTER_WEIGHTS_FILE} is missing`);
  }
  // Without a usable config or weights file the tensors cannot be checked; otherwise go on, so
  // that every problem (identity and tensors) is reported at once.
  if (!parsed || !existsSync(weightsPath)) throw fail(problems);

  let entries: readonly SafetensorsEntry[];
  try {
    const reader = SafetensorsReader.open(weightsPath);
    entries = reader.entries();
    reader.close();
  } catch (err) {
    throw fail([`${ADAPTER_WEIGHTS_FILE}: ${err instanceof Error ? err.message : String(err)}`], err);
  }
  const slots = checkTensors(model, entries, parsed, problems);
  if (problems.length) throw fail(problems);

  if (metadata) {
    const bases = [...slots.values()].map((s) => model.layers[s.block]!.linears[s.name]);
    const check = compareQuantization(metadata, bases);
    if (strict) problems.push(...check.problems);
    else warnings.push(...check.problems);
    warnings.push(...check.warnings);
    if (problems.length) throw fail(problems);
    parsed.config.seed = Number.isSafeInteger(metadata.seed) ? metadata.seed : 0;
  }
  parsed.config.targets = LINEAR_NAMES.filter((n) => [...slots.values()].some((s) => s.name === n));
  // The factors are read and checked for NaN/Inf on the host, from the file's bytes, then copied
  // onto the model's device: one transfer per factor.
  const tensors = new Map<string, Tensor>();
  const reader = SafetensorsReader.open(weightsPath);
  try {
    for (const name of [...slots.values()].flatMap((s) => [s.a, s.b])) {
      const e = reader.entry(name);
      const host = readHostArray(reader, e);
      const bad = nonFiniteProblem(name, new Uint8Array(host.buffer, host.byteOffset, host.byteLength), e.dtype, e.shape);
      if (bad) throw new AdapterError(root, [`${ADAPTER_WEIGHTS_FILE}: ${bad}`]);
      tensors.set(name, tensorFrom(host, { shape: e.shape, dtype: e.dtype, device: model.device }));
    }
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  } finally {
    reader.close();
  }
  try {
    const pairs = [...slots.values()].sort((x, y) => x.block - y.block || LINEAR_NAMES.indexOf(x.name) - LINEAR_NAMES.indexOf(y.name));
    return install(model, parsed.config, pairs, options.dispatchers ?? LORA_DISPATCHERS, (block, name, layer) => {
      const s = slots.get(loraModuleName(block, name))!;
      noGrad(() => {
        for (const [dst, src] of [[layer.loraA, tensors.get(s.a)!], [layer.loraB, tensors.get(s.b)!]] as const) {
          if (src.dtype === "f32") assign(dst, src);
          else tidy(() => assign(dst, cast(src, "f32")));
        }
      });
    }, metadata, warnings);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
