/**
 * The calibration driver of {@link quantizeModel}, for plugins that ask for statistics
 * (`calibration: "hessian"` or `"activation-scales"`).
 *
 * The statistics come from calibration windows run through the model block by block, as GPTQ
 * does: the windows are embedded once; for block i the driver installs a recording wrapper in
 * place of each targeted linear, runs the (still full-precision) block on every micro-batch of
 * windows while the wrappers accumulate the statistics of their inputs, quantizes the block's
 * linears, then runs the now-quantized block once more to produce the next block's inputs. So
 * block i sees the outputs of the already-quantized blocks before it. Inside a block the order is
 * true-sequential by default (GPTQ's `true_sequential`): the linears are calibrated and quantized
 * in the groups of {@link SEQUENTIAL_GROUPS} (k,v,q, then o, then up,gate, then down), each group
 * on the outputs of the groups already quantized; a statistics pass stops as soon as the group's
 * last input is recorded. With `trueSequential: false` all of a block's linears are calibrated in
 * one pass on full-precision inputs. Only the current block's inputs ([N, L, C] f32) are held.
 * @module
 */
import { arange, keep, noGrad, tensorFrom, tidy, type Tensor } from "@modulora/tensor";
import type { CalibrationStats } from "@modulora/core";
import type { LlamaModel } from "../model.js";
import type { LinearName } from "../types.js";
import { calibrationWindows } from "./calibration-windows.js";
import type { QuantizeModelOptions } from "./options.js";
import { CalibrationSession, RecordingLinear, STOP_PASS } from "./statistics.js";
import type { Stage, Target } from "./targets.js";

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

/** The calibration driver (see the module comment). Returns the seconds spent outside `plugin.quantize`, and of those in the statistics. */
export async function calibrateAndQuantize(
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
