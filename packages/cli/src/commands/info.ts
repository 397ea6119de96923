// modulora info: what a model, quantized checkpoint, adapter directory or .safetensors file holds.
// Only headers and JSON files are read, so it is quick on any size of model.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsReader, type SafetensorsEntry } from "@modulora/tensor";
import { expectedTensorShapes, layerCountProblem, MODULORA_LAYERS_METADATA_KEY, parseLlamaConfig, QUANTIZATION_REPORT_FILE } from "@modulora/llama";
import { diskBytes, formatBytes } from "../atomic.js";
import { CliError, oneLine, usageError } from "../errors.js";
import type { CommandContext } from "../main.js";
import { quantizationOf, weightFiles } from "../model.js";

const damaged = "the file is damaged or incomplete: copy or create it again";

function readJson(path: string): Record<string, unknown> {
  try {
    const v = JSON.parse(readFileSync(path, "utf8")) as unknown;
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not a JSON object");
    return v as Record<string, unknown>;
  } catch (err) {
    throw new CliError(`${path}: ${oneLine(err)}`, damaged, { cause: err });
  }
}

/** Header entries and metadata of one safetensors file. */
function readHeader(path: string): { entries: readonly SafetensorsEntry[]; metadata: Record<string, string> } {
  let r: SafetensorsReader;
  try {
    r = SafetensorsReader.open(path);
  } catch (err) {
    throw new CliError(oneLine(err), damaged, { cause: err });
  }
  try {
    return { entries: r.entries(), metadata: { ...r.metadata } };
  } finally {
    r.close();
  }
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function dtypeSummary(entries: readonly SafetensorsEntry[]): Record<string, { tensors: number; bytes: number }> {
  const out: Record<string, { tensors: number; bytes: number }> = {};
  for (const e of entries) {
    const d = (out[e.dtype] ??= { tensors: 0, bytes: 0 });
    d.tensors++;
    d.bytes += e.end - e.begin;
  }
  return out;
}

function describeFile(path: string): Record<string, unknown> {
  const { entries, metadata } = readHeader(path);
  return {
    kind: "safetensors",
    path,
    tensors: entries.length,
    parameters: entries.reduce((s, e) => s + numel(e.shape), 0),
    dtypes: dtypeSummary(entries),
    metadata_keys: Object.keys(metadata),
    size_bytes: statSync(path).size,
    list: entries.map((e) => ({ name: e.name, dtype: e.dtype, shape: [...e.shape] })),
  };
}

function describeModel(dir: string): Record<string, unknown> {
  const raw = readJson(join(dir, "config.json"));
  let config;
  try {
    config = parseLlamaConfig(raw, join(dir, "config.json"));
  } catch (err) {
    throw new CliError(oneLine(err), "modulora reads LLaMA-family models (LlamaForCausalLM, MistralForCausalLM)", { cause: err });
  }
  const files = weightFiles(dir);
  const entries: SafetensorsEntry[] = [];
  let layerMeta: Record<string, unknown> = {};
  for (const f of files) {
    const h = readHeader(f);
    entries.push(...h.entries);
    if (h.metadata[MODULORA_LAYERS_METADATA_KEY]) layerMeta = JSON.parse(h.metadata[MODULORA_LAYERS_METADATA_KEY]) as Record<string, unknown>;
  }
  // (expectedTensorShapes grows with num_hidden_layers: a config claiming 10 000 000 layers is refused first.)
  const layers = layerCountProblem(config, entries.map((e) => e.name));
  if (layers) throw new CliError(`${dir}: ${layers}`, "restore the config.json that came with the weights");
  const shapes = expectedTensorShapes(config);
  const parameters = [...shapes.values()].reduce((s, sh) => s + numel(sh), 0);
  const q = quantizationOf(dir, raw);
  let quantization: Record<string, unknown> | null = null;
  if (q) {
    // Quantized layers: prefixes with GPTQ's qweight, or listed in the modulora metadata.
    const prefixes = new Set([...entries.filter((e) => e.name.endsWith(".qweight")).map((e) => e.name.slice(0, -".qweight".length)), ...Object.keys(layerMeta)]);
    let bytes = 0;
    let weights = 0;
    for (const p of prefixes) {
      const shape = shapes.get(`${p}.weight`) ?? (p === "lm_head" ? [config.vocabSize, config.hiddenSize] : null);
      if (!shape) continue;
      weights += numel(shape);
      for (const e of entries) if (e.name.startsWith(`${p}.`) && !e.name.slice(p.length + 1).includes(".")) bytes += e.end - e.begin;
    }
    quantization = {
      method: q.method, quantizer: q.quantizer, bits: q.bits, group_size: q.groupSize, symmetric: q.symmetric, act_order: q.actOrder,
      true_sequential: q.trueSequential ?? null, layers: prefixes.size, bits_per_weight_on_disk: weights ? (bytes * 8) / weights : null,
      report: reportSummary(dir),
    };
  }
  const tokCfg = existsSync(join(dir, "tokenizer_config.json")) ? readJson(join(dir, "tokenizer_config.json")) : null;
  return {
    kind: q ? "quantized checkpoint" : "model",
    path: dir,
    architecture: config.architecture,
    model_type: config.modelType,
    layers: config.numLayers,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    heads: config.numHeads,
    kv_heads: config.numKvHeads,
    head_dim: config.headDim,
    vocab_size: config.vocabSize,
    max_position_embeddings: config.maxPositionEmbeddings,
    tied_embeddings: config.tieWordEmbeddings,
    parameters,
    tensors: entries.length,
    files: files.map((f) => f.slice(dir.length + 1)),
    dtypes: dtypeSummary(entries),
    config_dtype: config.dtype,
    quantization,
    tokenizer: existsSync(join(dir, "tokenizer.json")) ? { chat_template: !!tokCfg?.["chat_template"] || existsSync(join(dir, "chat_template.jinja")) } : null,
    size_bytes: diskBytes(dir),
  };
}

function describeAdapter(dir: string): Record<string, unknown> {
  const cfg = readJson(join(dir, "adapter_config.json"));
  const weights = join(dir, "adapter_model.safetensors");
  const h = existsSync(weights) ? readHeader(weights) : null;
  const meta = existsSync(join(dir, "modulora.json")) ? readJson(join(dir, "modulora.json")) : null;
  const base = meta?.["base_model"] as Record<string, unknown> | undefined;
  const checkpoints = readdirSync(dir).filter((f) => /^checkpoint-\d+$/.test(f)).sort((x, y) => Number(x.slice(11)) - Number(y.slice(11)));
  return {
    kind: "adapter",
    path: dir,
    peft_type: cfg["peft_type"] ?? null,
    r: cfg["r"] ?? null,
    alpha: cfg["lora_alpha"] ?? null,
    dropout: cfg["lora_dropout"] ?? null,
    rslora: cfg["use_rslora"] ?? false,
    targets: cfg["target_modules"] ?? null,
    layers_to_transform: cfg["layers_to_transform"] ?? null,
    base_model_name_or_path: cfg["base_model_name_or_path"] ?? null,
    base_model: base ?? null,
    quantization: meta?.["quantization"] ?? null,
    task_format: meta?.["task_format"] ?? null,
    labels: meta?.["labels"] ?? null,
    seq_len: meta?.["seq_len"] ?? null,
    tensors: h?.entries.length ?? 0,
    parameters: h ? h.entries.reduce((s, e) => s + numel(e.shape), 0) : 0,
    dtypes: h ? dtypeSummary(h.entries) : {},
    checkpoints,
    size_bytes: diskBytes(dir),
  };
}

/** What PATH holds, as a JSON-able object. */
export function describePath(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new CliError(`${path} does not exist`, "pass a model, quantized checkpoint or adapter directory, or a .safetensors file");
  if (!statSync(path).isDirectory()) {
    if (!path.endsWith(".safetensors")) throw new CliError(`${path} is not a .safetensors file`, "pass a directory or a .safetensors file");
    return describeFile(path);
  }
  if (existsSync(join(path, "adapter_config.json"))) return describeAdapter(path);
  if (existsSync(join(path, "config.json"))) return describeModel(path);
  throw new CliError(`${path} holds neither config.json nor adapter_config.json`, "pass a model, quantized checkpoint or adapter directory, or a .safetensors file");
}

const n = (v: unknown) => (typeof v === "number" ? v.toLocaleString("en-US") : String(v));
const dt = (d: Record<string, { tensors: number; bytes: number }>) => Object.entries(d).map(([k, v]) => `${k} ×${v.tensors} (${formatBytes(v.bytes)})`).join(", ");

/**
 * `text` with control characters shown as escapes (`\x1b`, `\u202e`): C0, DEL, C1 and the bidi
 * controls. Names and values come from files (a tensor name can be any JSON string), and printed
 * raw they could move the cursor, recolour or rewrite the terminal, or reorder what is shown.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** Human-readable lines of a description (every value passed through {@link printable}). */
export function formatDescription(d: Record<string, unknown>): string {
  const lines: string[] = [printable(`${d["path"]}: ${d["kind"]}`)];
  const row = (k: string, v: unknown) => lines.push(`  ${k.padEnd(22)}${printable(String(v))}`);
  if (d["kind"] === "safetensors") {
    row("tensors", n(d["tensors"]));
    row("parameters", n(d["parameters"]));
    row("dtypes", dt(d["dtypes"] as never));
    if ((d["metadata_keys"] as string[]).length) row("metadata", (d["metadata_keys"] as string[]).join(", "));
    row("size", formatBytes(d["size_bytes"] as number));
    const list = d["list"] as { name: string; dtype: string; shape: number[] }[];
    for (const t of list.slice(0, 12)) lines.push(`    ${printable(t.name)}  ${printable(t.dtype)} [${t.shape.join(", ")}]`);
    if (list.length > 12) lines.push(`    … ${list.length - 12} more (--json lists all)`);
  } else if (d["kind"] === "adapter") {
    row("LoRA", `r ${d["r"]}, alpha ${d["alpha"]}, dropout ${d["dropout"]}${d["rslora"] ? ", rsLoRA" : ""}`);
    row("targets", Array.isArray(d["targets"]) ? (d["targets"] as string[]).join(", ") : String(d["targets"]));
    if (d["layers_to_transform"]) row("layers", (d["layers_to_transform"] as number[]).join(", "));
    row("parameters", `${n(d["parameters"])} in ${d["tensors"]} tensors (${dt(d["dtypes"] as never)})`);
    row("base (PEFT)", String(d["base_model_name_or_path"]));
    const b = d["base_model"] as Record<string, unknown> | null;
    if (b) row("base identity", `${b["architecture"]}, ${b["num_hidden_layers"]} layers, hidden ${b["hidden_size"]}, heads ${b["num_attention_heads"]}/${b["num_key_value_heads"]}, vocab ${b["vocab_size"]}, config sha256 ${String(b["config_sha256"]).slice(0, 12)}…`);
    const q = d["quantization"] as Record<string, unknown> | null;
    row("base quantization", q ? `${q["quantizer"] ?? "?"} ${q["format"]}, ${q["bits"]}-bit, group ${q["group_size"]}${q["symmetric"] ? ", symmetric" : ""} (${q["layers"]} layers)` : "none (full precision)");
    if (d["task_format"]) row("task", `${d["task_format"]}${d["labels"] ? ` (labels ${(d["labels"] as string[]).join(", ")})` : ""}${d["seq_len"] ? `, seq-len ${d["seq_len"]}` : ""}`);
    if ((d["checkpoints"] as string[]).length) row("checkpoints", (d["checkpoints"] as string[]).join(", "));
    row("size on disk", formatBytes(d["size_bytes"] as number));
  } else {
    row("architecture", `${d["architecture"]} (${d["model_type"]})`);
    row("layers", String(d["layers"]));
    row("hidden / MLP", `${d["hidden_size"]} / ${d["intermediate_size"]}`);
    row("heads / KV heads", `${d["heads"]} / ${d["kv_heads"]} (head dim ${d["head_dim"]})`);
    row("vocabulary", `${n(d["vocab_size"])}${d["tied_embeddings"] ? " (tied embeddings)" : ""}`);
    row("context", n(d["max_position_embeddings"]));
    row("parameters", n(d["parameters"]));
    row("tensors", `${d["tensors"]} in ${(d["files"] as string[]).join(", ") || "no weight file"}: ${dt(d["dtypes"] as never)}`);
    const q = d["quantization"] as Record<string, unknown> | null;
    if (q) {
      row("quantization", `${q["method"]}${q["quantizer"] ? ` (${q["quantizer"]})` : ""}, ${Array.isArray(q["bits"]) ? (q["bits"] as number[]).join("/") : q["bits"]}-bit, group ${q["group_size"] ?? "?"}${q["symmetric"] ? ", symmetric" : ""}${q["act_order"] ? ", act-order" : ""}${q["true_sequential"] ? ", true-sequential" : ""}`);
      const rep = q["report"] as ReportSummary | null;
      if (rep) {
        const stat = (s: { mean: number; max: number } | null) => (s ? `mean ${s.mean.toExponential(2)}, max ${s.max.toExponential(2)}` : "");
        row("quantization report", `${rep.layers} layers; weight error ${stat(rep.weight_error) || "-"}${rep.output_error ? `; output error ${stat(rep.output_error)}` : ""} (${QUANTIZATION_REPORT_FILE})`);
      }
      row("quantized layers", `${q["layers"]}, ${typeof q["bits_per_weight_on_disk"] === "number" ? (q["bits_per_weight_on_disk"] as number).toFixed(4) : "?"} bits/weight on disk (codes + scales + zeros + g_idx)`);
    }
    row("tokenizer", d["tokenizer"] ? `yes${(d["tokenizer"] as { chat_template: boolean }).chat_template ? ", chat template" : ""}` : "none");
    row("size on disk", formatBytes(d["size_bytes"] as number));
  }
  return `${lines.join("\n")}\n`;
}

export async function runInfo(ctx: CommandContext): Promise<void> {
  const { positionals, values } = ctx.args;
  if (positionals.length !== 1) throw usageError(positionals.length ? `expected one PATH, got ${positionals.length}` : "PATH is missing", "usage: modulora info PATH [--json]");
  const d = describePath(positionals[0]!);
  ctx.stdout.write(values["json"] ? `${JSON.stringify(d)}\n` : formatDescription(d));
}

/** The summary of a checkpoint's quantization_report.json. */
interface ReportSummary {
  layers: number;
  weight_error: { mean: number; max: number } | null;
  output_error: { mean: number; max: number } | null;
}

/** Mean and max of the per-layer errors in `dir`'s quantization report, or null without one (a damaged report is an error). */
function reportSummary(dir: string): ReportSummary | null {
  const path = join(dir, QUANTIZATION_REPORT_FILE);
  if (!existsSync(path)) return null;
  let layers: unknown;
  try {
    layers = (JSON.parse(readFileSync(path, "utf8")) as { layers?: unknown }).layers;
  } catch (err) {
    throw new CliError(`${path} is not valid JSON: ${oneLine(err)}`, "delete it (it is informational) or quantize the model again");
  }
  if (!Array.isArray(layers)) throw new CliError(`${path} has no "layers" list`, "delete it (it is informational) or quantize the model again");
  const stat = (key: string) => {
    const v = layers.map((l) => (l as Record<string, unknown>)?.[key]).filter((x): x is number => typeof x === "number" && Number.isFinite(x));
    return v.length ? { mean: v.reduce((a, b) => a + b, 0) / v.length, max: Math.max(...v) } : null;
  };
  return { layers: layers.length, weight_error: stat("weight_error"), output_error: stat("output_error") };
}
