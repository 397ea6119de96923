// NF4 on a whole model (fixtures/tiny-llama): quantizeModel → saveQuantizedModel →
// loadQuantizedModel gives the same logits, and the perplexity by the fixtures' protocol
// (fixtures/data/lm/valid.txt as one string without special tokens, non-overlapping windows of
// 256 tokens from the start; here the first 16 windows) against full precision and RTN 4-bit g64.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keep, loadSafetensors, memory, noGrad, tidy, type Tensor } from "@modulora/tensor";
import type { CodebookWeight } from "@modulora/core";
import { rtnQuantizer } from "@modulora/quantizer-rtn";
import {
  LINEAR_NAMES, QuantizedLinear, evaluatePerplexity, loadLlama, loadQuantizedModel, perplexityTokenIds, quantizeModel, saveQuantizedModel,
  type LlamaModel,
} from "@modulora/llama";
import { nf4Quantizer } from "../src/index.js";

const TINY = fileURLToPath(new URL("../../../fixtures/tiny-llama", import.meta.url));
const VALID = fileURLToPath(new URL("../../../fixtures/data/lm/valid.txt", import.meta.url));
const WINDOWS = 16;
const SEQ = 256;

let work: string;
let inputIds: Tensor;
let ids: number[];
const ppl: Record<string, number> = {};

beforeAll(() => {
  for (const f of [`${TINY}/model.safetensors`, `${TINY}/reference.safetensors`, VALID]) {
    if (!existsSync(f)) throw new Error(`fixture ${f} is missing: these tests need the repository's fixtures/ (tiny-llama and data/lm)`);
  }
  work = mkdtempSync(join(tmpdir(), "modulora-nf4-"));
  const ref = loadSafetensors(`${TINY}/reference.safetensors`);
  inputIds = keep(ref.get("input_ids")!);
  for (const [k, t] of ref) if (k !== "input_ids") t.dispose();
  const { model, tokenizer } = loadLlama(TINY);
  ids = perplexityTokenIds(tokenizer, readFileSync(VALID, "utf8"), { seqLen: SEQ, maxWindows: WINDOWS });
  ppl.fp = perplexityOf(model);
  model.dispose();
});
afterAll(() => {
  inputIds?.dispose();
  if (work) rmSync(work, { recursive: true, force: true });
  console.log(`tiny-llama perplexity, first ${WINDOWS} windows of ${SEQ}: ${Object.entries(ppl).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(", ")}`);
});

const logitsOf = (m: LlamaModel) => noGrad(() => tidy(() => m.forward(inputIds).logits.dataSync() as Float32Array));
function perplexityOf(m: LlamaModel): number {
  const r = evaluatePerplexity(m, ids, { seqLen: SEQ, maxWindows: WINDOWS, batchSize: 4 });
  expect(r.windows).toBe(WINDOWS);
  return r.perplexity;
}
async function quantized(plugin: typeof nf4Quantizer, options: Record<string, unknown>): Promise<{ model: LlamaModel; bitsPerWeight: number }> {
  const { model } = loadLlama(TINY);
  const r = await quantizeModel(model, plugin, { bits: 4, groupSize: 64, measureError: false, ...options });
  return { model, bitsPerWeight: r.bitsPerWeight };
}

// Measured on these 16 windows (perplexities): fp 41.5008, RTN-4 g64 42.9009, NF4 g64 42.6465
// (double quant off: 42.6521), FP4 g64 44.0964. On the whole validation text (1276 windows):
// fp 21.8274, RTN-4 g64 22.5976 (4.375 bits/weight), NF4 g64 22.5564 (4.133), without double
// quant 22.5566 (4.504), FP4 g64 23.2655. The bounds allow 1.5× the measured increase over fp.
const MEASURED_INCREASE = { nf4: 42.6465 - 41.5008, fp4: 44.0964 - 41.5008 };

