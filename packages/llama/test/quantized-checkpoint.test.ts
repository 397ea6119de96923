import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assign, keep, loadSafetensors, memory, noGrad, saveSafetensors, SafetensorsReader, tensor, tensorFrom, tidy, type Tensor } from "@modulora/tensor";
import * as core from "@modulora/core";
import {
  QUANTIZER_SPEC_VERSION, createAffineWeight, createCodebookWeight,
  type CustomWeight, type QuantizerPlugin,
} from "@modulora/core";
import { quantizeRtn, rtnQuantizer } from "@modulora/quantizer-rtn";
import {
  LINEAR_NAMES, LlamaTokenizer, QuantizedLinear, loadLlama, loadQuantizedModel, quantizeModel, saveQuantizedModel,
  unpackRowsWords, type LlamaModel,
} from "../src/index.js";
import * as llama from "../src/index.js";

const TINY = fileURLToPath(new URL("../../../fixtures/tiny-llama", import.meta.url));
let work: string;
let ids: Tensor;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "modulora-qckpt-"));
  const ref = loadSafetensors(`${TINY}/reference.safetensors`);
  ids = keep(ref.get("input_ids")!);
  for (const [k, t] of ref) if (k !== "input_ids") t.dispose();
});
afterAll(() => {
  ids.dispose();
  rmSync(work, { recursive: true, force: true });
});

const logitsOf = (m: LlamaModel) => noGrad(() => tidy(() => m.forward(ids).logits.dataSync() as Float32Array));
const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
let counter = 0;
const fresh = (name: string) => join(work, `${name}-${counter++}`);

async function quantized(bits: number, groupSize: number | "row", extra: Record<string, unknown> = {}): Promise<LlamaModel> {
  const { model } = await loadLlama(TINY);
  await quantizeModel(model, rtnQuantizer, { bits, groupSize, measureError: false, ...extra });
  return model;
}

