/**
 * Quantizing a whole model with any quantizer plugin, and the calibration driver.
 *
 * Every targeted `DenseLinear` is replaced by a `QuantizedLinear` holding
 * `plugin.quantize(W, options, stats)`; its dense weight is freed as soon as it is replaced.
 *
 * Plugins that ask for statistics (`calibration: "hessian"` or `"activation-scales"`) get them
 * from calibration windows run through the model block by block, as GPTQ does: the windows are
 * embedded once; for block i the driver installs a recording wrapper in place of each targeted
 * linear, runs the (still full-precision) block on every micro-batch of windows while the wrappers
 * accumulate the statistics of their inputs, quantizes the block's linears, then runs the
 * now-quantized block once more to produce the next block's inputs. So block i sees the outputs of
 * the already-quantized blocks before it. Inside a block the order is true-sequential by default
 * (GPTQ's `true_sequential`): the linears are calibrated and quantized in the groups of
 * {@link SEQUENTIAL_GROUPS} (k,v,q, then o, then up,gate, then down), each group on the outputs of
 * the groups already quantized; a statistics pass stops as soon as the group's last input is
 * recorded. With `trueSequential: false` all of a block's linears are calibrated in one pass on
 * full-precision inputs. Only the current block's inputs ([N, L, C] f32) are held.
 * @module
 */
import {
  Tensor, arange, cast, div, hasQuantFormatKernels, keep, matmul, mul, noGrad, philox4x32, quantDequantize, reshape, seedToKey, sub, sum,
  tensorFrom, tidy, zeros, type Device,
} from "@modulora/tensor";
import { accumulateAbsSum, accumulateHessian, packedWeightOf, resolveQuantizer, type CalibrationStats, type QuantizedWeight, type QuantizerPlugin, type QuantizeOptions } from "@modulora/core";
import { DenseLinear, QuantizedLinear } from "./linear.js";
import type { LlamaModel } from "./model.js";
import { LINEAR_MODULE, LINEAR_NAMES, type LayerForwardOptions, type Linear, type LinearName } from "./types.js";

/** The tokenizer a text calibration source needs: text → ids without special tokens. */
export interface CalibrationTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[] | Int32Array;
}

/**
 * Calibration data: ready-made windows of token ids (all of one length), or a text to sample
 * `samples` windows of `seqLen` tokens from (see {@link sampleCalibrationWindows}).
 */
export type CalibrationSource =
  | { ids: readonly (readonly number[])[] }
  | { text: string; tokenizer: CalibrationTokenizer; samples?: number; seqLen?: number; seed?: number };

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

/**
 * The true-sequential order inside a block (GPTQ's `true_sequential`): each group is calibrated on
 * the outputs of the groups before it, already quantized.
 */
export const SEQUENTIAL_GROUPS: readonly (readonly LinearName[])[] = [
  ["k_proj", "v_proj", "q_proj"],
  ["o_proj"],
  ["up_proj", "gate_proj"],
  ["down_proj"],
];

