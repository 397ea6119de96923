// The model on a device that is not the host: the `sim` backend runs the CPU kernels on private
// storage and counts every transfer. What runs there must give the same numbers as on `cpu`, bit
// for bit, and cross between host and device only where the data has to (weights once at load,
// the ids in, the results out).
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cast, loadSafetensors, memory, noGrad, registerSimBackend, resetPeakMemory, resetSimStats, saveSafetensors, simStats, tensorFrom, tidy, type Tensor } from "@modulora/tensor";
import { QUANTIZER_SPEC_VERSION, type QuantizerPlugin } from "@modulora/core";
import { quantizeRtn, rtnQuantizer } from "@modulora/quantizer-rtn";
import {
  attachLoRA, evaluatePerplexity, generate, loadLlama, loadModel, quantizeModel, saveQuantizedModel, shiftLabels, type LlamaModel, type QuantizeModelOptions,
} from "../src/index.js";
import { FIXTURES } from "./fixtures.js";

const TINY = join(FIXTURES, "tiny-llama");
/** tiny-llama's tensors: embed, 4 × (2 norms + 7 linears), norm, lm_head. */
const TINY_TENSORS = 1 + 4 * 9 + 1 + 1;

let cpu: LlamaModel;
let sim: LlamaModel;
let tmp: string;

