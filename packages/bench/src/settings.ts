// The settings of a run: the caller's options with every default filled in, every value checked
// up front (a bad setting fails in one line before any model loads, not in cell 17 of 20).
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { getQuantizer, listQuantizers, optionFlag, resolveQuantizerOptions, type QuantizerOptionSpec, type QuantizerPlugin } from "@modulora/core";
import { checkContextLength, checkModelDType, isQuantizedDir, readLlamaConfig, type LlamaConfig } from "@modulora/llama";
import { getBackend } from "@modulora/tensor";
import { bundledDataPath, DEFAULT_BITS, DEFAULT_CALIBRATION, DEFAULT_FINETUNE, DEFAULT_GROUP_SIZES, DEFAULT_MAX_SAMPLES, DEFAULT_PPL_MAX_WINDOWS, DEFAULT_PPL_SEQ_LEN, DEFAULT_TASKS } from "./defaults.js";
import { BENCH_TASKS, type BenchOptions, type BenchQuantizer, type BenchSettings, type BenchTask, type FinetuneSettings, type GroupSize, type TaskFiles } from "./types.js";

/** A bad setting of a bench run: the message says what was wrong and what to do. */
export class BenchSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BenchSettingsError";
  }
}

const fail = (message: string): never => {
  throw new BenchSettingsError(message);
};

/** The registered quantizer `name`, or an error that lists the registered ones. */
function pluginNamed(name: string, where: string): QuantizerPlugin {
  if (!listQuantizers().includes(name)) {
    const known = listQuantizers();
    fail(`${where}: unknown quantizer '${name}'; registered: ${known.length ? known.join(", ") : "none (register plugins with registerQuantizer first)"}`);
  }
  return getQuantizer(name);
}

/** The value of `text` as `spec` types it (booleans true/false, numbers), or an error naming the quantizer and the option. */
function typedValue(plugin: QuantizerPlugin, spec: QuantizerOptionSpec, text: string, where: string): unknown {
  if (spec.type === "string") return text;
  if (spec.type === "boolean") {
    if (text === "true") return true;
    if (text === "false") return false;
    return fail(`${where}: ${plugin.name} option ${spec.name} is a boolean, got '${text}'; use true or false`);
  }
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) fail(`${where}: ${plugin.name} option ${spec.name} is a number, got '${text}'`);
  return n;
}

/** The default label of a variant: the name, then `key=value` pairs joined with `:`. */
export function quantizerLabel(name: string, options: Readonly<Record<string, unknown>>): string {
  return [name, ...Object.entries(options).map(([k, v]) => `${k}=${String(v)}`)].join(":");
}

/**
 * Parses a quantizer entry of the command line: `name`, or a variant `name:key=value:key2=value2`
 * where each key is one of the registered plugin's options (its name, e.g. `optimizeScale`, or
 * its flag, `optimize-scale`) and each value is typed by the option's spec. The options are
 * checked by the plugin (bounds, choices, its own checks) in {@link resolveBenchSettings}.
 */
export function parseQuantizerSpec(spec: string): BenchQuantizer {
  const where = `quantizer '${spec}'`;
  const [name = "", ...pairs] = spec.split(":");
  if (name.trim() === "") fail(`${where}: no quantizer name; write name or name:key=value`);
  const plugin = pluginNamed(name, where);
  const options: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) fail(`${where}: '${pair}' is not key=value`);
    const key = pair.slice(0, eq);
    const opt = (plugin.options ?? []).find((o) => o.name === key || optionFlag(o) === key);
    if (!opt) {
      const list = (plugin.options ?? []).map((o) => o.name);
      fail(`${where}: ${plugin.name} has no option ${key} (its options: ${list.length ? list.join(", ") : "none"})`);
    }
    if (opt!.name in options) fail(`${where}: option ${opt!.name} is given twice`);
    options[opt!.name] = typedValue(plugin, opt!, pair.slice(eq + 1), where);
  }
  return { name, ...(pairs.length ? { options } : {}) };
}

const isPositiveInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 1;

function checkInt(v: unknown, what: string, min: number, hint = ""): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) fail(`${what} must be an integer ≥ ${min}, got ${JSON.stringify(v)}${hint}`);
  return v as number;
}

function checkNumber(v: unknown, what: string, ok: (x: number) => boolean, range: string): number {
  if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) fail(`${what} must be a number ${range}, got ${JSON.stringify(v)}`);
  return v as number;
}

function checkFile(path: unknown, what: string): string {
  if (typeof path !== "string" || path === "") return fail(`${what} must be a file path`);
  const abs = resolve(path);
  if (!existsSync(abs)) fail(`${what}: ${path} does not exist`);
  if (!statSync(abs).isFile()) fail(`${what}: ${path} is not a file`);
  return abs;
}