/** Options of {@link quantizeModel}. Keys it does not know go to the plugin. */
export interface QuantizeModelOptions {
  bits: number;
  /** Columns per group, or "row" (default 128). */
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

/** Hugging Face module name of a block's linear. */
export function linearModuleName(block: number, name: LinearName): string {
  return `model.layers.${block}.${LINEAR_MODULE[name]}.${name}`;
}

/**
 * Samples `samples` windows of `seqLen` consecutive tokens from `ids`, as GPTQ samples its
 * calibration set: window k starts at ⌊u_k · (n − seqLen + 1)⌋, where u_k ∈ [0, 1) is a 53-bit
 * uniform from Philox4x32-10 with key `seed` and counter (k, 0, 0, 0); windows are independent
 * (they may overlap, and repeat). Needs at least `seqLen` tokens.
 */
export function sampleCalibrationWindows(ids: ArrayLike<number>, samples: number, seqLen: number, seed = 0): number[][] {
  if (!Number.isInteger(samples) || samples < 1) throw new RangeError(`calibration: samples must be a positive integer, got ${samples}`);
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new RangeError(`calibration: seqLen must be a positive integer, got ${seqLen}`);
  const n = ids.length;
  if (n < seqLen) throw new RangeError(`calibration: the text has ${n} tokens, fewer than one window of seqLen = ${seqLen}`);
  const [k0, k1] = seedToKey(seed);
  const block = new Uint32Array(4);
  const windows: number[][] = [];
  for (let k = 0; k < samples; k++) {
    philox4x32(k, 0, 0, 0, k0, k1, block);
    const u = (block[0]! * 2 ** 21 + (block[1]! >>> 11)) / 2 ** 53;
    const start = Math.floor(u * (n - seqLen + 1));
    windows.push(Array.from({ length: seqLen }, (_, i) => ids[start + i]!));
  }
  return windows;
}

/** The calibration windows of a source, checked. */
export function calibrationWindows(source: CalibrationSource): number[][] {
  if ("ids" in source) {
    const w = source.ids;
    if (!Array.isArray(w) || w.length === 0) throw new RangeError("calibration: ids must be a non-empty list of windows");
    const len = w[0]!.length;
    if (len < 1) throw new RangeError("calibration: windows must not be empty");
    w.forEach((win, i) => {
      if (win.length !== len) throw new RangeError(`calibration: all windows must have the same length; window 0 has ${len} tokens, window ${i} has ${win.length}`);
    });
    return w.map((win) => Array.from(win));
  }
  if (typeof source.text !== "string" || !source.tokenizer) throw new TypeError("calibration: give { ids } or { text, tokenizer }");
  const ids = encodeInChunks(source.tokenizer, source.text);
  return sampleCalibrationWindows(ids, source.samples ?? 128, source.seqLen ?? 512, source.seed ?? 0);
}

/**
 * Encodes a long text piece by piece, cut after newlines about every `chunk` characters, and joins
 * the ids. The tokenizer's cost grows faster than linearly with the length of one string (42 s
 * for 2 MB of small-llama text in one piece, 6.4 s in 4 kB pieces), and for calibration windows a token boundary
 * forced at a line end changes nothing that matters.
 */
export function encodeInChunks(tokenizer: CalibrationTokenizer, text: string, chunk = 4096): number[] {
  const ids: number[] = [];
  let start = 0;
  while (start < text.length) {
    let end = Math.min(text.length, start + chunk);
    if (end < text.length) {
      const nl = text.indexOf("\n", end);
      end = nl < 0 ? text.length : nl + 1;
    }
    for (const id of tokenizer.encode(text.slice(start, end), { addSpecialTokens: false })) ids.push(id);
    start = end;
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Statistics of a layer's inputs
// ---------------------------------------------------------------------------------------------

/** Running statistics of one distinct input (layers fed the same tensor share one), on the input's device. */
class InputStats {
  /** f64 [in, in] on the device: Σ xᵀx. */
  readonly hessian: Tensor | null;
  /** f64 [in] on the device: Σ |x| per input column. */
  readonly absSum: Tensor | null;
  samples = 0;
  /** Layers still to be handed these statistics. */
  readonly users: string[] = [];

  constructor(readonly inFeatures: number, kind: "hessian" | "activation-scales", device: Device) {
    this.hessian = kind === "hessian" ? keep(zeros([inFeatures, inFeatures], { dtype: "f64", device })) : null;
    this.absSum = kind === "activation-scales" ? keep(zeros([inFeatures], { dtype: "f64", device })) : null;
  }

  /** Adds x [..., in] on its device (H += xᵀx, S += Σ|x| over its rows; see core's accumulators). Nothing is read back. */
  add(x: Tensor): void {
    const rows = x.size / this.inFeatures;
    if (rows === 0) return;
    this.samples += rows;
    if (this.hessian) accumulateHessian(this.hessian, x);
    if (this.absSum) accumulateAbsSum(this.absSum, x);
  }

  /** The statistics for the next user; the last user gets the accumulator itself, earlier ones a copy. */
  take(): CalibrationStats {
    this.users.shift();
    const last = this.users.length === 0;
    const stats: CalibrationStats = { samples: this.samples };
    if (this.hessian) stats.hessian = last ? this.hessian : keep(this.hessian.clone());
    if (this.absSum) {
      const s = this.absSum;
      stats.activationScales = keep(tidy(() => cast(div(s, Math.max(1, this.samples)), "f32")));
      if (last) s.dispose();
    }
    return stats;
  }

  dispose(): void {
    this.hessian?.dispose();
    this.absSum?.dispose();
  }
}

/** Thrown by the last recording wrapper of a pass to skip the rest of the block. */
const STOP_PASS: unique symbol = Symbol("stop calibration pass");

/**
 * Stands in for a linear during calibration: records its input, then calls the original. Inputs
 * are matched by tensor identity within one forward pass, so q/k/v (and gate/up), which the block
 * feeds the same normed hidden state, share one accumulation.
 */
class RecordingLinear implements Linear {
  constructor(readonly inner: Linear, readonly name: string, private readonly session: CalibrationSession) {}
  get kind() {
    return this.inner.kind;
  }
  get inFeatures() {
    return this.inner.inFeatures;
  }
  get outFeatures() {
    return this.inner.outFeatures;
  }
  forward(x: Tensor, options?: LayerForwardOptions): Tensor {
    this.session.record(this.name, x);
    // Nothing after the last recorded input matters to this pass.
    if (this.session.complete) throw STOP_PASS;
    return this.inner.forward(x, options);
  }
  parameters(): Tensor[] {
    return this.inner.parameters();
  }
  storageBytes(): number {
    return this.inner.storageBytes();
  }
  dispose(): void {
    this.inner.dispose();
  }
}

/** The statistics of one block's targeted linears over all micro-batches. */
class CalibrationSession {
  private readonly byLayer = new Map<string, InputStats>();
  /** Inputs seen in the current forward pass (tensor → its statistics). */
  private seen = new Map<Tensor, InputStats>();
  /** Layers recorded in the current pass. */
  private readonly recorded = new Set<string>();
  private passes = 0;
  /** Seconds spent accumulating statistics. */
  seconds = 0;

  /** `expected`: the recorded layers; once all have had their input in a pass, the pass is complete. */
  constructor(private readonly kind: "hessian" | "activation-scales", private readonly expected: number) {}

  /** Starts a new forward pass (a new micro-batch). */
  nextPass(): void {
    this.seen = new Map();
    this.recorded.clear();
    this.passes++;
  }

  /** Every recorded layer has seen its input in this pass. */
  get complete(): boolean {
    return this.recorded.size === this.expected;
  }

  record(name: string, x: Tensor): void {
    this.recorded.add(name);
    const inF = x.shape[x.rank - 1]!;
    const shared = this.seen.get(x);
    let stats = this.byLayer.get(name);
    if (this.passes === 1 && !stats) {
      stats = shared ?? new InputStats(inF, this.kind, x.device);
      stats.users.push(name);
      this.byLayer.set(name, stats);
    }
    if (!stats) throw new Error(`calibration: layer ${name} was not called in the first forward pass but is now`);
    if (shared) {
      // Same input as a layer already recorded in this pass: nothing new to add.
      if (shared !== stats) throw new Error(`calibration: layer ${name} shares its input with different layers from one pass to the next`);
      return;
    }
    const t0 = performance.now();
    stats.add(x);
    this.seconds += (performance.now() - t0) / 1000;
    this.seen.set(x, stats);
  }

  /** Statistics for `name` (the caller disposes the tensors in them). */
  take(name: string): CalibrationStats {
    const s = this.byLayer.get(name);
    if (!s) throw new Error(`calibration: layer ${name} never received an input in the calibration forward passes`);
    this.byLayer.delete(name);
    return s.take();
  }

  dispose(): void {
    for (const s of new Set(this.byLayer.values())) if (s.users.length) s.dispose();
    this.byLayer.clear();
  }
}

function disposeStats(stats: CalibrationStats | undefined): void {
  stats?.hessian?.dispose();
  stats?.activationScales?.dispose();
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/**
 * Ŵ as a dense f32 [out, in] tensor on `device`: decoded there by the format's dequantize kernel
 * when the packed tensors are on `device` and it has one (no transfer), else materialized on the
 * host and copied in once.
 */
function materializeOn(q: QuantizedWeight, device: Device): Tensor {
  const packed = packedWeightOf(q);
  if (packed && packed.device === device && hasQuantFormatKernels(packed.format, device)) return quantDequantize(packed, 0, q.outFeatures);
  const hat = new Float32Array(q.outFeatures * q.inFeatures);
  q.materialize(0, q.outFeatures, hat);
  return tensorFrom(hat, { shape: [q.outFeatures, q.inFeatures], device });
}

/** sqrt(tr(ΔHΔᵀ) / tr(WHWᵀ)), Δ = Ŵ − W, on the device of its inputs (two numbers come back). */
function outputErrorOf(weight: Tensor, hat: Tensor, hessian: Tensor): number {
  const [out, inF] = hat.shape as [number, number];
  return noGrad(() =>
    tidy(() => {
      const h = reshape(hessian, [inF, inF]);
      const w = cast(reshape(weight, [out, inF]), "f64");
      const delta = sub(cast(hat, "f64"), w); // exact: a difference of two f32 in f64
      const quadratic = (m: Tensor) => sum(mul(matmul(m, h), m));
      const den = quadratic(w).item();
      return den > 0 ? Math.sqrt(Math.max(0, quadratic(delta).item()) / den) : 0;
    }),
  );
}

/** ‖W − Ŵ‖_F / ‖W‖_F in f64 on the device of its inputs (two numbers come back). */
function weightErrorOf(weight: Tensor, hat: Tensor): number {
  return noGrad(() =>
    tidy(() => {
      const w = cast(reshape(weight, hat.shape), "f64");
      const d = sub(w, cast(hat, "f64"));
      const num = sum(mul(d, d)).item();
      const den = sum(mul(w, w)).item();
      return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
    }),
  );
}

function checkMeasured(who: string, weight: Tensor, q: QuantizedWeight): void {
  if (weight.dtype !== "f32" || weight.size !== q.outFeatures * q.inFeatures) {
    throw new Error(`${who}: expects an f32 weight of [${q.outFeatures}, ${q.inFeatures}] elements like the quantized one, got ${weight.dtype} [${weight.shape}]`);
  }
}

/**
 * The output error of a quantized layer on inputs with Gram matrix H = XᵀX (f64 [in, in]):
 * ‖XŴᵀ − XWᵀ‖_F / ‖XWᵀ‖_F = sqrt(tr(ΔHΔᵀ) / tr(WHWᵀ)), Δ = Ŵ − W (two DGEMMs). Computed on the
 * weight's device (Ŵ decoded there, or copied in once), and two numbers come back.
 */
export function outputReconstructionError(weight: Tensor, q: QuantizedWeight, hessian: Tensor): number {
  const inF = q.inFeatures;
  if (weight.dtype !== "f32" || hessian.dtype !== "f64" || hessian.size !== inF * inF || weight.size !== q.outFeatures * inF) {
    throw new Error("outputReconstructionError: expects an f32 [out, in] weight and an f64 [in, in] Hessian");
  }
  if (weight.device !== hessian.device) throw new Error(`outputReconstructionError: the weight is on '${weight.device}', the Hessian on '${hessian.device}'; put them on one device`);
  const hat = materializeOn(q, weight.device);
  try {
    return outputErrorOf(weight, hat, hessian);
  } finally {
    hat.dispose();
  }
}

/** ‖W − Ŵ‖_F / ‖W‖_F, on the weight's device (Ŵ decoded there, or copied in once; two numbers back). */
export function reconstructionError(weight: Tensor, q: QuantizedWeight): number {
  const w = weight.dtype === "f32" ? weight : cast(weight, "f32");
  try {
    checkMeasured("reconstructionError", w, q);
    const hat = materializeOn(q, weight.device);
    try {
      return weightErrorOf(w, hat);
    } finally {
      hat.dispose();
    }
  } finally {
    if (w !== weight) w.dispose();
  }
}

interface Target {
  block: number | null;
  layer: LinearName | "lm_head";
  name: string;
  get(): Linear;
  set(l: Linear): void;
}

/** The layers to quantize, per block in order, then lm_head (block null). */
interface Stage {
  block: number | null;
  targets: Target[];
}

function stagesOf(model: LlamaModel, names: readonly LinearName[], includeLmHead: boolean): Stage[] {
  const stages: Stage[] = model.layers.map((layer, block) => ({
    block,
    targets: names.map((n) => ({
      block, layer: n, name: linearModuleName(block, n),
      get: () => layer.linears[n], set: (l: Linear) => { layer.linears[n] = l; },
    })),
  }));
  if (includeLmHead) {
    // lmHead is readonly on the model's public surface; swapping the layer object is what this driver is for.
    const m = model as unknown as { lmHead: Linear };
    stages.push({ block: null, targets: [{ block: null, layer: "lm_head", name: "lm_head", get: () => m.lmHead, set: (l) => { m.lmHead = l; } }] });
  }
  return stages;
}

/**
 * Quantizes the model's linear layers in place with `plugin` (an object or a registered name).
 * Embeddings and norms stay in full precision, and lm_head unless `includeLmHead`. Returns a
 * per-layer report. Plugins with `calibration` other than `"none"` need `options.calibration`.
 */
export async function quantizeModel(model: LlamaModel, pluginOrName: QuantizerPlugin | string, options: QuantizeModelOptions): Promise<QuantizeModelResult> {
  const t0 = performance.now();
  const plugin = resolveQuantizer(pluginOrName);
  if (!options || typeof options !== "object") throw new TypeError("quantizeModel: options must be an object with at least bits");
  if (!plugin.supportedBits.includes(options.bits)) {
    throw new RangeError(`quantizeModel: quantizer '${plugin.name}' does not support bits = ${JSON.stringify(options.bits)}; it supports ${plugin.supportedBits.join(", ")}`);
  }
  const names = options.targets ?? LINEAR_NAMES;
  for (const n of names) {
    if (!(LINEAR_NAMES as readonly string[]).includes(n)) throw new RangeError(`quantizeModel: unknown target '${n}'; targets are ${LINEAR_NAMES.join(", ")}`);
  }
  const pluginOptions: QuantizeOptions = { bits: options.bits, groupSize: options.groupSize ?? 128 };
  for (const [k, v] of Object.entries(options)) if (!DRIVER_KEYS.has(k) && k !== "groupSize" && v !== undefined) pluginOptions[k] = v;
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

/** The calibration driver (see the module comment). Returns the seconds spent outside `plugin.quantize`, and of those in the statistics. */
async function calibrateAndQuantize(
  model: LlamaModel,
  kind: "hessian" | "activation-scales",
  options: QuantizeModelOptions,
  stages: Stage[],
  quantizeOne: (t: Target, stats?: CalibrationStats) => Promise<void>,
): Promise<{ seconds: number; statisticsSeconds: number }> {
  const windows = calibrationWindows(options.calibration!);
  const seqLen = windows[0]!.length;
  const mb = options.microBatch ?? Math.max(1, Math.ceil(4096 / seqLen));
  if (!Number.isInteger(mb) || mb < 1) throw new RangeError(`quantizeModel: microBatch must be a positive integer, got ${mb}`);
  const vocab = model.config.vocabSize;
  for (const w of windows) for (const id of w) if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new RangeError(`calibration: token id ${id} is outside the vocabulary [0, ${vocab})`);

  const trueSequential = options.trueSequential ?? true;
  if (typeof trueSequential !== "boolean") throw new TypeError(`quantizeModel: trueSequential must be a boolean, got ${JSON.stringify(trueSequential)}`);

  let spent = 0;
  let statistics = 0;
  const positions = keep(arange(0, seqLen, 1, { dtype: "i32", device: model.device }));
  // The current block's inputs, one [b, L, C] tensor per micro-batch.
  const hidden: Tensor[] = [];
  try {
    noGrad(() => {
      for (let s = 0; s < windows.length; s += mb) {
        const chunk = windows.slice(s, s + mb);
        hidden.push(keep(tidy(() => model.embed(tensorFrom(Int32Array.from(chunk.flat()), { shape: [chunk.length, seqLen], dtype: "i32", device: model.device })))));
      }
    });
    // Stages after the last one with targets need no inputs.
    let lastUseful = stages.length - 1;
    while (lastUseful > 0 && stages[lastUseful]!.targets.length === 0) lastUseful--;
    for (let si = 0; si <= lastUseful; si++) {
      const { block, targets } = stages[si]!;
      for (const group of calibrationGroups(block, targets, trueSequential)) {
        const c0 = performance.now();
        const session = collectStats(model, kind, block, group, hidden, positions, options);
        spent += (performance.now() - c0) / 1000;
        statistics += session.seconds;
        try {
          for (const t of group) await quantizeOne(t, session.take(t.name));
        } finally {
          session.dispose();
        }
      }
      // The next block's inputs: this block's outputs, now with its quantized linears.
      if (block !== null && si < lastUseful) {
        const c1 = performance.now();
        noGrad(() => {
          for (let i = 0; i < hidden.length; i++) {
            const next = keep(tidy(() => model.blockForward(block, hidden[i]!, positions)));
            hidden[i]!.dispose();
            hidden[i] = next;
          }
        });
        spent += (performance.now() - c1) / 1000;
      }
    }
  } finally {
    for (const h of hidden) h.dispose();
    positions.dispose();
  }
  return { seconds: spent, statisticsSeconds: statistics };
}

/** A stage's targets in calibration order: the true-sequential groups of a block, or all at once. */
function calibrationGroups(block: number | null, targets: Target[], trueSequential: boolean): Target[][] {
  if (targets.length === 0) return [];
  if (block === null || !trueSequential) return [targets];
  return SEQUENTIAL_GROUPS.map((g) => g.flatMap((n) => targets.filter((t) => t.layer === n))).filter((g) => g.length > 0);
}

/**
 * Runs one block (or the head) over every micro-batch with recording wrappers on `targets`; each
 * pass stops once every target has recorded its input.
 */
function collectStats(
  model: LlamaModel, kind: "hessian" | "activation-scales", block: number | null, targets: Target[],
  hidden: readonly Tensor[], positions: Tensor, options: QuantizeModelOptions,
): CalibrationSession {
  const session = new CalibrationSession(kind, targets.length);
  const originals = targets.map((t) => t.get());
  const layers = targets.map((t) => t.layer);
  targets.forEach((t, i) => t.set(new RecordingLinear(originals[i]!, t.name, session)));
  try {
    noGrad(() => {
      hidden.forEach((h, i) => {
        session.nextPass();
        try {
          tidy(() => {
            if (block === null) model.head(h);
            else model.blockForward(block, h, positions);
          });
        } catch (err) {
          if (err !== STOP_PASS) throw err;
        }
        if (!session.complete) throw new Error(`calibration: a forward pass of ${block === null ? "lm_head" : `block ${block}`} did not call every layer being calibrated (${layers.join(", ")})`);
        options.onProgress?.({ stage: "calibrate", block, layer: null, layers, done: i + 1, total: hidden.length });
      });
    });
  } catch (err) {
    session.dispose();
    throw err;
  } finally {
    targets.forEach((t, i) => t.set(originals[i]!));
  }
  return session;
}
