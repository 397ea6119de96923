// A synthetic results.json of a tiny-llama grid (rtn, optq, nf4 × bits 2, 4 × group 128, row; every task),
// with the fp and baseline rows, done, skipped and failed cells, and a few absent values (nf4's peak
// memory, the baseline's perplexity). The numbers are made up but shaped like a real run.
import type { BenchResults, CellResult, GroupSize, TaskResult } from "../src/types.js";

const MiB = 2 ** 20;

function classify(before: number, after: number | undefined, tokensPerSecond: number): TaskResult {
  const ft = after === undefined ? {} : { after: { accuracy: after }, finetune: { steps: 20, tokens: 10240, seconds: 10240 / tokensPerSecond, tokensPerSecond, firstLoss: 2.31, lastLoss: 0.42 } };
  return { metric: "accuracy", n: 64, before: { accuracy: before }, ...ft, seconds: after === undefined ? 0.02 : 10240 / tokensPerSecond + 1.5, evalSeconds: after === undefined ? 0.02 : 1.5 };
}

function summarize(before: [number, number, number], after: [number, number, number] | undefined, tokensPerSecond: number): TaskResult {
  const r = ([a, b, c]: [number, number, number]) => ({ rouge1: a, rouge2: b, rougeL: c });
  const ft = after === undefined ? {} : { after: r(after), finetune: { steps: 20, tokens: 8192, seconds: 8192 / tokensPerSecond, tokensPerSecond, firstLoss: 3.05, lastLoss: 1.12 } };
  return { metric: "rougeL", n: 16, before: r(before), ...ft, seconds: after === undefined ? 0.03 : 8192 / tokensPerSecond + 6.25, evalSeconds: after === undefined ? 0.03 : 6.25 };
}

const times = { startedAt: "2025-03-01T10:00:00.000Z", finishedAt: "2025-03-01T10:00:20.000Z" };

function quantized(quantizer: string, bits: number, groupSize: GroupSize, rest: Partial<CellResult>): CellResult {
  const id = `${quantizer}-b${bits}-g${groupSize}`;
  return { id, kind: "quantized", label: quantizer, quantizer, options: {}, bits, groupSize, status: "done", tasks: {}, seconds: 0, ...times, ...rest };
}

function done(ppl: number, bitsPerWeight: number, quantizeSeconds: number, calibrationSeconds: number, acc: [number, number], rougeL: [number, number], peakMiB: number | undefined, seconds: number): Partial<CellResult> {
  return {
    quantize: { seconds: quantizeSeconds, calibrationSeconds, bitsPerWeight, modelBitsPerWeight: bitsPerWeight + 5.5, layers: 14 },
    tasks: {
      ppl: { ppl, nll: Math.log(ppl), tokens: 4080, windows: 16, seqLen: 256, stride: 256, seconds: 1.3 },
      classify: classify(acc[0], acc[1], 2400),
      summarize: summarize([rougeL[0] + 0.01, rougeL[0] / 3, rougeL[0]], [rougeL[1] + 0.02, rougeL[1] / 2, rougeL[1]], 2000),
    },
    ...(peakMiB === undefined ? {} : { peakBytes: peakMiB * MiB }),
    seconds,
  };
}

