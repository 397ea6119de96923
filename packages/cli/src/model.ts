// Loading what commands work on: a model directory (full precision or quantized), an adapter,
// and the device check.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { getBackend, registerSimBackend, resetSimStats, SafetensorsReader, simStats, type Device, type SimStats } from "@modulora/tensor";
import { getQuantizer, listQuantizers } from "@modulora/core";
import {
  baseModelFingerprint, checkCheckpointHeaders, checkpointShards, loadAdapter, SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, loadLlamaAsync, loadQuantizedModelAsync, parseLlamaConfig, quantizeModel, MODULORA_ADAPTER_FILE, QUANTIZE_CONFIG_FILE,
  contextLengthSource, describeAdapterQuantization, HubError, looksLikeModelId, resolveModel, type Adapter, type AdapterQuantization, type BaseModelFingerprint, type LlamaConfig, type LlamaModel, type LlamaTokenizer, type ModelDType,
} from "@modulora/llama";
import { CliError, oneLine, step, stepSync } from "./errors.js";
import { quantizerNamed } from "./plugins.js";
import type { Progress, ProgressBar } from "./progress.js";

/** The environment variable that lets the CLI accept `--device sim`. */
export const DEVICE_SIM_ENV = "MODULORA_DEVICE_SIM";

/**
 * `--device`: the CPU always works; `cuda` / `cuda:N` where the addon was built with CUDA and sees
 * a GPU, and otherwise an error with the reason (never a silent fallback to the CPU); `sim`, the
 * simulated device that counts every host↔device transfer, only where the environment has
 * MODULORA_DEVICE_SIM=1 (it is a test device: slower than `cpu`, same results). Accepting `sim`
 * registers its backend and zeroes its counters. Returns the device.
 */
export function checkDevice(device: string, env: NodeJS.ProcessEnv = process.env): Device {
  if (device === "cpu") return device;
  if (/^cuda(:(0|[1-9][0-9]*))?$/.test(device)) {
    try {
      getBackend(device);
    } catch (err) {
      const why = (err as Error).message.replace(/^device '[^']*' is not available: /, "");
      throw new CliError(`--device ${device}: the CUDA backend is not available here: ${why}`, "use --device cpu, or build @modulora/kernels with CUDA on a machine with an NVIDIA GPU (docs/gpu.md)");
    }
    return device;
  }
  if (device === "sim") {
    if (env[DEVICE_SIM_ENV] !== "1") {
      throw new CliError(
        "--device sim is the simulated test device (the CPU kernels on private storage, counting host↔device transfers) and is off by default",
        `set ${DEVICE_SIM_ENV}=1 in the environment to use it, or use --device cpu`,
      );
    }
    registerSimBackend();
    resetSimStats();
    return device;
  }
  throw new CliError(`--device ${device}: unknown device`, "use --device cpu, cuda, cuda:N or sim");
}

/** The transfers a run on `sim` made, in all and per optimizer step. */
export interface TransferReport {
  total: SimStats;
  /** The training loop alone (from the trainer's start to its last step), when there was one. */
  steps?: number;
  /** The most any one optimizer step took (batch in, loss and norm out, dropout, optimizer). */
  perStepMax?: { hostToDevice: number; deviceToHost: number; synchronizations: number };
}

/** Counts transfers on `sim` through a training run: call `start()` at the trainer's start and `step()` after each step. */
export class TransferCounter {
  private last: SimStats | null = null;
  private steps = 0;
  private max = { hostToDevice: 0, deviceToHost: 0, synchronizations: 0 };
  constructor(readonly device: Device) {}
  start(): void {
    if (this.device === "sim") this.last = simStats();
  }
  step(): void {
    if (this.device !== "sim" || !this.last) return;
    const now = simStats();
    this.max.hostToDevice = Math.max(this.max.hostToDevice, now.hostToDevice - this.last.hostToDevice);
    this.max.deviceToHost = Math.max(this.max.deviceToHost, now.deviceToHost - this.last.deviceToHost);
    this.max.synchronizations = Math.max(this.max.synchronizations, now.synchronizations - this.last.synchronizations);
    this.last = now;
    this.steps++;
  }
  /** The report, or null off `sim`. */
  report(): TransferReport | null {
    if (this.device !== "sim") return null;
    return { total: simStats(), ...(this.steps ? { steps: this.steps, perStepMax: { ...this.max } } : {}) };
  }
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;

/** The line printed at the end of a run on `sim`. */
export function formatTransfers(r: TransferReport): string {
  const t = r.total;
  const all = `sim transfers: ${t.hostToDevice} host→device (${mib(t.bytesToDevice)}), ${t.deviceToHost} device→host (${mib(t.bytesToHost)}), ${t.synchronizations} synchronizations`;
  if (!r.perStepMax) return `${all}\n`;
  const p = r.perStepMax;
  return `${all}; per optimizer step (at most, over ${r.steps} steps): ${p.hostToDevice} host→device, ${p.deviceToHost} device→host, ${p.synchronizations} synchronizations\n`;
}

/** How a checkpoint directory is quantized (from config.json or quantize_config.json). */
export interface QuantizationInfo {
  method: string;
  bits: number | number[] | null;
  groupSize: number | "row" | null;
  symmetric: boolean | null;
  actOrder: boolean | null;
  /** Calibrated true-sequentially (GPTQ's `true_sequential`), where the config says. */
  trueSequential?: boolean | null;
  quantizer: string | null;
}

function readJson(path: string, what: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new CliError(`${what} ${path} is not valid JSON: ${oneLine(err)}`, "restore the file from the original model");
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) throw new CliError(`${what} ${path} must hold a JSON object`, "restore the file from the original model");
  return json as Record<string, unknown>;
}