function checkQuantizer(entry: string | BenchQuantizer, i: number): BenchQuantizer {
  const q = typeof entry === "string" ? parseQuantizerSpec(entry) : entry;
  if (!q || typeof q !== "object" || typeof q.name !== "string") return fail(`quantizers[${i}] must be a name, a "name:key=value" string or { name, options }`);
  const plugin = pluginNamed(q.name, `quantizers[${i}]`);
  const options = q.options ?? {};
  try {
    resolveQuantizerOptions(plugin, options, { strict: true });
  } catch (err) {
    fail(`quantizers[${i}] (${q.name}): ${(err as Error).message}`);
  }
  const label = q.label ?? quantizerLabel(q.name, options);
  if (label.trim() === "") fail(`quantizers[${i}]: label must not be empty`);
  return { name: q.name, ...(Object.keys(options).length ? { options: { ...options } } : {}), label };
}

function checkGroupSizes(list: readonly GroupSize[]): GroupSize[] {
  return list.map((g, i) => (g === "row" || isPositiveInt(g) ? g : fail(`groupSizes[${i}] must be a positive integer or "row", got ${JSON.stringify(g)}`)));
}

function uniqueList<T>(list: readonly T[] | undefined, what: string, fallback: readonly T[]): T[] {
  const l = list ?? fallback;
  if (!Array.isArray(l) || l.length === 0) fail(`${what} must be a non-empty list`);
  const seen = new Set<string>();
  for (const x of l) {
    const k = JSON.stringify(x);
    if (seen.has(k)) fail(`${what} lists ${k} twice`);
    seen.add(k);
  }
  return [...l];
}

function taskFiles(given: Partial<TaskFiles> | undefined, task: "classify" | "summarize", used: boolean): TaskFiles {
  const g = given ?? {};
  const train = g.train ?? (used ? bundledDataPath(task === "classify" ? "classifyTrain" : "summarizeTrain") : "");
  const valid = g.valid ?? (used ? bundledDataPath(task === "classify" ? "classifyValid" : "summarizeValid") : "");
  const maxSamples = g.maxSamples ?? DEFAULT_MAX_SAMPLES[task];
  checkInt(maxSamples, `${task}.maxSamples`, 1);
  if (!used) return { train: train && resolve(train), valid: valid && resolve(valid), maxSamples };
  return { train: checkFile(train, `${task}.train`), valid: checkFile(valid, `${task}.valid`), maxSamples };
}

function finetuneSettings(given: Partial<FinetuneSettings> | undefined, config: LlamaConfig): FinetuneSettings {
  const f = { ...DEFAULT_FINETUNE, ...(given ?? {}) };
  checkInt(f.steps, "finetune.steps", 1);
  checkNumber(f.lr, "finetune.lr", (x) => x > 0, "> 0");
  checkInt(f.batchSize, "finetune.batchSize", 1);
  checkInt(f.seqLen, "finetune.seqLen", 2);
  checkContextLength(config, f.seqLen, `finetune.seqLen ${f.seqLen}`, `use at most ${config.maxPositionEmbeddings}`);
  checkInt(f.seed, "finetune.seed", 0);
  checkInt(f.rank, "finetune.rank", 1);
  checkNumber(f.alpha, "finetune.alpha", (x) => x > 0, "> 0");
  checkNumber(f.dropout, "finetune.dropout", (x) => x >= 0 && x < 1, "in [0, 1)");
  checkInt(f.warmup, "finetune.warmup", 0);
  if (f.warmup > f.steps) fail(`finetune.warmup ${f.warmup} is longer than finetune.steps ${f.steps}: the learning rate would never reach lr; use at most ${f.steps}`);
  checkInt(f.maxNewTokens, "finetune.maxNewTokens", 1);
  if (f.maxNewTokens >= f.seqLen) fail(`finetune.maxNewTokens ${f.maxNewTokens} leaves no room for the prompt in finetune.seqLen ${f.seqLen}; lower it below ${f.seqLen}`);
  return f;
}

function checkDevice(device: string): string {
  if (typeof device !== "string") return fail(`device must be a string such as "cpu" or "cuda:0"`);
  try {
    getBackend(device);
  } catch (err) {
    fail(`device ${device} is not available: ${(err as Error).message}; use "cpu"`);
  }
  return device;
}

/**
 * The settings of a run: `options` with every default filled in (see {@link BenchOptions}),
 * checked before anything heavy runs. Unknown quantizers list the registered ones (register
 * plugins with `registerQuantizer` first); a variant's options are checked by its plugin.
 * Throws {@link BenchSettingsError}.
 */