beforeAll(() => {
  registerSimBackend();
  tmp = mkdtempSync(join(tmpdir(), "modulora-device-"));
  cpu = loadLlama(TINY).model;
  resetSimStats();
  sim = loadLlama(TINY, { device: "sim" }).model;
});
afterAll(() => {
  cpu?.dispose();
  sim?.dispose();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const ids = [0, 17, 230, 5, 99, 1000, 4095, 3, 12, 7, 8, 64];

/** Logits of one batch of ids on the model's device, read back. */
function logits(model: LlamaModel, values: readonly number[], b = 2): Float32Array {
  return noGrad(() =>
    tidy(() => {
      const x = tensorFrom(Int32Array.from(values), { shape: [b, values.length / b], dtype: "i32", device: model.device });
      return model.forward(x).logits.dataSync() as Float32Array;
    }),
  );
}

describe("loading onto a device", () => {
  it("loadLlama places every weight with one host → device copy and reads nothing back", () => {
    // (counted in beforeAll, around the sim load alone)
    const s = simStats();
    expect(sim.device).toBe("sim");
    expect(s.hostToDevice).toBe(TINY_TENSORS);
    expect(s.deviceToHost).toBe(0);
    expect(s.bytesToDevice).toBe(22033520 - 8 - headerBytes(join(TINY, "model.safetensors")));
  });

  it("a bf16 checkpoint is copied in as bf16 (one transfer per tensor) and cast to f32 on the device", () => {
    const dir = join(tmp, "tiny-bf16");
    const f32 = loadSafetensors(join(TINY, "model.safetensors"));
    const bf = new Map<string, Tensor>([...f32].map(([n, t]) => [n, cast(t, "bf16")]));
    saveSafetensors(join(tmp, "model.bf16.safetensors"), bf);
    for (const t of [...f32.values(), ...bf.values()]) t.dispose();
    // A model directory: the fixture's config and tokenizer around the bf16 weights.
    copyDir(TINY, dir, ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]);
    copyFileSync(join(tmp, "model.bf16.safetensors"), join(dir, "model.safetensors"));
    const onCpu = loadLlama(dir).model;
    resetSimStats();
    const onSim = loadModel(dir, { device: "sim" });
    const s = simStats();
    try {
      expect(onSim.quantized).toBe(false);
      expect(s.hostToDevice).toBe(TINY_TENSORS);
      expect(s.deviceToHost).toBe(0);
      expect(onSim.model.embedTokens.dtype).toBe("f32");
      expect(logits(onSim.model, ids)).toEqual(logits(onCpu, ids));
    } finally {
      onCpu.dispose();
      onSim.model.dispose();
    }
    // dtype bf16: the same transfers, and the bf16 tensors are the model's weights as they came
    // (no f32 copy is ever made: the device's peak is the bf16 model itself).
    const start = memory("sim").bytes;
    resetPeakMemory("sim");
    resetSimStats();
    const bfSim = loadModel(dir, { device: "sim", dtype: "bf16" }).model;
    const t = simStats();
    const bfCpu = loadLlama(dir, { dtype: "bf16" }).model;
    try {
      expect(t.hostToDevice).toBe(TINY_TENSORS);
      expect(t.bytesToDevice).toBe((22033520 - 8 - headerBytes(join(TINY, "model.safetensors"))) / 2);
      expect(bfSim.embedTokens.dtype).toBe("bf16");
      expect(memory("sim").peakBytes - start).toBe(memory("sim").bytes - start);
      expect(logits(bfSim, ids)).toEqual(logits(bfCpu, ids));
    } finally {
      bfSim.dispose();
      bfCpu.dispose();
    }
  });

  it("a compute dtype other than f32 and bf16 is refused with the choices", () => {
    expect(() => loadModel(TINY, { dtype: "f16" as "f32" })).toThrow(/loadModel: dtype "f16" is not a compute dtype \(f16 is a storage type only: it does not compute\); use one of "f32", "bf16"/);
    expect(() => loadLlama(TINY, { dtype: "i32" as "f32" })).toThrow(/loadLlama: dtype "i32" is not a compute dtype; use one of "f32", "bf16"/);
  });

  it("ids on another device than the model are refused, naming both", () => {
    expect(() => noGrad(() => tidy(() => sim.forward(tensorFrom(Int32Array.from(ids), { shape: [2, 6], dtype: "i32" }))))).toThrow(
      /ids are on device 'cpu', the model on 'sim'/,
    );
  });
});

describe("computing on the device", () => {
  it("forward: the same logits as on cpu, bit for bit; one copy in (the ids), one out (the logits)", () => {
    const want = logits(cpu, ids);
    resetSimStats();
    const got = logits(sim, ids);
    const s = simStats();
    expect(got).toEqual(want);
    // positions (arange) and every intermediate stay on the device.
    expect(s.hostToDevice).toBe(1);
    expect(s.deviceToHost).toBe(1);
  });

  it("loss (labels shifted on the device): the same value as on cpu; two copies in, one out", () => {
    const lossOf = (model: LlamaModel) =>
      noGrad(() =>
        tidy(() => {
          const x = tensorFrom(Int32Array.from(ids), { shape: [2, 6], dtype: "i32", device: model.device });
          const y = tensorFrom(Int32Array.from(ids, (v, i) => (i % 6 === 2 ? -100 : v)), { shape: [2, 6], dtype: "i32", device: model.device });
          return model.loss(x, y).item();
        }),
      );
    const want = lossOf(cpu);
    resetSimStats();
    expect(lossOf(sim)).toBe(want);
    const s = simStats();
    expect(s.hostToDevice).toBe(2);
    expect(s.deviceToHost).toBe(1);
  });

  it("shiftLabels runs on the labels' device without a transfer", () => {
    const labels = tensorFrom(Int32Array.from([1, 2, 3, 4, 5, 6]), { shape: [2, 3], dtype: "i32", device: "sim" });
    resetSimStats();
    const shifted = shiftLabels(labels);
    expect(simStats().hostToDevice + simStats().deviceToHost).toBe(0);
    expect(shifted.device).toBe("sim");
    expect(Array.from(shifted.dataSync())).toEqual([2, 3, -100, 5, 6, -100]);
    const one = shiftLabels(tensorFrom(Int32Array.from([7, 8]), { shape: [2, 1], dtype: "i32", device: "sim" }));
    expect(Array.from(one.dataSync())).toEqual([-100, -100]);
    for (const t of [labels, shifted, one]) t.dispose();
  });

  it("generate: the same tokens as on cpu, with one copy in and one out per token", () => {
    const prompt = [0, 17, 230, 5];
    const opts = { maxNewTokens: 5, temperature: 0.8, topK: 20, seed: 3, stopTokens: [] };
    const want = generate(cpu, prompt, opts);
    resetSimStats();
    const got = generate(sim, prompt, opts);
    const s = simStats();
    expect(got).toEqual(want);
    expect(s.hostToDevice).toBe(5);
    expect(s.deviceToHost).toBe(5);
  });

  it("evaluatePerplexity: the same value as on cpu; per batch one copy in and one out", () => {
    const tokens = Array.from({ length: 4 * 16 }, (_, i) => (i * 37 + 11) % 4096);
    const want = evaluatePerplexity(cpu, tokens, { seqLen: 16, batchSize: 2 });
    resetSimStats();
    const got = evaluatePerplexity(sim, tokens, { seqLen: 16, batchSize: 2 });
    const s = simStats();
    expect(got).toEqual(want);
    expect(s.hostToDevice).toBe(2);
    expect(s.deviceToHost).toBe(2);
  });
});

/** A calibrating plugin: reads its Hessian (one transfer per layer), keeps a copy, then quantizes with RTN. */
function hessianPlugin(seen: Float64Array[]): QuantizerPlugin {
  return {
    specVersion: QUANTIZER_SPEC_VERSION, name: "rtn-with-hessian", calibration: "hessian", supportedBits: [4],
    quantize(weight, options, stats) {
      seen.push(stats!.hessian!.dataSync() as Float64Array);
      return quantizeRtn(weight, options);
    },
  };
}

const calibration = { ids: Array.from({ length: 4 }, (_, k) => Array.from({ length: 32 }, (_, i) => (k * 131 + i * 17 + 5) % 4096)) };
/** Quantized layers of tiny-llama: 4 blocks × 7 linears. */
const LAYERS = 28;

/** Quantizes a fresh tiny-llama on `device`; returns the counts of the call, the report and logits after it. */
async function quantizeOn(device: "cpu" | "sim", plugin: QuantizerPlugin, options: Partial<QuantizeModelOptions>) {
  const model = loadLlama(TINY, { device }).model;
  try {
    resetSimStats();
    const r = await quantizeModel(model, plugin, { bits: 4, microBatch: 2, ...options });
    const stats = simStats();
    return { stats, report: r.report.map(({ seconds: _, ...rest }) => rest), logits: logits(model, ids) };
  } finally {
    model.dispose();
  }
}

describe("quantizeModel, attachLoRA and loadQuantizedModel on the device", () => {
  it("calibration statistics are accumulated on the device: the same Hessians, weights and errors as cpu, bit for bit", async () => {
    const onCpu: Float64Array[] = [];
    const onSim: Float64Array[] = [];
    const c = await quantizeOn("cpu", hessianPlugin(onCpu), { calibration });
    const g = await quantizeOn("sim", hessianPlugin(onSim), { calibration });
    expect(onSim).toHaveLength(LAYERS);
    expect(onSim).toEqual(onCpu);
    expect(g.report).toEqual(c.report);
    expect(g.report[0]!.outputError).toBeGreaterThan(0);
    expect(g.logits).toEqual(c.logits);
  });

  it("transfers: calibration costs the windows in (one copy per micro-batch) and each Hessian out once; measuring costs the sums out", async () => {
    // Differences between runs, so that what the quantizer itself moves (RTN reads W, uploads its packed tensors) cancels.
    const rtnOnly = (await quantizeOn("sim", rtnQuantizer, { measureError: false })).stats;
    const calibrated = (await quantizeOn("sim", hessianPlugin([]), { calibration, measureError: false })).stats;
    expect(calibrated.hostToDevice - rtnOnly.hostToDevice).toBe(2); // 4 windows in micro-batches of 2
    expect(calibrated.deviceToHost - rtnOnly.deviceToHost).toBe(LAYERS); // the plugin's read of H, nothing else
    const measured = (await quantizeOn("sim", rtnQuantizer, { measureError: true })).stats;
    // Ŵ is decoded on the device by the affine dequantize kernel: nothing goes in; Σ(W − Ŵ)² and ΣW² come out.
    expect(measured.hostToDevice - rtnOnly.hostToDevice).toBe(0);
    expect(measured.deviceToHost - rtnOnly.deviceToHost).toBe(2 * LAYERS);
    const both = (await quantizeOn("sim", hessianPlugin([]), { calibration, measureError: true })).stats;
    expect(both.deviceToHost - calibrated.deviceToHost).toBe(4 * LAYERS); // + tr(ΔHΔᵀ), tr(WHWᵀ)
  });

  it("attachLoRA makes A and B on the model's device with no transfer: the same factors as on cpu", () => {
    const a = attachLoRA(cpu, { r: 4, targets: ["q_proj", "down_proj"], seed: 7 });
    resetSimStats();
    const b = attachLoRA(sim, { r: 4, targets: ["q_proj", "down_proj"], seed: 7 });
    expect(simStats().hostToDevice + simStats().deviceToHost).toBe(0);
    try {
      const pa = a.parameters();
      const pb = b.parameters();
      expect(pb.map((t) => t.device)).toEqual(pb.map(() => "sim"));
      pb.forEach((t, i) => expect(t.dataSync()).toEqual(pa[i]!.dataSync()));
    } finally {
      a.detach();
      b.detach();
    }
  });

  it("loadModel of a GPTQ checkpoint onto sim: one copy per device tensor (qzeros and g_idx unpacked on the host), nothing read back", async () => {
    const q = loadLlama(TINY).model;
    await quantizeModel(q, rtnQuantizer, { bits: 4, measureError: false });
    const dir = join(tmp, "tiny-gptq");
    saveQuantizedModel(q, dir, { plugin: rtnQuantizer, sourceDir: TINY });
    const want = logits(q, ids);
    q.dispose();
    resetSimStats();
    const r = loadModel(dir, { device: "sim" });
    const s = simStats();
    try {
      expect(r.quantized).toBe(true);
      // 11 dense (embed, 8 norms, norm, lm_head) + per layer qweight, scales and the unpacked zeros (trivial g_idx dropped).
      expect(s.hostToDevice).toBe(11 + 3 * LAYERS);
      expect(s.deviceToHost).toBe(0);
      expect(logits(r.model, ids)).toEqual(want);
    } finally {
      r.model.dispose();
    }
  });
});

/** The byte length of a safetensors header (the u64 at the start). */
function headerBytes(path: string): number {
  const fd = openSync(path, "r");
  const b = Buffer.alloc(8);
  readSync(fd, b, 0, 8, 0);
  closeSync(fd);
  return Number(b.readBigUInt64LE(0));
}

function copyDir(src: string, dst: string, names: readonly string[]): void {
  mkdirSync(dst, { recursive: true });
  for (const n of names) if (existsSync(join(src, n))) copyFileSync(join(src, n), join(dst, n));
}