/** What `--revision` and `--download` ask of `--model`. */
export interface ModelSource {
  revision?: string;
  download?: boolean;
}

/**
 * `--model ORG/NAME` (a Hugging Face id; an existing path never is one): the snapshot directory in
 * the local Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)
 * at `--revision` (default main), after fetching what it lacks with `--download` (a byte progress
 * bar on stderr; HF_TOKEN, HF_ENDPOINT). A directory comes back as it is, for the usual preflight;
 * `--revision` or `--download` with a directory is refused.
 */
export async function resolveModelArg(model: string, source: ModelSource, progress: Progress, flag = "--model"): Promise<string> {
  // Flags that contradict each other, and a malformed id, are usage errors; the rest are not.
  const isPath = existsSync(model);
  for (const [given, name] of [[source.revision !== undefined, "--revision"], [source.download === true, "--download"]] as const) {
    if (given && (isPath || !looksLikeModelId(model))) {
      throw new CliError(`${name} is for a Hugging Face id ORG/NAME, and ${flag} ${model} is ${isPath ? "a path" : "not one"}`, `drop ${name}, or pass ${flag} an id such as TinyLlama/TinyLlama-1.1B-Chat-v1.0`, { usage: true });
    }
  }
  if (isPath || !looksLikeModelId(model)) return model;
  let bar: ProgressBar | null = null;
  let total = 0;
  try {
    const r = await resolveModel(model, {
      ...(source.revision !== undefined ? { revision: source.revision } : {}),
      download: source.download === true,
      onProgress: (p) => {
        if (!bar) bar = progress.bar("download", p.totalBytes, { unit: "bytes" });
        else if (p.totalBytes !== total) bar.setTotal(p.totalBytes);
        total = p.totalBytes;
        bar.update(p.bytes);
      },
    });
    (bar as ProgressBar | null)?.stop();
    const fetched = r.downloaded?.length ? `downloaded ${r.downloaded.length} file${r.downloaded.length > 1 ? "s" : ""} of ` : "";
    progress.log(`${flag} ${model}: ${fetched}${r.revision} (commit ${r.commit?.slice(0, 12)}) in the Hugging Face cache: ${r.dir}`);
    return r.dir;
  } catch (err) {
    (bar as ProgressBar | null)?.stop();
    if (err instanceof HubError) throw new CliError(err.what, err.todo, { cause: err, usage: err.code === "malformed-id" });
    throw err;
  }
}

/** config.json of a model directory (checked to exist). */
export function readModelConfig(dir: string, flag = "--model"): Record<string, unknown> {
  if (!existsSync(dir)) throw new CliError(`model directory ${dir} does not exist`, `pass ${flag} a Hugging Face model directory (config.json, model.safetensors, tokenizer.json)`);
  if (!statSync(dir).isDirectory()) throw new CliError(`${dir} is not a directory`, `pass ${flag} a Hugging Face model directory, not a file`);
  const path = join(dir, "config.json");
  if (!existsSync(path)) throw new CliError(`${dir} has no config.json`, `pass ${flag} a Hugging Face model directory (config.json, model.safetensors, tokenizer.json)`);
  return readJson(path, "model config");
}

