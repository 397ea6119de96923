// modulora quantize: full-precision model → quantized checkpoint directory.
import { existsSync } from "node:fs";
import { groupSizeFor, optionFlag, type QuantizerPlugin } from "@modulora/core";
import { readTextCorpus } from "@modulora/data";
import { encodeInChunks, LlamaTokenizer, quantizeModel, sampleCalibrationWindows, saveQuantizedModel, type LlamaConfig, type QuantizeModelOptions, type ModelDType } from "@modulora/llama";
import { checkOutDir, checkOutsideInputs, pluginAndConfigInputs, diskBytes, formatBytes, lockOutSibling, removeEmptyTree } from "../atomic.js";
import { CliError, step, stepSync } from "../errors.js";
import type { CommandContext } from "../main.js";
import type { Device } from "@modulora/tensor";
import { checkDevice, formatTransfers, loadModel, preflightModel, TransferCounter, type ModelPreflight } from "../model.js";
import { describePluginOptions, pluginOptionValues } from "../plugin-options.js";
import { quantizerNamed, setupQuantizers } from "../plugins.js";
import { Progress } from "../progress.js";

interface QuantizeArgs {
  model: string;
  quantizer: string;
  bits: number;
  groupSize?: number | "row";
  sym: boolean;
  trueSequential: boolean;
  calib?: string;
  calibSamples: number;
  calibSeqLen: number;
  seed: number;
  device: string;
  dtype: ModelDType;
  plugin?: string[];
  out: string;
  overwrite: boolean;
  json: boolean;
}

/** Calibration text of a .txt file (as is) or a .jsonl file (its records' `text` fields, blank-line separated). */
export function readCalibrationText(path: string): string {
  if (!existsSync(path)) throw new CliError(`calibration file ${path} does not exist`, "pass --calib a .txt file or a .jsonl file with a text field");
  return stepSync(`cannot read calibration file ${path}`, "fix the file (JSONL: one JSON object with a \"text\" field per line)", () => readTextCorpus(path, { txt: "documents", what: "calibration records" }));
}

/**
 * Refuses a --group-size that does not divide the input size of every linear layer the
 * quantizers see (the plugin contract asks for a divisor of `in`, or "row"), from config.json,
 * before the model loads.
 */
export function checkGroupSize(groupSize: number | "row", config: LlamaConfig, model: string): void {
  if (groupSize === "row") return;
  const ins = [...new Set([config.hiddenSize, config.numHeads * config.headDim, config.intermediateSize])].sort((x, y) => x - y);
  if (ins.every((n) => n % groupSize === 0)) return;
  const gcd = ins.reduce((x, y) => {
    while (y) [x, y] = [y, x % y];
    return x;
  });
  throw new CliError(`--group-size ${groupSize} does not divide the input sizes of ${model}'s linear layers (${ins.join(", ")})`, `use a divisor of ${gcd} (e.g. ${gcd % 128 === 0 ? 128 : gcd}) or "row"`);
}

/**
 * The group size of a run: --group-size when given, else the plugin's default (128 where it names
 * none), checked against the model's linear layers.
 */
export function resolveGroupSize(plugin: QuantizerPlugin, given: number | "row" | undefined, config: LlamaConfig, model: string): number | "row" {
  const g = groupSizeFor(plugin, given);
  checkGroupSize(g, config, model);
  return g;
}

/** `--sym` with a quantizer that has no symmetric mode is refused. */
export function checkSymmetric(plugin: QuantizerPlugin, sym: boolean | undefined): void {
  if (sym && !plugin.supportsSymmetric) throw new CliError(`quantizer '${plugin.name}' has no symmetric mode`, "drop --sym");
}

/** Quantization options for quantizeModel: the common flags, then the plugin's own options (checked, defaults filled). */
export function quantizeOptions(a: { bits: number; groupSize: number | "row"; sym?: boolean; trueSequential?: boolean }, pluginOptions: Record<string, unknown>): QuantizeModelOptions {
  return {
    bits: a.bits, groupSize: a.groupSize, ...(a.sym ? { symmetric: true } : {}), ...pluginOptions,
    ...(a.trueSequential === false ? { trueSequential: false } : {}),
  };
}

