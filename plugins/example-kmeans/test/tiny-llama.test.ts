// The plugin through the generic model path on tiny-llama: quantizeModel at 2 bits, the custom
// format's checkpoint round trip (saveQuantizedModel / loadQuantizedModel with the plugin), and a
// short LoRA fine-tune of the reloaded model whose loss falls.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dispose, loadSafetensors, memory, noGrad, tensorFrom, tidy } from "@modulora/tensor";
import { referenceRoundToNearest, relativeError } from "@modulora/core/testing";
import {
  LINEAR_NAMES, loadLlama, loadQuantizedModel, quantizeModel, saveQuantizedModel, type LlamaModel, type QuantizedLinear,
} from "@modulora/llama";
import { BATCHES, fitLoRA, TINY } from "./train.js";
import { kmeansQuantizer, type KmeansWeight } from "../src/index.js";

const tmp = mkdtempSync(join(tmpdir(), "modulora-kmeans-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));


const logitsOf = (model: LlamaModel) => noGrad(() => tidy(() => Array.from(model.forward(tensorFrom(BATCHES[0]!.inputIds, { shape: [2, 16], dtype: "i32" })).logits.dataSync() as Float32Array)));

describe("example-kmeans on tiny-llama", () => {
  it("quantizeModel at 2 bits, per row: every linear is a custom k-means weight with the bytes it holds", async () => {
    expect(existsSync(join(TINY, "model.safetensors")), `fixture missing: ${TINY}`).toBe(true);
    const { model } = loadLlama(TINY);
    try {
      // a group size other than the whole row is refused, naming the layer
      await expect(quantizeModel(model, kmeansQuantizer, { bits: 2, groupSize: 128 })).rejects.toThrow(/model\.layers\.0\.self_attn\.q_proj: .*group size 128 is not supported: the levels are per row/);
      const { report } = await quantizeModel(model, kmeansQuantizer, { bits: 2, groupSize: "row", iterations: 10 });
      const originals = loadSafetensors(join(TINY, "model.safetensors"), { names: report.map((r) => `${r.name}.weight`) });
      const rtnError = new Map(report.map((r) => {
        const w = originals.get(`${r.name}.weight`)!;
        const v = w.dataSync() as Float32Array;
        return [r.name, relativeError(referenceRoundToNearest(v, w.shape[0]!, w.shape[1]!, 2, "row"), v)] as const;
      }));
      dispose([...originals.values()]);
      expect(report).toHaveLength(28);
      for (const r of report) {
        const [out, inF] = r.layer === "down_proj" ? [256, 768] : r.layer === "gate_proj" || r.layer === "up_proj" ? [768, 256] : [256, 256];
        // 2-bit codes packed 4 to a byte, plus 4 f32 levels per row
        expect(r.bitsPerWeight, r.name).toBeCloseTo(((out * (inF / 4) + out * 16) * 8) / (out * inF), 12);
        // the driver's ‖Ŵ − W‖/‖W‖ against per-row round-to-nearest's on the same weight: measured
        // 0.556–0.623 over the 28 linears (the conformance bound at 2 bits)
        const w = rtnError.get(r.name)!;
        expect(r.error! / w, `${r.name}: ${r.error} vs round-to-nearest's ${w}`).toBeLessThan(0.65);
      }
      for (const l of model.layers) for (const n of LINEAR_NAMES) expect((l.linears[n] as QuantizedLinear).weight.format).toBe("custom");
    } finally {
      model.dispose();
    }
  });

  it("saveQuantizedModel / loadQuantizedModel with the plugin: the same tensors and logits; without it, a clear refusal", async () => {
    const { model } = loadLlama(TINY);
    const dir = join(tmp, "km2");
    try {
      await quantizeModel(model, kmeansQuantizer, { bits: 2, groupSize: "row" });
      const saved = saveQuantizedModel(model, dir, { plugin: kmeansQuantizer, options: { bits: 2, groupSize: "row", iterations: 10 }, sourceDir: TINY });
      expect(saved.quantMethod).toBe("modulora");
      const qc = JSON.parse(readFileSync(join(dir, "quantize_config.json"), "utf8")) as Record<string, unknown>;
      expect(qc).toMatchObject({ quant_method: "modulora", formats: ["custom"], bits: [2], plugin: "example-kmeans", meta: { quantizer: ["modulora-ts:example-kmeans"], options: { iterations: 10 } } });
      expect(() => loadQuantizedModel(dir)).toThrow(/made by quantizer plugin 'example-kmeans'; load that plugin/);
      const before = logitsOf(model);
      const { model: back } = loadQuantizedModel(dir, { plugin: kmeansQuantizer });
      try {
        for (const [i, l] of back.layers.entries()) {
          for (const n of LINEAR_NAMES) {
            const [a, b] = [(model.layers[i]!.linears[n] as QuantizedLinear).weight as KmeansWeight, (l.linears[n] as QuantizedLinear).weight as KmeansWeight];
            expect(Array.from(b.codes.dataSync())).toEqual(Array.from(a.codes.dataSync()));
            expect(Array.from(b.levels.dataSync())).toEqual(Array.from(a.levels.dataSync()));
          }
        }
        expect(logitsOf(back)).toEqual(before);
      } finally {
        back.dispose();
      }
    } finally {
      model.dispose();
    }
  });

  it("a LoRA fine-tune of the reloaded 2-bit model: the loss falls, and nothing is left behind", async () => {
    const tensorsBefore = memory().tensors;
    const { model } = loadQuantizedModel(join(tmp, "km2"), { plugin: kmeansQuantizer });
    const losses = await fitLoRA(model, 12);
    model.dispose();
    expect(losses).toHaveLength(12);
    // measured: 5.35, 4.40, 3.62, 2.94 in the first pass over the 4 batches, 1.39, 0.74, 0.55, 0.31 in the third
    const pass = (k: number) => losses.slice(4 * k, 4 * k + 4).reduce((s, l) => s + l, 0);
    expect(pass(2), losses.join(", ")).toBeLessThan(0.4 * pass(0));
    expect(pass(1)).toBeLessThan(pass(0));
    expect(memory().tensors).toBe(tensorsBefore);
  });
});
