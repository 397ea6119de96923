// The bf16 compute policy on the model (issue 14, item 5): a bf16 frozen base and bf16
// activations (computed in f32 by the engine, rounded once per op), f32 LoRA factors, gradients
// and optimizer state (master weights), an f32 loss. A bf16 fine-tune of tiny-llama is checked
// against the same fine-tune in f32 step by step; sim against cpu bit for bit; the dtypes and the
// memory of what is kept; an RTN-quantized base under bf16 activations.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AdamW, backward, cast, memory, noGrad, registerSimBackend, resetPeakMemory, tensorFrom, tidy, type Device } from "@modulora/tensor";
import { Trainer } from "@modulora/core";
import { rtnQuantizer } from "@modulora/quantizer-rtn";
import {
  attachLoRA, batchLoss, generate, KVCache, LINEAR_NAMES, LlamaTokenizer, loadLlama, loadModel, loadQuantizedModel, quantizeModel, saveQuantizedModel,
  scoreCandidates, type LlamaModel, type ModelDType, type TokenBatchLike,
} from "../src/index.js";
import { FIXTURES } from "./fixtures.js";

registerSimBackend();

const TINY = join(FIXTURES, "tiny-llama");
/** bf16 unit roundoff (half an ulp of 1). */
const U = 2 ** -8;
const tmp = mkdtempSync(join(tmpdir(), "modulora-bf16-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const tokenizer = LlamaTokenizer.fromDir(TINY);
const text = "The quick brown fox jumps over the lazy dog. Packages are installed with apt. ".repeat(4);
const ids = tokenizer.encode(text).slice(0, 61);
const B = 2;
const T = 16;
/** Four micro-batches of [2, 16] tokens, windows of one text at different offsets. */
const BATCHES: TokenBatchLike[] = [0, 1, 2, 3].map((k) => {
  const x = Int32Array.from({ length: B * T }, (_, i) => ids[(i + k * 5) % ids.length]!);
  return { inputIds: x, labels: x, lengths: [T, T], tokens: B * T };
});

/** Per-step losses of a LoRA fine-tune (r 4 on every linear, no dropout, seed 3) of `model`. */
async function finetune(model: LlamaModel, dtype: ModelDType, steps: number): Promise<number[]> {
  const adapter = attachLoRA(model, { r: 4, alpha: 8, dropout: 0, seed: 3 });
  const parameters = new Map(adapter.parameters().map((p, i) => [`p${i}`, p] as const));
  const losses: number[] = [];
  const trainer = new Trainer({
    parameters, data: { length: BATCHES.length, epoch: (_e, start) => BATCHES.slice(start) }, steps, lr: 1e-3, dtype,
    loss: (b) => batchLoss(model, b as TokenBatchLike, { training: true }),
    onEvent: (e) => void (e.type === "step" && losses.push(e.loss)),
  });
  await trainer.fit();
  trainer.dispose();
  adapter.detach();
  return losses;
}

async function finetuneOn(dtype: ModelDType, steps: number, device: Device = "cpu"): Promise<number[]> {
  const { model } = loadLlama(TINY, { dtype, device });
  try {
    return await finetune(model, dtype, steps);
  } finally {
    model.dispose();
  }
}

describe("bf16 fine-tune of tiny-llama", () => {
  it("tracks the f32 fine-tune within bf16 tolerance at each of 50 steps, and both losses decrease", async () => {
    const before = memory().tensors;
    const f = await finetuneOn("f32", 50);
    const h = await finetuneOn("bf16", 50);
    expect(memory().tensors).toBe(before); // the bf16 run, its casts included, leaves nothing behind
    expect(f).toHaveLength(50);
    expect(h).toHaveLength(50);
    const rel = f.map((lf, i) => Math.abs(h[i]! - lf) / lf);
    // Step 1 is one forward from identical parameters (B = 0): the bf16 base, ~20 rounded ops per
    // block over 4 blocks, and a mean over 30 rows of cross-entropy; measured 0.12 u.
    expect(rel[0]!).toBeLessThanOrEqual(U);
    expect(rel[0]!).toBeGreaterThan(0); // the bf16 run really rounds
    // Later steps add the drift of the f32 factors, whose updates follow bf16 gradients (each
    // relative error ~u): measured at most 3.75 u over the 50 steps (median 0.7 u).
    for (const [i, r] of rel.entries()) expect(r, `step ${i + 1}: f32 ${f[i]}, bf16 ${h[i]}`).toBeLessThanOrEqual(8 * U);
    // Both learn: the last losses are a small fraction of the first (5.0 → about 0.01 here).
    for (const l of [f, h]) expect(l[49]!).toBeLessThan(l[0]! / 10);
  });

  it("activation checkpointing under bf16 trains, with the losses of the run without it bit for bit", async () => {
    const run = async (checkpointing: boolean) => {
      const { model } = loadLlama(TINY, { dtype: "bf16" });
      const adapter = attachLoRA(model, { r: 4, alpha: 8, dropout: 0, seed: 3 });
      const losses: number[] = [];
      const trainer = new Trainer({
        parameters: new Map(adapter.parameters().map((p, i) => [`p${i}`, p] as const)), data: { length: BATCHES.length, epoch: (_e, start) => BATCHES.slice(start) },
        steps: 3, lr: 1e-3, dtype: "bf16", loss: (b) => batchLoss(model, b as TokenBatchLike, { training: true, checkpointing }),
        onEvent: (e) => void (e.type === "step" && losses.push(e.loss)),
      });
      await trainer.fit();
      trainer.dispose();
      model.dispose();
      return losses;
    };
    const plain = await run(false);
    expect(await run(true)).toEqual(plain);
    expect(plain[2]!).toBeLessThan(plain[0]!);
  });

  it("sim runs the same bf16 fine-tune: losses bit-identical to cpu", async () => {
    const c = await finetuneOn("bf16", 4, "cpu");
    const s = await finetuneOn("bf16", 4, "sim");
    expect(s).toEqual(c);
  });
});

describe("what a bf16 model keeps", () => {
  it("base weights are bf16; LoRA factors, their gradients and the optimizer state are f32; logits bf16, loss f32", () => {
    const { model } = loadLlama(TINY, { dtype: "bf16" });
    try {
      expect(model.dtype).toBe("bf16");
      const base = [model.embedTokens, model.norm, ...model.layers.flatMap((l) => [l.inputNorm, l.postAttentionNorm])];
      for (const t of base) expect(t.dtype).toBe("bf16");
      for (const l of model.layers) for (const n of LINEAR_NAMES) expect((l.linears[n] as unknown as { weight: { dtype: string } }).weight.dtype, n).toBe("bf16");
      const adapter = attachLoRA(model, { r: 4, dropout: 0 });
      const params = adapter.parameters();
      const opt = new AdamW(params, { lr: 1e-3 });
      tidy(() => {
        const loss = batchLoss(model, BATCHES[0]!, { training: true });
        expect(loss.dtype).toBe("f32");
        backward(loss);
      });
      for (const p of params) {
        expect(p.dtype).toBe("f32");
        expect(p.grad!.dtype).toBe("f32");
      }
      opt.step();
      const { m, v } = opt.state();
      for (const s of [...m, ...v]) expect(s.dtype).toBe("f32");
      opt.zeroGrad();
      opt.dispose();
      const logits = noGrad(() => tidy(() => model.forward(tensorFrom(BATCHES[0]!.inputIds, { shape: [B, T], dtype: "i32" })).logits.dtype));
      expect(logits).toBe("bf16");
      adapter.detach();
    } finally {
      model.dispose();
    }
  });

  it("the frozen base takes half the tensor memory of f32, at peak while loading an f32 checkpoint too", () => {
    const measure = (dtype: ModelDType) => {
      const start = memory().bytes;
      resetPeakMemory();
      const { model } = loadLlama(TINY, { dtype });
      const held = memory().bytes - start;
      const peak = memory().peakBytes - start;
      model.dispose();
      return { held, peak };
    };
    const f = measure("f32");
    const h = measure("bf16");
    // Every weight of tiny-llama is a float: exactly half the bytes.
    expect(h.held).toBe(f.held / 2);
    // Each f32 tensor on disk is copied in as f32 and cast at once: the peak exceeds the bf16 model
    // by at most the largest raw tensor (the [4096, 256] embedding or lm_head, 4 MiB).
    expect(h.peak).toBeLessThanOrEqual(h.held + 4096 * 256 * 4);
    expect(h.peak).toBeLessThan(0.6 * f.peak);
  });

  it("a bf16 KV cache: cached greedy generation picks the tokens a bf16 forward without cache picks", () => {
    const { model } = loadLlama(TINY, { dtype: "bf16" });
    try {
      const prompt = ids.slice(0, 6);
      const r = generate(model, prompt, { maxNewTokens: 5, temperature: 0, stopTokens: [] });
      const cache = new KVCache(model.config, { maxLength: 8, dtype: model.dtype });
      expect(cache.storageBytes()).toBe(2 * model.config.numLayers * 8 * model.config.numKvHeads * model.config.headDim * 2); // bf16: 2 bytes
      cache.dispose();
      // Greedy decoding by full forwards: the argmax of the last position's log-probabilities.
      const seq = [...prompt];
      for (let k = 0; k < 5; k++) {
        const logits = noGrad(() => tidy(() => Array.from(cast(model.forward(tensorFrom(Int32Array.from(seq), { shape: [1, seq.length], dtype: "i32" }), { lastLogitsOnly: true }).logits, "f32").dataSync())));
        const next = logits.indexOf(Math.max(...logits));
        // scoreCandidates normalizes bf16 logits in f32: log p(next) as f64 from the same logits.
        const max = Math.max(...logits);
        const lse = max + Math.log(logits.reduce((a, x) => a + Math.exp(x - max), 0));
        const [score] = scoreCandidates(model, [{ inputIds: [...seq, next], targetStart: seq.length, targetEnd: seq.length + 1 }]);
        expect(Math.abs(score! - (logits[next]! - lse))).toBeLessThan(1e-5);
        seq.push(next);
      }
      expect(r.ids).toEqual(seq.slice(prompt.length));
    } finally {
      model.dispose();
    }
  });
});

describe("bf16 activations over a quantized base", () => {
  it("an RTN base loaded in bf16 fine-tunes like the same base in f32; quantizing a bf16 model works", async () => {
    const qdir = join(tmp, "rtn4");
    {
      const { model } = loadLlama(TINY);
      await quantizeModel(model, rtnQuantizer, { bits: 4, groupSize: 64 });
      saveQuantizedModel(model, qdir, { sourceDir: TINY, plugin: rtnQuantizer });
      model.dispose();
    }
    const run = async (dtype: ModelDType) => {
      const { model, quantized } = loadModel(qdir, { dtype });
      expect(quantized).toBe(true);
      expect(model.dtype).toBe(dtype);
      expect(model.layers[0]!.linears.q_proj.kind).toBe("quantized");
      try {
        return await finetune(model, dtype, 6);
      } finally {
        model.dispose();
      }
    };
    const f = await run("f32");
    const h = await run("bf16");
    f.forEach((lf, i) => expect(Math.abs(h[i]! - lf), `step ${i + 1}`).toBeLessThanOrEqual(8 * U * lf));
    expect(h[5]!).toBeLessThan(h[0]!);
    expect(loadQuantizedModel(qdir, { dtype: "bf16" }).model.embedTokens.dtype).toBe("bf16");

    // Calibration-free RTN on a bf16 model: the weights are widened to f32 for the quantizer, the
    // dense rest stays bf16, and the model still computes.
    const { model } = loadLlama(TINY, { dtype: "bf16" });
    await quantizeModel(model, rtnQuantizer, { bits: 4, groupSize: 64 });
    expect(model.layers[0]!.linears.q_proj.kind).toBe("quantized");
    expect(model.embedTokens.dtype).toBe("bf16");
    const loss = tidy(() => batchLoss(model, BATCHES[0]!, { training: false }).item());
    expect(Math.abs(loss - f[0]!)).toBeLessThan(0.05 * f[0]!);
    model.dispose();
  });

  it("dtypes other than f32 and bf16 are refused, naming the choices", () => {
    expect(() => loadLlama(TINY, { dtype: "f16" as never })).toThrow(/loadLlama: dtype "f16" is not a compute dtype \(f16 is a storage type only: it does not compute\); use one of "f32", "bf16"/);
    expect(() => loadModel(TINY, { dtype: "f64" as never })).toThrow(/loadModel: dtype "f64" is not a compute dtype; use one of "f32", "bf16"/);
  });
});