describe("NF4 on tiny-llama", () => {
  it("quantize the whole model (g64, double quant) → save → load: same logits; perplexity near fp and below RTN-4 g64 × 1.05", async () => {
    const { model, bitsPerWeight } = await quantized(nf4Quantizer, {});
    for (const l of model.layers) for (const n of LINEAR_NAMES) {
      const w = (l.linears[n] as QuantizedLinear).weight as CodebookWeight;
      expect(w.format).toBe("codebook");
      expect([w.bits, w.blockSize, w.absmax, w.absmaxCodes === null]).toEqual([4, 64, null, false]);
    }
    // codes 4 + absmax codes 8/64 + super-block scale and offset 64/(64·256), plus 64 bytes of levels per layer
    expect(bitsPerWeight).toBeGreaterThan(4 + 8 / 64 + 64 / (64 * 256));
    expect(bitsPerWeight).toBeLessThan(4.14);
    const expected = logitsOf(model);
    ppl.nf4 = perplexityOf(model);
    const dir = join(work, "nf4");
    saveQuantizedModel(model, dir, { sourceDir: TINY, plugin: nf4Quantizer, options: { bits: 4, groupSize: 64, table: "nf4", doubleQuant: true } });
    model.dispose();
    const qc = JSON.parse(readFileSync(join(dir, "quantize_config.json"), "utf8")) as Record<string, unknown>;
    expect(qc).toMatchObject({ quant_method: "modulora", formats: ["codebook"], bits: [4], plugin: "nf4" });

    const before = memory().bytes;
    const loaded = loadQuantizedModel(dir);
    for (const l of loaded.model.layers) for (const n of LINEAR_NAMES) expect(l.linears[n]).toBeInstanceOf(QuantizedLinear);
    expect(logitsOf(loaded.model)).toEqual(expected);
    expect(perplexityOf(loaded.model)).toBe(ppl.nf4);
    loaded.model.dispose();
    expect(memory().bytes).toBe(before);

    const rtn = await quantized(rtnQuantizer, {});
    ppl.rtn4 = perplexityOf(rtn.model);
    rtn.model.dispose();
    expect(ppl.nf4).toBeGreaterThan(ppl.fp!);
    expect(ppl.nf4).toBeLessThan(ppl.fp! + 1.5 * MEASURED_INCREASE.nf4);
    expect(ppl.nf4).toBeLessThan(1.05 * ppl.rtn4); // the issue's target
    expect(bitsPerWeight).toBeLessThan(rtn.bitsPerWeight); // and in fewer bits (4.13 vs 4.375)
  });

  it("without double quantization: perplexity within 0.1% of the double-quantized one, in more bits; FP4 is worse than NF4", async () => {
    const plain = await quantized(nf4Quantizer, { doubleQuant: false });
    ppl.nf4NoDq = perplexityOf(plain.model);
    plain.model.dispose();
    if (ppl.nf4 === undefined) {
      // (when this test runs alone)
      const nf4 = await quantized(nf4Quantizer, {});
      ppl.nf4 = perplexityOf(nf4.model);
      nf4.model.dispose();
    }
    const fp4 = await quantized(nf4Quantizer, { table: "fp4" });
    ppl.fp4 = perplexityOf(fp4.model);
    fp4.model.dispose();
    expect(plain.bitsPerWeight).toBeGreaterThan(4.5);
    expect(plain.bitsPerWeight).toBeLessThan(4.51);
    expect(ppl.nf4NoDq).toBeLessThan(ppl.fp! + 1.5 * MEASURED_INCREASE.nf4);
    expect(Math.abs(ppl.nf4NoDq - ppl.nf4) / ppl.nf4).toBeLessThan(1e-3);
    expect(ppl.fp4).toBeGreaterThan(ppl.fp!);
    expect(ppl.fp4).toBeLessThan(ppl.fp! + 1.5 * MEASURED_INCREASE.fp4);
    expect(ppl.fp4).toBeGreaterThan(ppl.nf4);
  });
});
