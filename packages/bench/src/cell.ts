// One row of the grid, run in-process: load the model, quantize it (quantized cells), run the
// tasks, dispose everything. A failure becomes a `failed` result; an abort propagates.
import { getQuantizer, resolveQuantizerOptions } from "@modulora/core";
import { LINEAR_NAMES, loadModel, quantizeModel, type LlamaModel, type QuantizeModelResult } from "@modulora/llama";
import { dtypeInfo, memory, resetPeakMemory, type Tensor } from "@modulora/tensor";
import { runBaseline, runFinetuneTask, runPerplexity, type BenchData, type PhaseReporter } from "./tasks.js";
import type { BenchCell, CellResult, QuantizeResult } from "./types.js";

/** Thrown by a run stopped through its `signal`; the finished cells stay in `out`. */
export class BenchAbortError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AbortError";
  }
}

const tensorBytes = (t: Tensor) => t.size * dtypeInfo(t.dtype).size;

/** Bits per parameter of the whole model as held: every linear's storage (codes and metadata), the embedding, the head and the norms. */
export function modelBitsPerWeight(model: LlamaModel): number {
  let bytes = tensorBytes(model.embedTokens) + tensorBytes(model.norm) + model.lmHead.storageBytes();
  let params = model.embedTokens.size + model.norm.size + model.lmHead.inFeatures * model.lmHead.outFeatures;
  if (model.config.tieWordEmbeddings) {
    // lm_head shares the embedding's storage: counted once, like its parameters.
    bytes -= model.lmHead.storageBytes();
    params -= model.lmHead.inFeatures * model.lmHead.outFeatures;
  }
  for (const layer of model.layers) {
    bytes += tensorBytes(layer.inputNorm) + tensorBytes(layer.postAttentionNorm);
    params += layer.inputNorm.size + layer.postAttentionNorm.size;
    for (const n of LINEAR_NAMES) {
      const l = layer.linears[n];
      bytes += l.storageBytes();
      params += l.inFeatures * l.outFeatures;
    }
  }
  return (bytes * 8) / params;
}

/** What {@link runCell} needs besides the cell. */
export interface CellContext {
  readonly data: BenchData;
  readonly report: PhaseReporter;
  /** Throws (a {@link BenchAbortError}) when the run was asked to stop. */
  readonly checkAbort: () => void;
}

function quantizeResult(r: QuantizeModelResult, model: LlamaModel): QuantizeResult {
  const errors = r.report.map((l) => l.error);
  const meanError = errors.every((e): e is number => typeof e === "number" && Number.isFinite(e)) && errors.length ? errors.reduce((s, e) => s + e, 0) / errors.length : undefined;
  return {
    seconds: r.seconds, calibrationSeconds: r.calibrationSeconds, bitsPerWeight: r.bitsPerWeight, modelBitsPerWeight: modelBitsPerWeight(model), layers: r.report.length,
    ...(meanError !== undefined ? { meanError } : {}),
  };
}

/**
 * Runs one row: the baseline row evaluates without a model; the fp and quantized rows load the
 * model onto the run's device, quantize it (quantized rows), then run the tasks in order. An
 * error inside the cell becomes `status: "failed"` with its message; a {@link BenchAbortError}
 * is rethrown. A skipped cell returns at once.
 */
export async function runCell(cell: BenchCell, ctx: CellContext): Promise<CellResult> {
  const startedAt = new Date();
  const t0 = performance.now();
  const s = ctx.data.settings;
  const finish = (rest: Omit<CellResult, keyof BenchCell | "seconds" | "startedAt" | "finishedAt">): CellResult => ({
    ...cell, ...rest, seconds: (performance.now() - t0) / 1000, startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(),
  });
  if (cell.skip) return finish({ status: "skipped", reason: cell.skip, tasks: {} });
  const tasks: { ppl?: CellResult["tasks"]["ppl"]; classify?: CellResult["tasks"]["classify"]; summarize?: CellResult["tasks"]["summarize"] } = {};
  let quantize: QuantizeResult | undefined;
  let model: LlamaModel | null = null;
  let peakBytes: number | undefined;
  try {
    if (cell.kind === "baseline") {
      for (const t of s.tasks) if (t !== "ppl") tasks[t] = runBaseline(t, ctx.data);
      return finish({ status: "done", tasks });
    }
    ctx.report("load", 0, 1);
    model = loadModel(s.model, { device: s.device, dtype: s.dtype }).model;
    ctx.report("load", 1, 1);
    resetPeakMemory(s.device);
    ctx.checkAbort();
    if (cell.kind === "quantized") {
      const plugin = getQuantizer(cell.quantizer!);
      const options = resolveQuantizerOptions(plugin, cell.options, { strict: true });
      const total = model.layers.length * LINEAR_NAMES.length;
      ctx.report("quantize", 0, total);
      const r = await quantizeModel(model, plugin, {
        ...options, bits: cell.bits!, groupSize: cell.groupSize!,
        ...(plugin.calibration !== "none" ? { calibration: { ids: ctx.data.calibrationIds() } } : {}),
        onProgress: (e) => {
          if (e.stage === "quantize") ctx.report("quantize", e.done, e.total);
        },
      });
      quantize = quantizeResult(r, model);
      ctx.checkAbort();
    }
    for (const t of s.tasks) {
      if (t === "ppl") tasks.ppl = runPerplexity(model, ctx.data, ctx.report);
      else tasks[t] = await runFinetuneTask(t, model, ctx.data, ctx.report, ctx.checkAbort);
      ctx.checkAbort();
    }
    peakBytes = memory(s.device).peakBytes;
    return finish({ status: "done", ...(quantize ? { quantize } : {}), tasks, peakBytes });
  } catch (err) {
    if (err instanceof BenchAbortError) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    return finish({ status: "failed", reason, ...(quantize ? { quantize } : {}), tasks });
  } finally {
    model?.dispose();
  }
}
