import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { arange, fillInPlace, loadSafetensors, memory, noGrad, tensor, tidy, type Tensor } from "@modulora/tensor";
import { QUANTIZER_SPEC_VERSION, type CalibrationStats, type QuantizerPlugin } from "@modulora/core";
import { quantizeRtn, rtnQuantizer } from "@modulora/quantizer-rtn";
import {
  DenseLinear, LINEAR_NAMES, QuantizedLinear, SEQUENTIAL_GROUPS, evaluatePerplexity, loadLlama, quantizeModel, sampleCalibrationWindows,
  type LayerForwardOptions, type Linear, type LinearName, type LlamaModel, type LlamaTokenizer, type QuantizeProgressEvent,
} from "../src/index.js";
import { relL2 } from "./fixtures.js";

const TINY = fileURLToPath(new URL("../../../fixtures/tiny-llama", import.meta.url));
const VALID = fileURLToPath(new URL("../../../fixtures/data/lm/valid.txt", import.meta.url));

function linearBytes(model: LlamaModel): number {
  let s = 0;
  for (const l of model.layers) for (const n of LINEAR_NAMES) s += l.linears[n].storageBytes();
  return s;
}

describe("quantizeModel with RTN on tiny-llama", () => {
  let ref: Map<string, Tensor>;
  let tokenizer: LlamaTokenizer;
  let validIds: number[];

  beforeAll(async () => {
    ref = loadSafetensors(`${TINY}/reference.safetensors`);
    const loaded = await loadLlama(TINY);
    loaded.model.dispose();
    tokenizer = loaded.tokenizer;
    // The first 8 windows of 256 tokens of the validation text (the fixtures' protocol, truncated).
    validIds = tokenizer.encode(readFileSync(VALID, "utf8").slice(0, 60_000), { addSpecialTokens: false });
  });
  afterAll(() => {
    for (const t of ref.values()) t.dispose();
  });

  it("replaces exactly the 28 block linears (4 bits, group 128: 4.1875 bits per weight) and frees the dense weights", async () => {
    const { model } = await loadLlama(TINY);
    const embed = model.embedTokens;
    const head = model.lmHead;
    const before = memory().bytes;
    const denseBytes = linearBytes(model);
    const events: QuantizeProgressEvent[] = [];
    const { report, bitsPerWeight } = await quantizeModel(model, rtnQuantizer, { bits: 4, onProgress: (e) => events.push(e) });
    expect(report.length).toBe(28);
    let quantized = 0;
    for (const l of model.layers) for (const n of LINEAR_NAMES) if (l.linears[n] instanceof QuantizedLinear) quantized++;
    expect(quantized).toBe(28);
    expect(model.lmHead).toBe(head);
    expect(model.lmHead.kind).toBe("dense");
    expect(model.embedTokens).toBe(embed);
    for (const r of report) {
      expect(r.bits).toBe(4);
      expect(r.bitsPerWeight).toBe(4.1875);
      expect(r.error).toBeGreaterThan(0.05);
      expect(r.error).toBeLessThan(0.15);
    }
    expect(bitsPerWeight).toBe(4.1875);
    expect(report.map((r) => r.name).slice(0, 7)).toEqual([
      "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    ].map((n) => `model.layers.0.${n}`));
    // Dense weights gone, packed weights in: memory moves by exactly the difference.
    expect(memory().bytes).toBe(before - denseBytes + linearBytes(model));
    expect(linearBytes(model) / denseBytes).toBeCloseTo(4.1875 / 32, 6);
    expect(events.filter((e) => e.stage === "quantize").map((e) => e.done)).toEqual(Array.from({ length: 28 }, (_, i) => i + 1));
    expect(events.every((e) => e.total === 28)).toBe(true);
    model.dispose();
  });

  // Measured: logits relative L2 0.078 / 0.171 / 0.434 at 4 / 3 / 2 bits; perplexity on the first
  // 8 windows of 256: 29.88 (f32) / 30.77 / 35.49 / 115.3.
  it("4-bit logits stay close to full precision (relative L2 < 0.1) and perplexity is monotone: fp < 4 < 3 < 2 bits", async () => {
    const ids = ref.get("input_ids")!;
    const logitsOf = (m: LlamaModel) => noGrad(() => tidy(() => m.forward(ids).logits.dataSync() as Float32Array));
    const { model: fp } = await loadLlama(TINY);
    const fpLogits = logitsOf(fp);
    const ppl = [evaluatePerplexity(fp, validIds, { seqLen: 256, maxWindows: 8 }).perplexity];
    fp.dispose();
    const rel: number[] = [];
    for (const bits of [4, 3, 2]) {
      const { model } = await loadLlama(TINY);
      await quantizeModel(model, rtnQuantizer, { bits, groupSize: 128 });
      rel.push(relL2(logitsOf(model), fpLogits));
      ppl.push(evaluatePerplexity(model, validIds, { seqLen: 256, maxWindows: 8 }).perplexity);
      model.dispose();
    }
    console.log(`tiny-llama RTN g128: logits relative L2 4/3/2 bits = ${rel.map((r) => r.toFixed(4)).join(" / ")}; perplexity (8 windows of 256) fp/4/3/2 = ${ppl.map((p) => p.toFixed(3)).join(" / ")}`);
    expect(rel[0]).toBeLessThan(0.1);
    expect(rel[0]).toBeLessThan(rel[1]!);
    expect(rel[1]).toBeLessThan(rel[2]!);
    for (let i = 1; i < ppl.length; i++) expect(ppl[i]).toBeGreaterThan(ppl[i - 1]!);
  });

  it("honours targets, includeLmHead and groupSize \"row\"", async () => {
    const { model } = await loadLlama(TINY);
    const { report } = await quantizeModel(model, rtnQuantizer, { bits: 3, groupSize: "row", targets: ["q_proj", "down_proj"], includeLmHead: true });
    expect(report.map((r) => r.name)).toEqual([
      ...[0, 1, 2, 3].flatMap((i) => [`model.layers.${i}.self_attn.q_proj`, `model.layers.${i}.mlp.down_proj`]),
      "lm_head",
    ]);
    for (const l of model.layers) for (const n of LINEAR_NAMES) expect(l.linears[n].kind).toBe(n === "q_proj" || n === "down_proj" ? "quantized" : "dense");
    expect(model.lmHead.kind).toBe("quantized");
    // per row: 3 + (16 + 8) / in bits
    expect(report[0]!.bitsPerWeight).toBeCloseTo(3 + 24 / 256, 12);
    expect(report[1]!.bitsPerWeight).toBeCloseTo(3 + 24 / 768, 12);
    model.dispose();
  });

  it("without groupSize, the plugin's defaultGroupSize (else 128) is what the plugin gets", async () => {
    const seen: unknown[] = [];
    const by64: QuantizerPlugin = { ...rtnQuantizer, name: "rtn-g64", defaultGroupSize: 64, quantize: (w, o) => (seen.push(o.groupSize), rtnQuantizer.quantize(w, o)) };
    const { model } = await loadLlama(TINY);
    const { report } = await quantizeModel(model, by64, { bits: 4, targets: ["q_proj"] });
    expect(seen).toEqual([64, 64, 64, 64]);
    expect(report[0]!.bitsPerWeight).toBeCloseTo(4 + 24 / 64, 12); // f16 scale + u8 zero per 64 weights
    seen.length = 0;
    await quantizeModel(model, { ...by64, name: "rtn-g128", defaultGroupSize: undefined }, { bits: 4, targets: ["k_proj"] });
    expect(seen).toEqual([128, 128, 128, 128]);
    model.dispose();
  });

  it("refuses bad options with clear errors, and leaves the model untouched", async () => {
    const { model } = await loadLlama(TINY);
    await expect(quantizeModel(model, rtnQuantizer, { bits: 5 })).rejects.toThrow(/does not support bits = 5; it supports 2, 3, 4, 8/);
    await expect(quantizeModel(model, rtnQuantizer, { bits: 4, targets: ["qkv_proj" as LinearName] })).rejects.toThrow(/unknown target 'qkv_proj'/);
    await expect(quantizeModel(model, "no-such-quantizer", { bits: 4 })).rejects.toThrow(/unknown quantizer 'no-such-quantizer'/);
    const needsData = { ...rtnQuantizer, name: "needs-data", calibration: "hessian" as const };
    await expect(quantizeModel(model, needsData, { bits: 4 })).rejects.toThrow(/needs calibration data \(hessian\); pass calibration/);
    await expect(quantizeModel(model, needsData, { bits: 4, calibration: { ids: [[1, 2], [3]] } })).rejects.toThrow(/same length/);
    await expect(quantizeModel(model, needsData, { bits: 4, calibration: { ids: [[1, 99999]] } })).rejects.toThrow(/token id 99999 is outside the vocabulary/);
    await expect(quantizeModel(model, needsData, { bits: 4, calibration: { ids: [[1, 2]] }, trueSequential: "yes" as unknown as boolean })).rejects.toThrow(/trueSequential must be a boolean/);
    for (const l of model.layers) for (const n of LINEAR_NAMES) expect(l.linears[n]).toBeInstanceOf(DenseLinear);
    // A plugin's failure names the layer it was quantizing.
    const picky = { ...rtnQuantizer, name: "picky", quantize: () => { throw new RangeError("the Hessian is not positive definite; raise percdamp"); } };
    const failure = quantizeModel(model, picky, { bits: 4, targets: ["v_proj"] });
    await expect(failure).rejects.toThrow(RangeError);
    await expect(failure).rejects.toThrow(/^model\.layers\.0\.self_attn\.v_proj: the Hessian is not positive definite; raise percdamp$/);
    await quantizeModel(model, rtnQuantizer, { bits: 4, targets: ["q_proj"] });
    await expect(quantizeModel(model, rtnQuantizer, { bits: 4 })).rejects.toThrow(/model.layers.0.self_attn.q_proj is a quantized layer, not a dense one/);
    model.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// The calibration driver
// ---------------------------------------------------------------------------------------------

interface Received {
  name: string;
  inFeatures: number;
  samples: number;
  hessian?: Float64Array;
  scales?: Float32Array;
  tensors: Tensor[];
}

/** A fake plugin that records the statistics it is given and quantizes with RTN. */
function recordingPlugin(calibration: "hessian" | "activation-scales", received: Received[]): QuantizerPlugin {
  return {
    specVersion: QUANTIZER_SPEC_VERSION,
    name: `recording-${calibration}`,
    calibration,
    supportedBits: [2, 3, 4, 8],
    quantize(weight, options, stats?: CalibrationStats) {
      if (!stats) throw new Error("no stats");
      const inF = weight.shape[1]!;
      received.push({
        name: "", inFeatures: inF, samples: stats.samples,
        hessian: stats.hessian ? stats.hessian.dataSync() as Float64Array : undefined,
        scales: stats.activationScales ? stats.activationScales.dataSync() as Float32Array : undefined,
        tensors: [stats.hessian, stats.activationScales].filter((t): t is Tensor => t !== undefined),
      });
      if (stats.hessian) expect(stats.hessian.shape).toEqual([inF, inF]);
      // A plugin may scribble on its statistics (GPTQ damps H in place): the shared copies must not mind.
      if (stats.hessian) fillInPlace(stats.hessian, -1);
      return quantizeRtn(weight, options);
    },
  };
}

/** Wraps a linear so that its inputs are accumulated into Σ xᵀx (plain f64 loops) and Σ |x|. */
class HookLinear implements Linear {
  readonly kind = "dense" as const;
  readonly h: Float64Array;
  readonly abs: Float64Array;
  rows = 0;
  constructor(public inner: Linear) {
    this.h = new Float64Array(inner.inFeatures * inner.inFeatures);
    this.abs = new Float64Array(inner.inFeatures);
  }
  get inFeatures() { return this.inner.inFeatures; }
  get outFeatures() { return this.inner.outFeatures; }
  forward(x: Tensor, o?: LayerForwardOptions): Tensor {
    const n = this.inFeatures;
    const v = x.dataSync() as Float32Array;
    const rows = v.length / n;
    for (let r = 0; r < rows; r++) {
      const row = v.subarray(r * n, (r + 1) * n);
      for (let i = 0; i < n; i++) {
        this.abs[i] += Math.abs(row[i]!);
        const xi = row[i]!;
        if (xi === 0) continue;
        const hi = this.h.subarray(i * n, (i + 1) * n);
        for (let j = 0; j < n; j++) hi[j] += xi * row[j]!;
      }
    }
    this.rows += rows;
    return this.inner.forward(x, o);
  }
  parameters() { return []; }
  storageBytes() { return this.inner.storageBytes(); }
  dispose() { this.inner.dispose(); }
}

function maxRelDiff(a: Float64Array, b: Float64Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

describe("the calibration driver", () => {
  const N = 4;
  const L = 32;
  let text: string;
  let windows: number[][];
  let tokenizer: LlamaTokenizer;

  beforeAll(async () => {
    const loaded = await loadLlama(TINY);
    loaded.model.dispose();
    tokenizer = loaded.tokenizer;
    text = readFileSync(VALID, "utf8").slice(0, 20_000);
    windows = sampleCalibrationWindows(tokenizer.encode(text, { addSpecialTokens: false }), N, L, 7);
  });

  it("samples windows reproducibly from a seed", () => {
    const ids = Array.from({ length: 1000 }, (_, i) => i);
    const a = sampleCalibrationWindows(ids, 16, 100, 3);
    expect(sampleCalibrationWindows(ids, 16, 100, 3)).toEqual(a);
    expect(sampleCalibrationWindows(ids, 16, 100, 4)).not.toEqual(a);
    for (const w of a) {
      expect(w.length).toBe(100);
      expect(w[0]).toBeGreaterThanOrEqual(0);
      expect(w[0]).toBeLessThanOrEqual(900);
      expect(w[99]! - w[0]!).toBe(99);
    }
    expect(sampleCalibrationWindows(ids, 1, 1000, 0)[0]![0]).toBe(0);
    expect(() => sampleCalibrationWindows(ids, 1, 1001, 0)).toThrow(/1000 tokens, fewer than one window of seqLen = 1001/);
  });

  it("trueSequential: false hands each layer H = Σ xᵀx (f64 [in, in]) of its inputs, block 1 fed by the already-quantized block 0, and frees it", async () => {
    const { model } = await loadLlama(TINY);
    const received: Received[] = [];
    const plugin = recordingPlugin("hessian", received);
    const before = memory().bytes;
    const denseBytes = linearBytes(model);
    const events: QuantizeProgressEvent[] = [];
    const { report } = await quantizeModel(model, plugin, {
      bits: 4, groupSize: 128, calibration: { text, tokenizer, samples: N, seqLen: L, seed: 7 }, microBatch: 3, trueSequential: false,
      onProgress: (e) => events.push(e),
    });
    expect(received.length).toBe(28);
    received.forEach((r, i) => (r.name = report[i]!.name));
    for (const r of received) expect(r.samples).toBe(N * L);
    for (const r of report) expect(r.samples).toBe(N * L);
    // Every statistics tensor handed out is freed, and nothing else is left behind.
    for (const r of received) for (const t of r.tensors) expect(t.isDisposed).toBe(true);
    expect(memory().bytes).toBe(before - denseBytes + linearBytes(model));
    // 2 micro-batches (3 + 1 windows) per block
    expect(events.filter((e) => e.stage === "calibrate").map((e) => `${e.block}:${e.done}/${e.total}`)).toEqual(["0:1/2", "0:2/2", "1:1/2", "1:2/2", "2:1/2", "2:2/2", "3:1/2", "3:2/2"]);
    model.dispose();

    // Independently, with hooks: block 0's inputs in the full-precision model (inside a block every
    // linear sees full-precision inputs), then block 1's behind block 0 quantized as the plugin did.
    const { model: ref } = await loadLlama(TINY);
    const hooks = (block: number) =>
      Object.fromEntries(LINEAR_NAMES.map((n) => {
        const hook = new HookLinear(ref.layers[block]!.linears[n]);
        ref.layers[block]!.linears[n] = hook;
        return [n, hook];
      })) as Record<LinearName, HookLinear>;
    const run = (blocks: number) =>
      noGrad(() => tidy(() => {
        for (let s = 0; s < N; s += 3) {
          let x = ref.embed(tensorOf(windows.slice(s, s + 3)));
          for (let b = 0; b < blocks; b++) x = ref.blockForward(b, x, arangeI32(L));
        }
      }));
    const h0 = hooks(0);
    run(1);
    for (const n of LINEAR_NAMES) {
      const dense = h0[n].inner as DenseLinear;
      ref.layers[0]!.linears[n] = new QuantizedLinear(quantizeRtn(dense.weight, { bits: 4, groupSize: 128 }));
      dense.dispose();
    }
    const h1 = hooks(1);
    run(2);
    for (const [block, h] of [[0, h0], [1, h1]] as const) {
      for (const n of LINEAR_NAMES) {
        const r = received.find((x) => x.name.startsWith(`model.layers.${block}.`) && x.name.endsWith(`.${n}`))!;
        expect(h[n].rows).toBe(N * L);
        const d = maxRelDiff(r.hessian!, h[n].h);
        expect(d, `${r.name}`).toBeLessThan(1e-6); // each micro-batch's xᵀx is summed in f32 (as GPTQ does), then in f64
      }
    }
    ref.dispose();
  });

  it("true-sequential (the default): k,v,q, then o, then up,gate, then down, each group calibrated behind the groups already quantized", async () => {
    const { model } = await loadLlama(TINY);
    const received: Received[] = [];
    const events: QuantizeProgressEvent[] = [];
    const before = memory().bytes;
    const denseBytes = linearBytes(model);
    const { report } = await quantizeModel(model, recordingPlugin("hessian", received), {
      bits: 4, groupSize: 128, calibration: { ids: windows }, microBatch: 3, onProgress: (e) => events.push(e),
    });
    expect(report.slice(0, 7).map((r) => r.layer)).toEqual(SEQUENTIAL_GROUPS.flat());
    received.forEach((r, i) => (r.name = report[i]!.name));
    expect(memory().bytes).toBe(before - denseBytes + linearBytes(model));
    const calib = events.filter((e) => e.stage === "calibrate" && e.block === 0).map((e) => `${e.layers!.join(",")}:${e.done}/${e.total}`);
    expect(calib).toEqual(SEQUENTIAL_GROUPS.flatMap((g) => [`${g.join(",")}:1/2`, `${g.join(",")}:2/2`]));
    model.dispose();

    // Reference: group by group, hooks on the group over whole forward passes, then the group
    // quantized with RTN (what the recording plugin returns); block 1 behind all of block 0.
    // Block 0's o_proj and down_proj are also hooked in the first, all-full-precision pass.
    const { model: ref } = await loadLlama(TINY);
    const run = (blocks: number) =>
      noGrad(() => tidy(() => {
        for (let s = 0; s < N; s += 3) {
          let x = ref.embed(tensorOf(windows.slice(s, s + 3)));
          for (let b = 0; b < blocks; b++) x = ref.blockForward(b, x, arangeI32(L));
        }
      }));
    const expected = new Map<string, Float64Array>();
    const fullPrecision = new Map<LinearName, Float64Array>();
    for (const block of [0, 1]) {
      const linears = ref.layers[block]!.linears;
      for (const [g, group] of SEQUENTIAL_GROUPS.entries()) {
        const hooks = group.map((n) => (linears[n] = new HookLinear(linears[n])));
        const fp = block === 0 && g === 0 ? (["o_proj", "down_proj"] as const).map((n) => [n, (linears[n] = new HookLinear(linears[n]))] as const) : [];
        run(block + 1);
        for (const [n, h] of fp) {
          fullPrecision.set(n, h.h);
          linears[n] = h.inner;
        }
        group.forEach((n, i) => {
          expected.set(`${block}.${n}`, hooks[i]!.h);
          const dense = hooks[i]!.inner as DenseLinear;
          linears[n] = new QuantizedLinear(quantizeRtn(dense.weight, { bits: 4, groupSize: 128 }));
          dense.dispose();
        });
      }
    }
    ref.dispose();
    for (const block of [0, 1]) {
      for (const n of LINEAR_NAMES) {
        const r = received.find((x) => x.name.startsWith(`model.layers.${block}.`) && x.name.endsWith(`.${n}`))!;
        expect(maxRelDiff(r.hessian!, expected.get(`${block}.${n}`)!), r.name).toBeLessThan(1e-6);
      }
    }
    // The order matters: o and down see inputs that differ from the full-precision block's.
    for (const n of ["o_proj", "down_proj"] as const) {
      const r = received.find((x) => x.name === `model.layers.0.${n === "o_proj" ? "self_attn" : "mlp"}.${n}`)!;
      expect(maxRelDiff(r.hessian!, fullPrecision.get(n)!), n).toBeGreaterThan(1e-3);
    }
  });

  it("hands activation-scales plugins the mean |x| per input channel", async () => {
    const { model } = await loadLlama(TINY);
    const received: Received[] = [];
    await quantizeModel(model, recordingPlugin("activation-scales", received), { bits: 4, targets: ["q_proj", "down_proj"], calibration: { ids: windows }, trueSequential: false });
    model.dispose();
    const { model: ref } = await loadLlama(TINY);
    const hq = new HookLinear(ref.layers[0]!.linears.q_proj);
    ref.layers[0]!.linears.q_proj = hq;
    const hd = new HookLinear(ref.layers[0]!.linears.down_proj);
    ref.layers[0]!.linears.down_proj = hd;
    noGrad(() => tidy(() => ref.blockForward(0, ref.embed(tensorOf(windows)), arangeI32(L))));
    for (const [r, h] of [[received[0]!, hq], [received[1]!, hd]] as const) {
      expect(r.samples).toBe(N * L);
      expect(r.hessian).toBeUndefined();
      for (let i = 0; i < r.inFeatures; i++) expect(r.scales![i]).toBeCloseTo(h.abs[i]! / (N * L), 5);
    }
    ref.dispose();
  });
});

function tensorOf(windows: number[][]): Tensor {
  return tensor(Int32Array.from(windows.flat()), [windows.length, windows[0]!.length], { dtype: "i32" });
}
function arangeI32(n: number): Tensor {
  return arange(0, n, 1, { dtype: "i32" });
}

describe("output reconstruction error", () => {
  it("sqrt(tr(ΔHΔᵀ)/tr(WHWᵀ)) with H = XᵀX equals ‖XŴᵀ − XWᵀ‖_F / ‖XWᵀ‖_F", async () => {
    const { randn, matmul, tensor, cast, dispose: free, tidy: scope } = await import("@modulora/tensor");
    const { quantizeRtn } = await import("@modulora/quantizer-rtn");
    const { outputReconstructionError } = await import("../src/index.js");
    const w = randn([12, 64], { seed: 3 });
    const x = randn([40, 64], { seed: 4 });
    const q = quantizeRtn(w, { bits: 3, groupSize: 32 });
    const h = scope(() => { const x64 = cast(x, "f64"); return matmul(x64, x64, { transA: true }); });
    const got = outputReconstructionError(w, q, h);
    const hat = new Float32Array(12 * 64);
    q.materialize(0, 12, hat);
    const ref = scope(() => {
      const y = matmul(x, w, { transB: true }).toArray();
      const yq = matmul(x, tensor(hat, [12, 64]), { transB: true }).toArray();
      let num = 0, den = 0;
      for (let i = 0; i < y.length; i++) { num += (yq[i]! - y[i]!) ** 2; den += y[i]! ** 2; }
      return Math.sqrt(num / den);
    });
    expect(Math.abs(got - ref) / ref).toBeLessThan(1e-5);
    expect(got).toBeGreaterThan(0);
    q.dispose();
    free([w, x, h]);
  });
});