/** The sample run. */
export const SAMPLE_RESULTS: BenchResults = {
  schema: "modulora-bench/1",
  settings: {
    model: "fixtures/tiny-llama",
    tasks: ["ppl", "classify", "summarize"],
    quantizers: [{ name: "rtn" }, { name: "optq" }, { name: "nf4" }],
    bits: [2, 4],
    groupSizes: [128, "row"],
    ppl: { text: "packages/bench/data/lm/valid.txt", seqLen: 256, stride: 256, maxWindows: 16 },
    classify: { train: "packages/bench/data/spam/train.jsonl", valid: "packages/bench/data/spam/valid.jsonl", maxSamples: 64 },
    summarize: { train: "packages/bench/data/manpage-summary/train.jsonl", valid: "packages/bench/data/manpage-summary/valid.jsonl", maxSamples: 16 },
    finetune: { steps: 20, lr: 0.001, batchSize: 8, seqLen: 128, seed: 0, rank: 8, alpha: 16, dropout: 0, warmup: 0, maxNewTokens: 32 },
    calibration: { text: "packages/bench/data/lm/train.txt", samples: 32, seqLen: 256 },
    fullPrecision: true,
    baseline: true,
    device: "cpu",
    dtype: "f32",
  },
  model: { path: "/work/main/fixtures/tiny-llama", name: "tiny-llama", parameters: 1_234_560, layers: 2, hidden: 64, vocab: 32000 },
  environment: {
    node: "v20.18.0",
    platform: "linux x64",
    cpu: "AMD EPYC 7B13",
    cpus: 2,
    threads: 2,
    memoryGiB: 7.8,
    device: "cpu",
    packages: { "@modulora/bench": "0.1.0", "@modulora/core": "0.1.0", "@modulora/quantizer-rtn": "0.1.0" },
    loadAverage: [1.52, 1.31, 0.987],
  },
  command: "modulora bench --model fixtures/tiny-llama --quantizers rtn,optq,nf4 --bits 2,4 --out /tmp/bench",
  startedAt: "2025-03-01T10:00:00.000Z",
  finishedAt: "2025-03-01T10:04:05.500Z",
  cells: [
    {
      id: "fp", kind: "full-precision", label: null, quantizer: null, options: {}, bits: null, groupSize: null, status: "done",
      tasks: {
        ppl: { ppl: 18.4217, nll: Math.log(18.4217), tokens: 4080, windows: 16, seqLen: 256, stride: 256, seconds: 1.25 },
        classify: classify(0.5, 0.875, 2560),
        summarize: summarize([0.1234, 0.0312, 0.1107], [0.3051, 0.1288, 0.2874], 2048),
      },
      peakBytes: 48.5 * MiB, seconds: 20.1, ...times,
    },
    {
      id: "baseline", kind: "baseline", label: null, quantizer: null, options: {}, bits: null, groupSize: null, status: "done",
      tasks: { classify: classify(0.53125, undefined, 1), summarize: summarize([0.2011, 0.0655, 0.1802], undefined, 1) },
      seconds: 0.05, ...times,
    },
    quantized("rtn", 2, 128, done(412.7731, 2.25, 0.42, 0, [0.5, 0.625], [0.0412, 0.1533], 40, 19.5)),
    quantized("rtn", 2, "row", done(2811.4, 2.0039, 0.38, 0, [0.46875, 0.5], [0.0101, 0.0523], 39.25, 19.25)),
    quantized("rtn", 4, 128, done(19.1023, 4.25, 0.41, 0, [0.5, 0.859375], [0.1098, 0.2811], 41, 20.375)),
    quantized("rtn", 4, "row", done(21.9876, 4.0039, 0.4, 0, [0.5, 0.84375], [0.1051, 0.2744], 40.5, 20.25)),
    quantized("optq", 2, 128, done(95.5, 2.25, 3.25, 1.125, [0.5, 0.75], [0.0811, 0.2012], 52, 23.0)),
    { ...quantized("optq", 2, "row", {}), status: "failed", reason: "OPTQ: the Hessian of model.layers.0.self_attn.q_proj is not positive definite after damping 0.01; raise --damp", seconds: 2.5 },
    quantized("optq", 4, 128, done(18.7702, 4.25, 3.5, 1.25, [0.5, 0.875], [0.1101, 0.2859], 52.25, 23.5)),
    quantized("optq", 4, "row", done(19.9001, 4.0039, 3.375, 1.25, [0.5, 0.859375], [0.1077, 0.2801], 52.25, 23.25)),
    { ...quantized("nf4", 2, 128, {}), status: "skipped", reason: "nf4 supports 4 bits only (asked 2)" },
    { ...quantized("nf4", 2, "row", {}), status: "skipped", reason: "nf4 supports 4 bits only (asked 2)" },
    quantized("nf4", 4, 128, done(19.3456, 4.127, 0.55, 0, [0.5, 0.84375], [0.1089, 0.2798], undefined, 20.5)),
    { ...quantized("nf4", 4, "row", {}), status: "skipped", reason: "nf4 does not support group size row (it supports 64, 128)" },
  ],
};