describe("saveQuantizedModel → loadQuantizedModel", () => {
  for (const bits of [4, 3, 2])
    for (const groupSize of [128, "row"] as const)
      it(`RTN ${bits} bits, group ${groupSize}: identical logits, GPTQ layout and config`, async () => {
        const model = await quantized(bits, groupSize);
        const expected = logitsOf(model);
        const dir = fresh(`rtn${bits}-${groupSize}`);
        const { quantMethod } = saveQuantizedModel(model, dir, { sourceDir: TINY, plugin: rtnQuantizer, options: { bits, groupSize } });
        model.dispose();
        expect(quantMethod).toBe("gptq");
        expect(readdirSync(dir).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "quantize_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]);
        const qc = readJson(join(dir, "quantize_config.json"));
        expect(qc).toMatchObject({ quant_method: "gptq", bits, group_size: groupSize === "row" ? -1 : 128, desc_act: false, sym: false, lm_head: false });
        expect(readJson(join(dir, "config.json"))["quantization_config"]).toEqual(qc);
        // GPTQ's tensor names and shapes, e.g. down_proj [out 256, in 768]
        const r = SafetensorsReader.open(join(dir, "model.safetensors"));
        const p = "model.layers.2.mlp.down_proj";
        const groups = groupSize === "row" ? 1 : 6;
        expect(r.entry(`${p}.qweight`)).toMatchObject({ dtype: "i32", shape: [(768 / 32) * bits, 256] });
        expect(r.entry(`${p}.qzeros`)).toMatchObject({ dtype: "i32", shape: [groups, (256 / 32) * bits] });
        expect(r.entry(`${p}.scales`)).toMatchObject({ dtype: "f16", shape: [groups, 256] });
        expect(r.entry(`${p}.g_idx`)).toMatchObject({ dtype: "i32", shape: [768] });
        expect(r.has(`${p}.weight`)).toBe(false);
        expect(r.has("lm_head.weight")).toBe(true);
        r.close();

        const before = memory().bytes;
        const loaded = loadQuantizedModel(dir);
        for (const l of loaded.model.layers) for (const n of LINEAR_NAMES) expect(l.linears[n]).toBeInstanceOf(QuantizedLinear);
        expect(logitsOf(loaded.model)).toEqual(expected);
        expect(loaded.tokenizer!.encode("Hello world, quantized.")).toEqual(LlamaTokenizer.fromDir(TINY).encode("Hello world, quantized."));
        loaded.model.dispose();
        expect(memory().bytes).toBe(before);
      });

  it("writes GPTQ v1 zeros (zero − 1) when it can, and v2 (raw zeros, checkpoint_format gptq_v2) when a zero point is 0", async () => {
    // v1: the stored qzeros unpack to the layer's zero points minus one.
    const model = await quantized(4, 128);
    const q = (model.layers[0]!.linears.q_proj as QuantizedLinear).weight;
    if (q.format !== "affine") throw new Error("expected affine");
    const zeros = Uint8Array.from(q.zeros.dataSync() as Uint8Array);
    expect(zeros.includes(0)).toBe(false);
    const dirV1 = fresh("v1");
    saveQuantizedModel(model, dirV1, { plugin: rtnQuantizer });
    expect(readJson(join(dirV1, "quantize_config.json"))["checkpoint_format"]).toBe("gptq");
    const stored = loadSafetensors(join(dirV1, "model.safetensors"), { names: ["model.layers.0.self_attn.q_proj.qzeros"] });
    const qz = stored.get("model.layers.0.self_attn.q_proj.qzeros")!;
    expect(Array.from(unpackRowsWords(qz.dataSync() as Int32Array, 2, 256, 4))).toEqual(Array.from(zeros, (z) => z - 1));
    qz.dispose();
    const expected = logitsOf(model);
    expect(logitsOf(loadQuantizedModel(dirV1).model)).toEqual(expected);

    // v2: make one group of k_proj all non-negative, so its zero point is 0.
    const kDense = (await loadLlama(TINY)).model;
    const w = kDense.layers[1]!.linears.k_proj as unknown as { weight: Tensor };
    const wv = w.weight.dataSync() as Float32Array;
    for (let i = 0; i < 128; i++) wv[i] = Math.abs(wv[i]!);
    noGrad(() => tidy(() => assign(w.weight, tensorFrom(wv, { shape: w.weight.shape }))));
    const kq = quantizeRtn(w.weight, { bits: 4, groupSize: 128 });
    if (kq.format !== "affine") throw new Error("expected affine");
    expect((kq.zeros.dataSync() as Uint8Array)[0]).toBe(0);
    kDense.dispose();
    model.layers[1]!.linears.k_proj.dispose();
    model.layers[1]!.linears.k_proj = new QuantizedLinear(kq);
    const expectedV2 = logitsOf(model);
    const dirV2 = fresh("v2");
    saveQuantizedModel(model, dirV2, { plugin: rtnQuantizer });
    model.dispose();
    expect(readJson(join(dirV2, "quantize_config.json"))["checkpoint_format"]).toBe("gptq_v2");
    expect((readJson(join(dirV2, "config.json"))["quantization_config"] as Record<string, unknown>)["checkpoint_format"]).toBe("gptq_v2");
    const v2 = loadQuantizedModel(dirV2);
    expect(logitsOf(v2.model)).toEqual(expectedV2);
    const back = (v2.model.layers[1]!.linears.k_proj as QuantizedLinear).weight;
    expect(back.format === "affine" && (back.zeros.dataSync() as Uint8Array)[0]).toBe(0);
    v2.model.dispose();
  });

  it("without a plugin option, the quantizer recorded by the layers is written, and read back", async () => {
    const model = await quantized(4, 128);
    const dir = fresh("no-plugin-option");
    saveQuantizedModel(model, dir);
    expect(readJson(join(dir, "quantize_config.json"))["meta"]).toMatchObject({ quantizer: ["modulora-ts:rtn"] });
    const back = loadQuantizedModel(dir).model;
    expect((back.layers[0]!.linears.q_proj as QuantizedLinear).quantizer).toBe("rtn");
  });

  it("partial targets and a quantized lm_head round-trip (dense layers under their HF names)", async () => {
    const model = await quantized(3, 64, { targets: ["v_proj", "down_proj"], includeLmHead: true });
    const expected = logitsOf(model);
    const dir = fresh("partial");
    saveQuantizedModel(model, dir, { sourceDir: TINY, plugin: rtnQuantizer });
    model.dispose();
    const qc = readJson(join(dir, "quantize_config.json"));
    expect(qc).toMatchObject({ quant_method: "gptq", bits: 3, group_size: 64, lm_head: true, modules_in_block_to_quantize: [["self_attn.v_proj", "mlp.down_proj"]] });
    const r = SafetensorsReader.open(join(dir, "model.safetensors"));
    expect(r.has("model.layers.0.self_attn.q_proj.weight") && r.has("model.layers.0.self_attn.v_proj.qweight") && r.has("lm_head.qweight")).toBe(true);
    r.close();
    const loaded = loadQuantizedModel(dir);
    expect(loaded.model.layers[0]!.linears.q_proj.kind).toBe("dense");
    expect(loaded.model.layers[0]!.linears.v_proj.kind).toBe("quantized");
    expect(loaded.model.lmHead.kind).toBe("quantized");
    expect(logitsOf(loaded.model)).toEqual(expected);
    loaded.model.dispose();
  });

  it("other formats (codebook, custom) go under quant_method modulora with per-layer metadata; custom needs its plugin", async () => {
    const { model } = await loadLlama(TINY);
    await quantizeModel(model, codebookPlugin, { bits: 4, groupSize: 64, targets: ["q_proj", "gate_proj"], measureError: false });
    await quantizeModel(model, signPlugin, { bits: 1, groupSize: "row", targets: ["o_proj"], measureError: false });
    await quantizeModel(model, realZeroPlugin, { bits: 4, groupSize: 32, targets: ["k_proj"], measureError: false });
    const expected = logitsOf(model);
    const dir = fresh("modulora");
    saveQuantizedModel(model, dir, { sourceDir: TINY, plugin: signPlugin });
    model.dispose();
    const qc = readJson(join(dir, "quantize_config.json"));
    expect(qc).toMatchObject({ quant_method: "modulora", formats: ["affine", "codebook", "custom"] });
    const r = SafetensorsReader.open(join(dir, "model.safetensors"));
    const meta = JSON.parse(r.metadata["modulora.layers"]!) as Record<string, Record<string, unknown>>;
    expect(meta["model.layers.0.self_attn.q_proj"]).toMatchObject({ format: "codebook", bits: 4, blockSize: 64, outFeatures: 256, inFeatures: 256 });
    expect(meta["model.layers.3.self_attn.o_proj"]).toMatchObject({ format: "custom", plugin: "sign" });
    expect(meta["model.layers.1.self_attn.k_proj"]).toMatchObject({ format: "affine", zeroKind: "real", groupSize: 32 });
    expect(r.has("model.layers.0.self_attn.q_proj.codes") && r.has("model.layers.0.self_attn.o_proj.signs")).toBe(true);
    r.close();
    expect(() => loadQuantizedModel(dir)).toThrow(/layer 'model.layers.0.self_attn.o_proj': this weight was made by quantizer plugin 'sign'; load that plugin/);
    const loaded = loadQuantizedModel(dir, { plugin: signPlugin });
    expect(logitsOf(loaded.model)).toEqual(expected);
    loaded.model.dispose();
  });
});

// The codecs (GPTQ's layout, packed by hand, is tested in core's codecs.test.ts) live in core;
// llama re-exports them under the names it always had.
describe("the checkpoint codecs", () => {
  it("are core's, re-exported by llama under the same names", () => {
    const names = [
      "affineFromGptq", "gptqFromAffine", "hasActOrder", "hasZeroZeroPoint", "isGptqCompatible", "packRowsWords", "trivialGIdx", "unpackRowsWords",
      "MODULORA_LAYERS_METADATA_KEY",
    ] as const;
    for (const n of names) expect(llama[n], n).toBe(core[n]);
    expect(llama.MODULORA_LAYERS_METADATA_KEY).toBe("modulora.layers");
  });
});

// ---------------------------------------------------------------------------------------------
// Corrupted directories
// ---------------------------------------------------------------------------------------------

describe("corrupted directories give clear errors", () => {
  let good: string;
  beforeAll(async () => {
    const model = await quantized(4, 128);
    good = fresh("good");
    saveQuantizedModel(model, good, { sourceDir: TINY, plugin: rtnQuantizer });
    model.dispose();
  });
  const copy = (edit: (tensors: Map<string, Tensor>, dir: string) => void): string => {
    const dir = fresh("bad");
    mkdirSync(dir);
    for (const f of readdirSync(good)) if (f !== "model.safetensors") writeFileSync(join(dir, f), readFileSync(join(good, f)));
    const tensors = loadSafetensors(join(good, "model.safetensors"));
    edit(tensors, dir);
    saveSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
    for (const t of tensors.values()) t.dispose();
    return dir;
  };

  it("a missing tensor", () => {
    const dir = copy((t) => {
      t.get("model.layers.1.mlp.up_proj.qzeros")!.dispose();
      t.delete("model.layers.1.mlp.up_proj.qzeros");
    });
    const before = memory().bytes;
    expect(() => loadQuantizedModel(dir)).toThrow(/missing tensor 'model.layers.1.mlp.up_proj.qzeros'/);
    expect(memory().bytes).toBe(before);
    const dir2 = copy((t) => {
      t.get("model.layers.2.self_attn.k_proj.qweight")!.dispose();
      t.delete("model.layers.2.self_attn.k_proj.qweight");
    });
    expect(() => loadQuantizedModel(dir2)).toThrow(/missing tensor 'model.layers.2.self_attn.k_proj.qweight' \(nor is there a dense 'model.layers.2.self_attn.k_proj.weight'\)/);
  });

  it("a wrong shape, and shapes that disagree with the config", () => {
    const dir = copy((t) => {
      t.get("model.layers.0.self_attn.q_proj.scales")!.dispose();
      t.set("model.layers.0.self_attn.q_proj.scales", tensor(new Uint16Array(3 * 256), [3, 256], { dtype: "f16" }));
    });
    expect(() => loadQuantizedModel(dir)).toThrow(/tensor 'model.layers.0.self_attn.q_proj.scales' is f16 \[3,256\], expected f16 \[2, 256\] for a 4-bit layer \[out 256, in 256\]/);
    const dir2 = copy((_, d) => {
      const config = readJson(join(d, "config.json"));
      writeFileSync(join(d, "config.json"), JSON.stringify({ ...config, intermediate_size: 512 }));
    });
    expect(() => loadQuantizedModel(dir2)).toThrow(/tensor 'model.layers.0.mlp.gate_proj.qweight' is i32 \[32,768\], expected i32 \[32, 512\]/);
    const dir3 = copy((t) => {
      t.get("model.norm.weight")!.dispose();
      t.set("model.norm.weight", tensor(new Float32Array(255), [255]));
    });
    expect(() => loadQuantizedModel(dir3)).toThrow(/tensor 'model.norm.weight' has shape \[255\], expected \[256\] from the config/);
    const dir4 = copy((t) => t.set("model.layers.0.mlp.extra", tensor(new Float32Array(2), [2])));
    expect(() => loadQuantizedModel(dir4)).toThrow(/unexpected tensor 'model.layers.0.mlp.extra'/);
  });

  it("an unknown quant_method, or none", () => {
    const dir = copy((_, d) => {
      const config = readJson(join(d, "config.json"));
      writeFileSync(join(d, "config.json"), JSON.stringify({ ...config, quantization_config: { quant_method: "awq", bits: 4 } }));
    });
    expect(() => loadQuantizedModel(dir)).toThrow(/unknown quant_method "awq" in quantization_config; this loader reads "gptq" and "modulora"/);
    expect(() => loadQuantizedModel(TINY)).toThrow(/no quantization_config and there is no quantize_config.json: not a quantized checkpoint/);
  });

  it("a non-empty target directory is refused unless overwrite, and never left half-written", async () => {
    const model = await quantized(2, "row");
    const dir = fresh("occupied");
    mkdirSync(dir);
    writeFileSync(join(dir, "notes.txt"), "mine");
    expect(() => saveQuantizedModel(model, dir, { plugin: rtnQuantizer })).toThrow(/exists and is not empty; pass overwrite: true/);
    expect(readdirSync(dir)).toEqual(["notes.txt"]);
    // A failure part-way (a missing tokenizer) leaves nothing behind.
    expect(() => saveQuantizedModel(model, dir, { plugin: rtnQuantizer, overwrite: true, sourceDir: join(work, "no-such-model") })).toThrow(/tokenizer.json does not exist/);
    expect(readdirSync(dir)).toEqual(["notes.txt"]);
    expect(readdirSync(work).filter((f) => f.includes(".tmp-"))).toEqual([]);
    saveQuantizedModel(model, dir, { plugin: rtnQuantizer, overwrite: true });
    expect(existsSync(join(dir, "notes.txt"))).toBe(false);
    expect(readJson(join(dir, "quantize_config.json"))).toMatchObject({ bits: 2, group_size: -1 });
    model.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// Plugins with other formats
// ---------------------------------------------------------------------------------------------

/** 4-bit codebook with uniform levels in [−1, 1] and one absmax per block of `groupSize`. */
const codebookPlugin: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "uniform-codebook",
  calibration: "none",
  supportedBits: [4],
  quantize(weight, options) {
    const [out, inF] = weight.shape as [number, number];
    const block = options.groupSize === "row" ? inF : options.groupSize;
    const w = weight.dataSync() as Float32Array;
    const levels = Float32Array.from({ length: 16 }, (_, k) => -1 + (2 * k) / 15);
    const absmax = new Float32Array((out * inF) / block);
    const codes = new Uint8Array(out * inF);
    for (let b = 0; b < absmax.length; b++) {
      let m = 0;
      for (let i = b * block; i < (b + 1) * block; i++) m = Math.max(m, Math.abs(w[i]!));
      absmax[b] = m || 1;
      for (let i = b * block; i < (b + 1) * block; i++) codes[i] = Math.round(((w[i]! / absmax[b]! + 1) * 15) / 2);
    }
    return createCodebookWeight({ outFeatures: out, inFeatures: inF, bits: 4, blockSize: block, codes, levels, absmax });
  },
};

/** A custom format: ŵ = a_j · sign(w) per row, a_j = mean |w| of the row. */
class SignWeight implements CustomWeight {
  readonly format = "custom" as const;
  readonly plugin = "sign";
  readonly bits = 1;
  constructor(readonly outFeatures: number, readonly inFeatures: number, readonly signs: Tensor, readonly alpha: Tensor) {}
  materialize(r0: number, r1: number, out: Float32Array): void {
    const s = this.signs.dataSync() as Uint8Array;
    const a = this.alpha.dataSync() as Float32Array;
    for (let j = r0; j < r1; j++) for (let i = 0; i < this.inFeatures; i++) out[(j - r0) * this.inFeatures + i] = s[j * this.inFeatures + i] ? a[j]! : -a[j]!;
  }
  storageBytes(): number {
    return this.signs.size + this.alpha.size * 4;
  }
  bitsPerWeight(): number {
    return (this.storageBytes() * 8) / (this.outFeatures * this.inFeatures);
  }
  dispose(): void {
    this.signs.dispose();
    this.alpha.dispose();
  }
}

const signPlugin: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "sign",
  calibration: "none",
  supportedBits: [1],
  quantize(weight) {
    const [out, inF] = weight.shape as [number, number];
    const w = weight.dataSync() as Float32Array;
    const signs = Uint8Array.from(w, (v) => (v >= 0 ? 1 : 0));
    const alpha = Float32Array.from({ length: out }, (_, j) => w.subarray(j * inF, (j + 1) * inF).reduce((s, v) => s + Math.abs(v), 0) / inF);
    return new SignWeight(out, inF, keep(tensor(signs, [out, inF], { dtype: "u8" })), keep(tensor(alpha, [out])));
  },
  serialize(qw) {
    const s = qw as SignWeight;
    return { tensors: { signs: s.signs, alpha: s.alpha }, metadata: {} };
  },
  deserialize(tensors, metadata) {
    return new SignWeight(metadata["outFeatures"] as number, metadata["inFeatures"] as number, tensors["signs"]!, tensors["alpha"]!);
  },
};

/** Affine with real-valued zero points (HQQ-style min-max): not GPTQ-compatible. */
const realZeroPlugin: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "real-zero",
  calibration: "none",
  supportedBits: [4],
  quantize(weight, options) {
    const [out, inF] = weight.shape as [number, number];
    const g = options.groupSize === "row" ? inF : options.groupSize;
    const w = weight.dataSync() as Float32Array;
    const groups = inF / g;
    const codes = new Uint8Array(out * inF);
    const scales = new Float32Array(out * groups);
    const zeros = new Float32Array(out * groups);
    for (let k = 0; k < out * groups; k++) {
      const a = k * g;
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = a; i < a + g; i++) (lo = Math.min(lo, w[i]!)), (hi = Math.max(hi, w[i]!));
      const scale = (hi - lo) / 15 || 1;
      scales[k] = scale;
      zeros[k] = -lo / scale;
      for (let i = a; i < a + g; i++) codes[i] = Math.min(15, Math.max(0, Math.round(w[i]! / scale + zeros[k]!)));
    }
    return createAffineWeight({ outFeatures: out, inFeatures: inF, bits: 4, groupSize: g, codes, scales, zeros });
  },
};