/** The quantization of a directory, or null for a full-precision model. */
export function quantizationOf(dir: string, raw: Record<string, unknown>): QuantizationInfo | null {
  let qc = raw["quantization_config"] as Record<string, unknown> | undefined | null;
  if (!qc && existsSync(join(dir, QUANTIZE_CONFIG_FILE))) qc = readJson(join(dir, QUANTIZE_CONFIG_FILE), "quantize config");
  if (!qc || typeof qc !== "object") return null;
  const meta = qc["meta"] as { quantizer?: unknown; options?: Record<string, unknown> | null } | undefined;
  const q = Array.isArray(meta?.quantizer) ? String(meta!.quantizer[0]) : typeof meta?.quantizer === "string" ? meta.quantizer : null;
  const method = String(qc["quant_method"] ?? (typeof qc["bits"] === "number" ? "gptq" : "unknown"));
  const g = qc["group_size"];
  const opts = meta?.options ?? null;
  return {
    method,
    bits: typeof qc["bits"] === "number" || Array.isArray(qc["bits"]) ? (qc["bits"] as number | number[]) : typeof opts?.["bits"] === "number" ? (opts["bits"] as number) : null,
    groupSize: typeof g === "number" ? (g === -1 ? "row" : g) : opts?.["groupSize"] === "row" || typeof opts?.["groupSize"] === "number" ? (opts["groupSize"] as number | "row") : null,
    symmetric: typeof qc["sym"] === "boolean" ? qc["sym"] : typeof opts?.["symmetric"] === "boolean" ? (opts["symmetric"] as boolean) : null,
    actOrder: typeof qc["desc_act"] === "boolean" ? qc["desc_act"] : null,
    trueSequential: typeof qc["true_sequential"] === "boolean" ? qc["true_sequential"] : null,
    quantizer: typeof qc["plugin"] === "string" ? qc["plugin"] : q ? q.replace(/^modulora-ts:/, "") : null,
  };
}

/** What to do about a damaged file. */
export const DAMAGED = "the file is damaged or incomplete: copy or create it again";

/**
 * The safetensors files of a model directory: `model.safetensors`, or the shards its index names
 * ([] when there is neither). The loader's own `checkpointShards` lists them, so a shard name the
 * loader refuses (`../x.safetensors`, a missing shard) is refused here too, before anything opens.
 */
export function weightFiles(dir: string): string[] {
  if (!existsSync(join(dir, SAFETENSORS_FILE)) && !existsSync(join(dir, SAFETENSORS_INDEX_FILE))) return [];
  const { files } = stepSync(`model ${dir}`, DAMAGED, () => checkpointShards(dir));
  return files.map((f) => join(dir, f));
}

/** Opens a safetensors file's header (which also checks the file is as long as the header says). */
export function checkSafetensors(path: string): void {
  if (!existsSync(path)) throw new CliError(`${path} is missing`, DAMAGED);
  try {
    SafetensorsReader.open(path).close();
  } catch (err) {
    throw new CliError(oneLine(err), DAMAGED, { cause: err });
  }
}

/** A model directory checked before anything heavy is read: config, weight file headers, tokenizer. */
export interface ModelPreflight {
  dir: string;
  raw: Record<string, unknown>;
  config: LlamaConfig;
  quantization: QuantizationInfo | null;
}

/**
 * The cheap checks of a model directory, so that a bad --model fails at once with one line:
 * config.json parses as a LLaMA-family config, every weight file's header is sound and the file
 * is as long as its header says, and the tokenizer files exist.
 */
export function preflightModel(dir: string, flag = "--model"): ModelPreflight {
  const raw = readModelConfig(dir, flag);
  const config = stepSync(`${join(dir, "config.json")}`, "modulora reads LLaMA-family models (LlamaForCausalLM, MistralForCausalLM)", () => parseLlamaConfig(raw, join(dir, "config.json")));
  const files = weightFiles(dir);
  if (files.length === 0) throw new CliError(`${dir} has neither model.safetensors nor model.safetensors.index.json`, "convert the weights to safetensors (PyTorch .bin files are not read)");
  for (const f of files) checkSafetensors(f);
  // The config against the weight headers (layer count, names, shapes, dtypes) before anything is allocated.
  const quantized = quantizationOf(dir, raw) !== null;
  stepSync(`model ${dir}`, (err) => (/num_hidden_layers|shape|missing tensor|unexpected tensor/.test(oneLine(err)) ? "the config.json does not describe these weights: restore the config that came with them" : DAMAGED), () =>
    checkCheckpointHeaders(dir, config, { quantized }),
  );
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    if (!existsSync(join(dir, f))) throw new CliError(`${dir} has no ${f}`, "copy the tokenizer files of the original model into it");
  }
  return { dir, raw, config, quantization: quantizationOf(dir, raw) };
}