export async function runQuantize(ctx: CommandContext): Promise<void> {
  const a = ctx.args.values as unknown as QuantizeArgs;
  const progress = new Progress(ctx.stderr);
  const device = checkDevice(a.device);
  await setupQuantizers(a.plugin);
  const plugin = quantizerNamed(a.quantizer);
  if (!plugin.supportedBits.includes(a.bits)) {
    throw new CliError(`quantizer '${plugin.name}' does not support --bits ${a.bits}`, `use one of ${plugin.supportedBits.join(", ")}`);
  }
  checkSymmetric(plugin, a.sym);
  const pluginOptions = pluginOptionValues(plugin, ctx.args, "quantize");
  if (plugin.calibration === "none") {
    // Flags of the calibration driver, which only mean something to a calibrating quantizer.
    for (const flag of ["true-sequential", "calib", "calib-samples", "calib-seq-len"]) {
      if (ctx.args.given.has(flag)) throw new CliError(`--${flag} is a calibration setting; '${plugin.name}' uses no activations`, `drop --${flag}, or use a quantizer that calibrates (e.g. optq)`);
    }
  }
  if (plugin.calibration !== "none" && !a.calib) {
    throw new CliError(`quantizer '${plugin.name}' needs calibration data (${plugin.calibration})`, "pass --calib FILE (a .txt file, or .jsonl with a text field)");
  }
  checkOutDir(a.out, a.overwrite);
  checkOutsideInputs(a.out, [{ flag: "--model", path: a.model }, { flag: "--calib", path: a.calib }, ...pluginAndConfigInputs(ctx.args.values)]);
  const checked = preflightModel(a.model);
  const existing = checked.quantization;
  if (existing) throw new CliError(`${a.model} is already quantized (${existing.method})`, "pass the full-precision model as --model");
  a.groupSize = resolveGroupSize(plugin, a.groupSize, checked.config, a.model);
  const calibText = a.calib && plugin.calibration !== "none" ? readCalibrationText(a.calib) : null;

  // The calibration windows, sampled before the model loads, so that a text too short is reported
  // against its flags (preflightModel checked that the tokenizer files exist).
  let calibIds: number[][] | null = null;
  if (calibText !== null) {
    const tokenizer = stepSync(`cannot read the tokenizer of ${a.model}`, "copy the tokenizer files of the original model into it", () => LlamaTokenizer.fromDir(a.model));
    const ids = encodeInChunks(tokenizer, calibText);
    if (ids.length < a.calibSeqLen) {
      throw new CliError(`calibration file ${a.calib} has ${ids.length} tokens, fewer than one window of --calib-seq-len ${a.calibSeqLen}`, "use a longer --calib text or a smaller --calib-seq-len");
    }
    calibIds = sampleCalibrationWindows(ids, a.calibSamples, a.calibSeqLen, a.seed);
  }

  // Locked and proved writable before the model loads; temporaries of killed runs are cleaned.
  const { lock, notes, createdParent } = lockOutSibling(a.out, "modulora quantize");
  let succeeded = false;
  try {
    for (const n of notes) progress.log(`note: ${n}`);
    checkOutDir(a.out, a.overwrite); // again: the recovery may have put a previous --out back
    await quantizeAndWrite(ctx, a, plugin, pluginOptions, checked, calibIds, progress, device);
    succeeded = true;
  } finally {
    lock.release();
    if (!succeeded && createdParent) removeEmptyTree(createdParent); // directories made for --out go again
  }
}