export function resolveBenchSettings(options: BenchOptions): BenchSettings {
  if (!options || typeof options !== "object") fail("runBench needs an options object with model and out");
  if (typeof options.model !== "string" || options.model === "") fail("model must be a model directory");
  if (typeof options.out !== "string" || options.out === "") fail("out must be a directory path");
  if (options.resume && options.overwrite) fail("resume and overwrite exclude each other: resume keeps the finished cells in out, overwrite starts over");
  const model = resolve(options.model);
  if (!existsSync(model) || !statSync(model).isDirectory()) fail(`model: ${options.model} is not a directory (a Hugging Face LLaMA model: config.json, safetensors, tokenizer.json)`);
  let config: LlamaConfig;
  try {
    config = readLlamaConfig(model);
  } catch (err) {
    return fail(`model: ${(err as Error).message}`);
  }
  if (isQuantizedDir(model, config)) fail(`model: ${options.model} is already quantized; pass the full-precision model (the bench quantizes it itself)`);
  if (!existsSync(resolve(model, "tokenizer.json"))) fail(`model: ${options.model} has no tokenizer.json; copy the original model's tokenizer files into it`);

  const tasks = uniqueList(options.tasks, "tasks", DEFAULT_TASKS);
  for (const t of tasks) if (!BENCH_TASKS.includes(t)) fail(`unknown task ${JSON.stringify(t)}; tasks are ${BENCH_TASKS.join(", ")}`);
  const ordered = BENCH_TASKS.filter((t) => tasks.includes(t));

  const quantizers = (options.quantizers ?? listQuantizers()).map(checkQuantizer);
  const labels = new Set<string>();
  for (const q of quantizers) {
    if (labels.has(q.label!)) fail(`quantizers: two entries are labelled '${q.label}'; give one of them another label or other options`);
    labels.add(q.label!);
  }
  if (options.quantizers === undefined && quantizers.length === 0) fail("no quantizers are registered; register plugins with registerQuantizer, or pass quantizers");

  const bits = uniqueList(options.bits, "bits", DEFAULT_BITS);
  bits.forEach((b, i) => {
    if (!isPositiveInt(b)) fail(`bits[${i}] must be a positive integer, got ${JSON.stringify(b)}`);
  });
  const groupSizes = checkGroupSizes(uniqueList(options.groupSizes, "groupSizes", DEFAULT_GROUP_SIZES));

  const p = options.ppl ?? {};
  const seqLen = p.seqLen ?? DEFAULT_PPL_SEQ_LEN;
  checkInt(seqLen, "ppl.seqLen", 2);
  const stride = p.stride ?? seqLen;
  if (!Number.isInteger(stride) || stride < 1 || stride > seqLen) fail(`ppl.stride must be an integer from 1 to ppl.seqLen (${seqLen}), got ${JSON.stringify(stride)}`);
  // null: every window of the text.
  const maxWindows = p.maxWindows === null ? undefined : (p.maxWindows ?? DEFAULT_PPL_MAX_WINDOWS);
  if (maxWindows !== undefined) checkInt(maxWindows, "ppl.maxWindows", 1);
  const usesPpl = ordered.includes("ppl");
  if (usesPpl) checkContextLength(config, seqLen, `ppl.seqLen ${seqLen}`, `use at most ${config.maxPositionEmbeddings}`);
  const pplText = p.text ?? (usesPpl ? bundledDataPath("pplText") : "");
  const ppl = { text: usesPpl ? checkFile(pplText, "ppl.text") : pplText && resolve(pplText), seqLen, stride, ...(maxWindows !== undefined ? { maxWindows } : {}) };

  const c = options.calibration ?? {};
  const needsCalibration = quantizers.some((q) => getQuantizer(q.name).calibration !== "none");
  const calibration = {
    text: c.text !== undefined ? checkFile(c.text, "calibration.text") : needsCalibration ? bundledDataPath("calibrationText") : "",
    samples: checkInt(c.samples ?? DEFAULT_CALIBRATION.samples, "calibration.samples", 1),
    seqLen: checkInt(c.seqLen ?? DEFAULT_CALIBRATION.seqLen, "calibration.seqLen", 2),
  };
  if (needsCalibration) checkContextLength(config, calibration.seqLen, `calibration.seqLen ${calibration.seqLen}`, `use at most ${config.maxPositionEmbeddings}`);

  const finetune = finetuneSettings(options.finetune, config);
  const device = checkDevice(options.device ?? "cpu");
  let dtype;
  try {
    dtype = checkModelDType(options.dtype, "dtype");
  } catch (err) {
    return fail((err as Error).message);
  }
  return {
    model,
    tasks: ordered,
    quantizers,
    bits,
    groupSizes,
    ppl,
    classify: taskFiles(options.classify, "classify", ordered.includes("classify")),
    summarize: taskFiles(options.summarize, "summarize", ordered.includes("summarize")),
    finetune,
    calibration,
    fullPrecision: options.fullPrecision ?? true,
    baseline: options.baseline ?? true,
    device,
    dtype,
  };
}

/**
 * The settings a resumed run must share with the run it continues: everything but the grid's
 * lists and rows (quantizers, bits, group sizes, the fp and baseline rows), which may change.
 */
export function comparableSettings(s: BenchSettings): Record<string, unknown> {
  const { quantizers: _q, bits: _b, groupSizes: _g, fullPrecision: _f, baseline: _l, ...rest } = s;
  return rest;
}

/** The tasks as a list type guard (for callers holding strings). */
export function isBenchTask(t: unknown): t is BenchTask {
  return (BENCH_TASKS as readonly unknown[]).includes(t);
}