/**
 * Refuses, before the model loads, a sequence longer than the model's context
 * (`max_position_embeddings`, or a shorter Mistral `sliding_window`: full attention is only the
 * same up to it), naming the option to lower.
 */
export function checkContextLength(config: LlamaConfig, tokens: number, what: string, todo: string): void {
  if (tokens <= config.maxPositionEmbeddings) return;
  throw new CliError(`${what} is ${tokens} tokens, longer than the model's context of ${config.maxPositionEmbeddings} (${contextLengthSource(config)})`, todo);
}

/** A loaded model and what it is. */
export interface LoadedModel {
  model: LlamaModel;
  tokenizer: LlamaTokenizer;
  config: LlamaConfig;
  dir: string;
  quantization: QuantizationInfo | null;
}

/**
 * Loads a model directory onto `device` (default `cpu`; weights copied in tensor by tensor) in
 * compute dtype `dtype` (`--dtype`, default f32): a quantized checkpoint when it has a
 * quantization_config, else full precision.
 */
export async function loadModel(dir: string, progress: Progress, flag = "--model", checked?: ModelPreflight, device: Device = "cpu", dtype: ModelDType = "f32"): Promise<LoadedModel> {
  const { quantization } = checked ?? preflightModel(dir, flag);
  const todo = (err: unknown) =>
    /values are not finite/.test(oneLine(err)) ? "restore the weights from the original model (a NaN or infinite weight cannot give a valid result)"
      : /safetensors|truncat|header|corrupt|bytes/i.test(oneLine(err)) ? DAMAGED : `check that ${flag} is a LLaMA-family Hugging Face directory (modulora info ${dir} describes it)`;
  const t0 = performance.now();
  if (quantization) {
    progress.log(`loading quantized checkpoint ${dir} (${quantization.method}, ${describeBits(quantization)})`);
    // A custom-format checkpoint is read by the plugin that wrote it, when that plugin is registered (--plugin).
    const q = quantization.quantizer;
    const plugin = q && listQuantizers().includes(q) ? getQuantizer(q) : undefined;
    const r = await step(`cannot load quantized checkpoint ${dir}`, todo, () => loadQuantizedModelAsync(dir, { device, dtype, ...(plugin ? { plugin } : {}) }));
    if (!r.tokenizer) {
      r.model.dispose();
      throw new CliError(`${dir} has no tokenizer.json`, "copy the tokenizer files of the original model into it");
    }
    progress.log(`loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return { model: r.model, tokenizer: r.tokenizer, config: r.config, dir, quantization };
  }
  const bar = progress.bar("loading", 1, { unit: "tensors" });
  const r = await step(`cannot load model ${dir}`, todo, () =>
    loadLlamaAsync(dir, {
      device,
      dtype,
      onProgress: (done, total) => {
        if (done === 1) bar.setTotal(total);
        bar.update(done);
      },
    }),
  );
  bar.stop();
  return { model: r.model, tokenizer: r.tokenizer, config: r.config, dir, quantization: null };
}

export function describeBits(q: QuantizationInfo): string {
  const bits = Array.isArray(q.bits) ? q.bits.join("/") : q.bits ?? "?";
  return `${bits}-bit${q.groupSize !== null ? `, group ${q.groupSize}` : ""}${q.quantizer ? `, ${q.quantizer}` : ""}`;
}

/** modulora.json of an adapter directory (null when absent), after checking the directory and its weights file. */
export function readAdapterMetadata(dir: string): Record<string, unknown> | null {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CliError(`adapter directory ${dir} does not exist`, "pass --adapter the --out directory of modulora finetune (or a PEFT LoRA directory)");
  if (!existsSync(join(dir, "adapter_config.json"))) throw new CliError(`${dir} has no adapter_config.json`, "pass --adapter a LoRA adapter directory (the --out of modulora finetune)");
  checkSafetensors(join(dir, "adapter_model.safetensors"));
  const path = join(dir, MODULORA_ADAPTER_FILE);
  return existsSync(path) ? readJson(path, "adapter metadata") : null;
}

const ADAPTER_MISMATCH = "pass the --model the adapter was trained on (modulora info ADAPTER shows its base)";

/**
 * Before any weights load: the base identity in the adapter's modulora.json against the model's
 * config (loadAdapter checks it again, with the tensors).
 */
export function preflightAdapter(dir: string, model: ModelPreflight): Record<string, unknown> | null {
  const meta = readAdapterMetadata(dir);
  const saved = meta?.["base_model"] as BaseModelFingerprint | undefined;
  if (saved && typeof saved === "object") {
    const mine = baseModelFingerprint(model.config);
    const diffs = (Object.keys(mine) as (keyof BaseModelFingerprint)[]).filter((k) => saved[k] !== mine[k]);
    if (diffs.length) {
      const shown = diffs.filter((k) => k !== "config_sha256").map((k) => `${k} ${JSON.stringify(saved[k])} vs ${JSON.stringify(mine[k])}`);
      throw new CliError(`adapter ${dir} was trained on another base model than ${model.dir} (${shown.length ? shown.join(", ") : "config.json differs"})`, ADAPTER_MISMATCH);
    }
  }
  if (meta) checkAdapterQuantization(dir, meta, model);
  return meta;
}

/**
 * The base quantization recorded in modulora.json against --model's, before any weights load
 * (loadAdapter compares every detail again, layer by layer): a full-precision record on a
 * quantized model, a quantized record on a full-precision model (unless finetune quantized the
 * base on the fly, which attachAdapter repeats), and different bits or quantizers are refused,
 * naming both. A modulora.json without the record, or a PEFT adapter without modulora.json, is
 * not checked.
 */
export function checkAdapterQuantization(dir: string, meta: Record<string, unknown>, model: ModelPreflight): void {
  if (!("quantization" in meta)) return;
  const saved = meta["quantization"] as AdapterQuantization | null;
  const q = model.quantization;
  const fly = meta["quantized_on_the_fly"] !== undefined && meta["quantized_on_the_fly"] !== null;
  const adapterSide = describeAdapterQuantization(saved);
  const modelSide = q ? `quantized (${q.method}, ${describeBits(q)})` : "full precision";
  const fail = () => new CliError(`adapter ${dir} was trained on a base that is ${adapterSide}, but --model ${model.dir} is ${modelSide}`, ADAPTER_MISMATCH);
  if (saved === null) {
    if (q) throw fail();
    return;
  }
  if (!q) {
    if (!fly) throw fail();
    return;
  }
  // Bits only where both sides have one width (a mixed checkpoint, e.g. an 8-bit lm_head, may
  // list widths the adapter's layers do not have; loadAdapter compares those layer by layer).
  const one = (v: unknown) => (typeof v === "number" ? v : Array.isArray(v) && v.length === 1 && typeof v[0] === "number" ? (v[0] as number) : null);
  const [mine, theirs] = [one(q.bits), one(saved.bits)];
  if (mine !== null && theirs !== null && mine !== theirs) throw fail();
  const known = (name: string | null) => (name && name !== "unknown" ? name : null);
  if (known(q.quantizer) && known(saved.quantizer) && q.quantizer !== saved.quantizer) throw fail();
}

/** Settings with which finetune quantized a full-precision base on the fly (saved in modulora.json). */
export interface OnTheFlyQuantization {
  quantizer: string;
  bits: number;
  group_size: number | "row";
  /** The plugin's own options, as resolved when the adapter was trained (absent: none, or all defaults of older runs). */
  options?: Record<string, unknown>;
}

/**
 * Attaches the adapter in `dir` to the model. An adapter trained on a base that finetune
 * quantized on the fly is applied to the same quantization of a full-precision --model.
 */
export async function attachAdapter(loaded: LoadedModel, dir: string, progress: Progress): Promise<Adapter> {
  const meta = readAdapterMetadata(dir);
  const fly = meta?.["quantized_on_the_fly"] as OnTheFlyQuantization | undefined;
  if (fly && !loaded.quantization) {
    progress.log(`quantizing the base as the adapter was trained (${fly.quantizer}, ${fly.bits}-bit, group ${fly.group_size})`);
    const plugin = quantizerNamed(fly.quantizer, join(dir, MODULORA_ADAPTER_FILE)); // looked up, never imported
    await step("cannot quantize the base like the adapter's", "quantize it with modulora quantize and pass that directory as --model", () =>
      quantizeModel(loaded.model, plugin, { ...fly.options, bits: fly.bits, groupSize: fly.group_size, measureError: false }),
    );
    loaded.quantization = { method: "on-the-fly", bits: fly.bits, groupSize: fly.group_size, symmetric: null, actOrder: null, quantizer: fly.quantizer };
  }
  const adapter = await step(`adapter ${dir} does not fit model ${loaded.dir}`, ADAPTER_MISMATCH, () => loadAdapter(loaded.model, dir));
  for (const w of adapter.warnings) progress.log(`warning: ${w}`);
  return adapter;
}
