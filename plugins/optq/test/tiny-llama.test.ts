// OPTQ on tiny-llama with real calibration activations (fixtures/data/lm/calib-small.txt through
// quantizeModel's calibration driver): per-layer output error and perplexity against RTN, and the
// GPTQ checkpoint round trip with act-order.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { noGrad, tensor, tidy } from "@modulora/tensor";
import { dequantizeAll, hessianError } from "@modulora/core/testing";
import type { QuantizerPlugin } from "@modulora/core";
import { quantizeRtn, rtnQuantizer } from "@modulora/quantizer-rtn";
import { LlamaTokenizer, evaluatePerplexity, loadLlama, loadQuantizedModel, quantizeModel, saveQuantizedModel, type LlamaModel } from "@modulora/llama";
import { optqQuantizer, quantizeOptq } from "../src/index.js";

const TINY = fileURLToPath(new URL("../../../fixtures/tiny-llama", import.meta.url));
const CALIB = fileURLToPath(new URL("../../../fixtures/data/lm/calib-small.txt", import.meta.url));
const VALID = fileURLToPath(new URL("../../../fixtures/data/lm/valid.txt", import.meta.url));
const tokenizer = LlamaTokenizer.fromDir(TINY);
const calibration = { text: readFileSync(CALIB, "utf8"), tokenizer, samples: 16, seqLen: 128, seed: 0 };
const validIds = tokenizer.encode(readFileSync(VALID, "utf8").slice(0, 120_000), { addSpecialTokens: false });
const work = mkdtempSync(join(tmpdir(), "modulora-optq-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ppl = (m: LlamaModel) => evaluatePerplexity(m, validIds, { seqLen: 256, maxWindows: 12, batchSize: 4 }).perplexity;

describe("OPTQ on tiny-llama with real calibration activations", () => {
  it("3 bits, group 128: every layer's output error ‖XŴᵀ − XWᵀ‖/‖XWᵀ‖ is below RTN's, act-order on and off", async () => {
    // A plugin that sees each layer's real Hessian (from the driver) and compares OPTQ with RTN on it.
    const rows: { name: string; rtn: number; optq: number; optqAct: number }[] = [];
    let layer = 0;
    const probe: QuantizerPlugin = {
      ...optqQuantizer,
      name: "optq-probe",
      quantize(weight, options, stats) {
        const [out, inF] = weight.shape as [number, number];
        const w = weight.dataSync() as Float32Array;
        const h = stats!.hessian!.dataSync() as Float64Array;
        const err = (q: ReturnType<typeof quantizeRtn>) => { const e = hessianError(dequantizeAll(q), w, h, out, inF); q.dispose(); return e; };
        const rtn = err(quantizeRtn(weight, options));
        const optqAct = err(quantizeOptq(weight, { ...options, actOrder: true }, stats));
        const q = quantizeOptq(weight, options, stats);
        rows.push({ name: `${layer++}`, rtn, optq: hessianError(dequantizeAll(q), w, h, out, inF), optqAct });
        return q;
      },
    };
    const { model } = await loadLlama(TINY);
    await quantizeModel(model, probe, { bits: 3, groupSize: 128, calibration, measureError: false });
    model.dispose();
    expect(rows.length).toBe(28);
    for (const r of rows) {
      expect(r.optq).toBeLessThan(r.rtn);
      expect(r.optqAct).toBeLessThan(r.rtn);
    }
    const mean = (k: "rtn" | "optq" | "optqAct") => rows.reduce((s, r) => s + r[k], 0) / rows.length;
    console.log(`tiny-llama 3-bit g128 mean output error: RTN ${mean("rtn").toFixed(4)}, OPTQ ${mean("optq").toFixed(4)}, OPTQ act-order ${mean("optqAct").toFixed(4)}`);
    expect(mean("optq")).toBeLessThan(0.8 * mean("rtn"));
  });

  it("perplexity (12 windows of 256 of valid.txt): OPTQ 3-bit < RTN 3-bit, per row and group 128", async () => {
    const result: Record<string, number> = {};
    for (const groupSize of [128, "row"] as const) {
      const { model: r } = await loadLlama(TINY);
      await quantizeModel(r, rtnQuantizer, { bits: 3, groupSize, measureError: false });
      result[`rtn ${groupSize}`] = ppl(r);
      r.dispose();
      const { model: o } = await loadLlama(TINY);
      await quantizeModel(o, optqQuantizer, { bits: 3, groupSize, calibration, measureError: false });
      result[`optq ${groupSize}`] = ppl(o);
      o.dispose();
      expect(result[`optq ${groupSize}`]!).toBeLessThan(result[`rtn ${groupSize}`]!);
    }
    console.log(`tiny-llama 3-bit perplexity: ${JSON.stringify(result)}`);
  });

  it("GPTQ checkpoint interop: act-order → saveQuantizedModel → loadQuantizedModel gives identical logits, desc_act true", async () => {
    const { model } = await loadLlama(TINY);
    await quantizeModel(model, optqQuantizer, { bits: 4, groupSize: 64, actOrder: true, calibration, measureError: false });
    const dir = join(work, "optq-act");
    const saved = saveQuantizedModel(model, dir, { sourceDir: TINY, plugin: optqQuantizer, options: { bits: 4, groupSize: 64, actOrder: true } });
    expect(saved.quantMethod).toBe("gptq");
    const qc = JSON.parse(readFileSync(join(dir, "quantize_config.json"), "utf8"));
    expect(qc.desc_act).toBe(true);
    expect(qc.bits).toBe(4);
    expect(qc.group_size).toBe(64);
    const ids = validIds.slice(0, 64);
    const logits = (m: LlamaModel) => noGrad(() => tidy(() => Array.from(m.forward(tensor(Int32Array.from(ids), [1, 64], { dtype: "i32" })).logits.dataSync() as Float32Array)));
    const before = logits(model);
    const { model: loaded } = loadQuantizedModel(dir);
    expect(logits(loaded)).toEqual(before);
    model.dispose();
    loaded.dispose();
  });
});