async function quantizeAndWrite(
  ctx: CommandContext, a: QuantizeArgs, plugin: QuantizerPlugin, pluginOptions: Record<string, unknown>, checked: ModelPreflight,
  calibIds: number[][] | null, progress: Progress, device: Device,
): Promise<void> {
  // The model, the calibration passes and their statistics on --device.
  const loaded = await loadModel(a.model, progress, "--model", checked, device, a.dtype);
  const { model } = loaded;
  const groupSize = a.groupSize!;
  try {
    const options = quantizeOptions({ ...a, groupSize }, pluginOptions);
    // One bar over the layers; calibration passes show in its payload (one line, even on a TTY).
    const total = model.layers.length * 7;
    const qbar = progress.bar("quantize", total, { fields: ["at"], unit: "layers" });
    let layersDone = 0;
    const flags = ["--bits", "--group-size", ...(plugin.options ?? []).map((o) => `--${optionFlag(o)}`)].join(", ");
    const result = await step(`quantizing with '${plugin.name}' failed`, `check the quantizer's flags (${flags}; modulora quantize --quantizer ${plugin.name} --help)`, () =>
      quantizeModel(model, plugin, {
        ...options,
        ...(calibIds !== null ? { calibration: { ids: calibIds } } : {}),
        onProgress: (e) => {
          if (e.stage === "calibrate") {
            const which = e.block === null ? "lm_head" : `block ${e.block}${e.layers && e.layers.length < 7 ? ` ${e.layers.map((n) => n.replace(/_proj$/, "")).join(",")}` : ""}`;
            qbar.update(layersDone, { at: `calibrating ${which} (${e.done}/${e.total} batches)` });
          }
          else {
            layersDone = e.done;
            qbar.update(e.done, { at: `${e.block ?? ""}.${e.layer}` });
          }
        },
      }),
    );
    qbar.stop();

    const t0 = performance.now();
    const saved = await step(`cannot write ${a.out}`, "check that its parent directory is writable", () =>
      saveQuantizedModel(model, a.out, { sourceDir: a.model, plugin, options: { ...options, ...(a.calib ? { calibSamples: a.calibSamples, calibSeqLen: a.calibSeqLen, seed: a.seed } : {}) }, overwrite: a.overwrite, report: result.report }),
    );
    const writeSeconds = (performance.now() - t0) / 1000;

    const transfers = new TransferCounter(device).report();
    if (transfers) progress.log(formatTransfers(transfers).trimEnd());
    if (a.json) {
      const layers = result.report.map((r) => ({ name: r.name, bits: r.bits, bitsPerWeight: r.bitsPerWeight, error: r.error ?? null, outputError: r.outputError ?? null, seconds: r.seconds }));
      ctx.stdout.write(`${JSON.stringify({
        out: saved.dir, quantMethod: saved.quantMethod, quantizer: plugin.name, bits: a.bits, groupSize, symmetric: a.sym, options: pluginOptions,
        bitsPerWeight: result.bitsPerWeight, seconds: result.seconds, calibrationSeconds: result.calibrationSeconds, writeSeconds, bytes: diskBytes(saved.dir), layers,
      })}\n`);
      return;
    }
    const out = ctx.stdout;
    const width = Math.max(...result.report.map((r) => r.name.length));
    // weight error ‖W − Ŵ‖/‖W‖; output error ‖XŴᵀ − XWᵀ‖/‖XWᵀ‖ on the calibration inputs (calibrated quantizers)
    const withOutput = result.report.some((r) => r.outputError !== undefined);
    out.write(`${"layer".padEnd(width)}  bits  bits/weight  rel.error${withOutput ? "  out.error" : ""}   time\n`);
    for (const r of result.report) {
      const outErr = withOutput ? `  ${(r.outputError !== undefined ? r.outputError.toExponential(2) : "-").padStart(9)}` : "";
      out.write(`${r.name.padEnd(width)}  ${String(r.bits).padStart(4)}  ${r.bitsPerWeight.toFixed(4).padStart(11)}  ${(r.error !== undefined ? r.error.toExponential(2) : "-").padStart(9)}${outErr}  ${r.seconds.toFixed(3).padStart(5)} s\n`);
    }
    out.write(
      `quantized ${result.report.length} layers with ${plugin.name} (${[`${a.bits}-bit`, `group ${groupSize}`, ...(a.sym ? ["symmetric"] : []), ...describePluginOptions(plugin, pluginOptions), ...(plugin.calibration !== "none" && !a.trueSequential ? ["not true-sequential"] : [])].join(", ")}): ` +
        `${result.bitsPerWeight.toFixed(4)} bits/weight over the quantized layers, ${result.seconds.toFixed(1)} s` +
        `${result.calibrationSeconds > 0 ? ` (calibration ${result.calibrationSeconds.toFixed(1)} s)` : ""}\n`,
    );
    out.write(`wrote ${saved.dir} (${saved.quantMethod} layout, ${formatBytes(diskBytes(saved.dir))}, ${writeSeconds.toFixed(1)} s)\n`);
  } finally {
    model.dispose();
  }
}
