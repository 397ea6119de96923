// The checkpoint codecs of the formats: GPTQ's tensors (checked against GPTQ's published packing
// loop, transcribed below) and the `modulora` layout (exact round trips, errors that name things).
import { describe, expect, it } from "vitest";
import { keep, randn, tensor, type Tensor } from "@modulora/tensor";
import {
  affineFromGptq, checkModuloraLayerShape, createAffineWeight, createCodebookWeight, decodeModuloraLayer, f16Table, gptqCheckpointFormat,
  gptqCheckpointSettings, gptqFromAffine, gptqSettingsFromConfig, hasActOrder, hasZeroZeroPoint, isGptqCompatible, moduloraLayerTensorNames,
  ModuloraLayersEncoder, MODULORA_LAYERS_METADATA_KEY, packRowsWords, quantLinear, readModuloraLayersMetadata, toF16Bits, trivialGIdx, unpackRowsWords,
  QUANTIZER_SPEC_VERSION, type AffineWeight, type QuantizedWeight, type QuantizerPlugin,
} from "../src/index.js";

// ---------------------------------------------------------------------------------------------
// GPTQ's published layout, packed by hand
// ---------------------------------------------------------------------------------------------

/**
 * GPTQ's reference `QuantLinear.pack` loop, transcribed: packs values v(j, c) along j (n of them,
 * a multiple of 32) into rows of 32-bit words [n/32·bits, width].
 */
function gptqPackLoop(n: number, width: number, v: (j: number, c: number) => number, bits: number): Uint32Array {
  const rows = (n / 32) * bits;
  const q = new Uint32Array(rows * width);
  const or = (row: number, f: (c: number) => number) => {
    for (let c = 0; c < width; c++) q[row * width + c] = (q[row * width + c]! | f(c)) >>> 0;
  };
  let i = 0;
  let row = 0;
  while (row < rows) {
    if (bits === 2 || bits === 4 || bits === 8) {
      for (let j = i; j < i + 32 / bits; j++) or(row, (c) => v(j, c) << (bits * (j - i)));
      i += 32 / bits;
      row += 1;
    } else if (bits === 3) {
      for (let j = i; j < i + 10; j++) or(row, (c) => v(j, c) << (3 * (j - i)));
      i += 10;
      const a = i;
      or(row, (c) => v(a, c) << 30);
      row += 1;
      or(row, (c) => (v(a, c) >> 2) & 1);
      i += 1;
      for (let j = i; j < i + 10; j++) or(row, (c) => v(j, c) << (3 * (j - i) + 1));
      i += 10;
      const b = i;
      or(row, (c) => v(b, c) << 31);
      row += 1;
      or(row, (c) => (v(b, c) >> 1) & 0x3);
      i += 1;
      for (let j = i; j < i + 10; j++) or(row, (c) => v(j, c) << (3 * (j - i) + 2));
      i += 10;
      row += 1;
    } else throw new Error(`bits ${bits}`);
  }
  return q;
}

/** A seeded generator for the hand-made weights. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

describe("a GPTQ tensor set packed by hand from the published layout", () => {
  const OUT = 8;
  const IN = 64;
  const GROUP = 16;
  const GROUPS = IN / GROUP;
  for (const bits of [4, 3])
    for (const actOrder of [false, true])
      for (const zeroFormat of ["v1", "v2"] as const)
        it(`${bits} bits, ${actOrder ? "act-order g_idx" : "g_idx = ⌊i/16⌋"}, zeros ${zeroFormat}`, () => {
          const rand = lcg(bits * 100 + (actOrder ? 10 : 0) + (zeroFormat === "v1" ? 1 : 2));
          const maxq = (1 << bits) - 1;
          const q = Array.from({ length: OUT }, () => Array.from({ length: IN }, () => Math.floor(rand() * (maxq + 1))));
          // v1 cannot hold a zero point of 0; v2 can (and gets one)
          const z = Array.from({ length: GROUPS }, () => Array.from({ length: OUT }, () => (zeroFormat === "v1" ? 1 : 0) + Math.floor(rand() * (zeroFormat === "v1" ? maxq : maxq + 1))));
          if (zeroFormat === "v2") z[1]![3] = 0;
          const scales = Float32Array.from({ length: GROUPS * OUT }, () => 0.001 + rand() * 0.05); // [groups, out]
          const gIdx = new Int32Array(IN);
          if (actOrder) {
            const perm = Array.from({ length: IN }, (_, i) => i);
            for (let i = IN - 1; i > 0; i--) {
              const j = Math.floor(rand() * (i + 1));
              [perm[i], perm[j]] = [perm[j]!, perm[i]!];
            }
            perm.forEach((col, k) => (gIdx[col] = Math.floor(k / GROUP)));
          } else for (let i = 0; i < IN; i++) gIdx[i] = Math.floor(i / GROUP);

          // qweight [in/32·bits, out]: intweight is W's codes transposed, [in, out]
          const qweight = gptqPackLoop(IN, OUT, (i, j) => q[j]![i]!, bits);
          // qzeros [groups, out·bits/32]: zeros packed along out (out padded to 32 with zeros)
          const stored = (g: number, j: number) => (j < OUT ? z[g]![j]! - (zeroFormat === "v1" ? 1 : 0) : 0);
          const qzT = gptqPackLoop(32, GROUPS, (j, g) => stored(g, j), bits); // [words, groups]
          const words = bits;
          const qzeros = new Int32Array(GROUPS * words);
          for (let g = 0; g < GROUPS; g++) for (let w = 0; w < words; w++) qzeros[g * words + w] = qzT[w * GROUPS + g]! | 0;

          const w = affineFromGptq(
            {
              qweight: keep(tensor(new Int32Array(qweight.buffer), [(IN / 32) * bits, OUT], { dtype: "i32" })),
              qzeros: keep(tensor(qzeros, [GROUPS, words], { dtype: "i32" })),
              scales: keep(tensor(toF16Bits(scales), [GROUPS, OUT], { dtype: "f16" })),
              g_idx: keep(tensor(gIdx, [IN], { dtype: "i32" })),
            },
            { name: "hand", outFeatures: OUT, inFeatures: IN, bits, groupSize: GROUP, symmetric: false, zeroFormat },
          );
          expect(w.gIdx === null).toBe(!actOrder);
          const f16 = f16Table();
          const s16 = toF16Bits(scales);
          const expected = new Float32Array(OUT * IN);
          for (let j = 0; j < OUT; j++)
            for (let i = 0; i < IN; i++) {
              const g = gIdx[i]!;
              expected[j * IN + i] = f16[s16[g * OUT + j]!]! * (q[j]![i]! - z[g]![j]!);
            }
          const got = new Float32Array(OUT * IN);
          w.materialize(0, OUT, got);
          expect(Array.from(got)).toEqual(Array.from(expected));

          // The fused forward computes with the same weight.
          const x = randn([3, IN], { seed: 1 });
          const y = quantLinear(x, w).dataSync() as Float32Array;
          const xv = x.dataSync() as Float32Array;
          for (let r = 0; r < 3; r++)
            for (let j = 0; j < OUT; j++) {
              let s = 0;
              for (let i = 0; i < IN; i++) s += xv[r * IN + i]! * expected[j * IN + i]!;
              expect(y[r * OUT + j]).toBeCloseTo(s, 4);
            }
          // And writing it back gives the hand-packed tensors.
          if (zeroFormat === "v1" || z.flat().includes(0)) {
            const back = gptqFromAffine(w, zeroFormat);
            expect(Array.from(back.qweight.dataSync() as Int32Array)).toEqual(Array.from(new Int32Array(qweight.buffer)));
            expect(Array.from(back.qzeros.dataSync() as Int32Array)).toEqual(Array.from(qzeros));
            expect(Array.from(back.g_idx.dataSync() as Int32Array)).toEqual(Array.from(gIdx));
            back.qzeros.dispose();
            back.g_idx.dispose();
          }
          w.dispose();
        });

  it("rejects tensors whose shapes disagree with the layer, naming the tensor", () => {
    const mk = (shape: number[], dtype: "i32" | "f16") => keep(tensor(dtype === "i32" ? new Int32Array(shape.reduce((a, b) => a * b)) : new Uint16Array(shape.reduce((a, b) => a * b)), shape, { dtype }));
    const info = { name: "model.layers.0.mlp.up_proj", outFeatures: 8, inFeatures: 64, bits: 4, groupSize: 16, symmetric: false, zeroFormat: "v1" as const };
    expect(() => affineFromGptq({ qweight: mk([6, 8], "i32"), qzeros: mk([4, 4], "i32"), scales: mk([4, 8], "f16") }, info)).toThrow(
      /tensor 'model.layers.0.mlp.up_proj.qweight' is i32 \[6,8\], expected i32 \[8, 8\] for a 4-bit layer \[out 8, in 64\]/,
    );
    expect(() => affineFromGptq({ qweight: mk([8, 8], "i32"), qzeros: mk([4, 8], "i32"), scales: mk([4, 8], "f16") }, info)).toThrow(
      /tensor 'model.layers.0.mlp.up_proj.qzeros' is i32 \[4,8\], expected i32 \[4, 4\]/,
    );
    expect(() => affineFromGptq({ qweight: mk([8, 8], "i32"), qzeros: mk([4, 4], "i32"), scales: mk([4, 8], "f16"), g_idx: mk([63], "i32") }, info)).toThrow(
      /tensor 'model.layers.0.mlp.up_proj.g_idx' is i32 \[63\], expected i32 \[64\]/,
    );
  });
});


// ---------------------------------------------------------------------------------------------
// GPTQ's row packing of zero points, settings and config
// ---------------------------------------------------------------------------------------------

describe("packRowsWords (GPTQ's qzeros packing)", () => {
  for (const bits of [2, 3, 4, 8])
    for (const n of [32, 64, 40])
      it(`${bits} bits, ${n} codes a row: GPTQ's pack loop, padded to 32, and back`, () => {
        const rows = 3;
        const rand = lcg(bits * 1000 + n);
        const codes = Uint8Array.from({ length: rows * n }, () => Math.floor(rand() * (1 << bits)));
        const padded = Math.ceil(n / 32) * 32;
        // The pack loop packs along its first index into [padded/32·bits, rows]; qzeros is its transpose.
        const t = gptqPackLoop(padded, rows, (i, r) => (i < n ? codes[r * n + i]! : 0), bits);
        const words = (padded / 32) * bits;
        const want = new Int32Array(rows * words);
        for (let r = 0; r < rows; r++) for (let w = 0; w < words; w++) want[r * words + w] = t[w * rows + r]! | 0;
        const packed = packRowsWords(codes, rows, n, bits);
        expect(Array.from(packed)).toEqual(Array.from(want));
        expect(Array.from(unpackRowsWords(packed, rows, n, bits))).toEqual(Array.from(codes));
      });
});

/** An affine weight [out 4, in 64] with integer zeros from `zero(k)` and g_idx `gIdx`. */
function affine(bits: number, groupSize: number, zero: (k: number) => number, options: { gIdx?: Int32Array; symmetric?: boolean; real?: boolean } = {}): AffineWeight {
  const out = 4;
  const inF = 64;
  const groups = options.gIdx ? Math.max(...options.gIdx) + 1 : inF / groupSize;
  const rand = lcg(bits + groupSize);
  const codes = Uint8Array.from({ length: out * inF }, () => Math.floor(rand() * (1 << bits)));
  const scales = Float32Array.from({ length: out * groups }, (_, k) => 0.01 + k * 0.001);
  const zeros = options.real ? Float32Array.from({ length: out * groups }, (_, k) => zero(k) + 0.25) : Uint8Array.from({ length: out * groups }, (_, k) => zero(k));
  return createAffineWeight({ outFeatures: out, inFeatures: inF, bits, groupSize, codes, scales, zeros, symmetric: options.symmetric, gIdx: options.gIdx ?? null });
}

describe("GPTQ compatibility and checkpoint settings", () => {
  it("integer zeros in the code range fit; real zeros and codebook weights do not; zero points of 0 need v2", () => {
    const w = affine(4, 16, (k) => 1 + (k % 15));
    const zeroed = affine(4, 16, (k) => k % 16);
    const real = affine(4, 16, () => 3, { real: true });
    const cb = createCodebookWeight({ outFeatures: 2, inFeatures: 8, bits: 2, blockSize: 4, codes: new Uint8Array(16), levels: Float32Array.of(-1, -0.5, 0.5, 1), absmax: Float32Array.of(1, 2, 3, 4) });
    expect([isGptqCompatible(w), isGptqCompatible(zeroed), isGptqCompatible(real), isGptqCompatible(cb)]).toEqual([true, true, false, false]);
    expect([hasZeroZeroPoint(w), hasZeroZeroPoint(zeroed)]).toEqual([false, true]);
    expect(gptqCheckpointSettings([w])).toEqual({ bits: 4, groupSize: 16, symmetric: false, actOrder: false, zeroFormat: "v1" });
    expect(gptqCheckpointSettings([w, zeroed])).toEqual({ bits: 4, groupSize: 16, symmetric: false, actOrder: false, zeroFormat: "v2" });
    expect(gptqCheckpointSettings([w, real])).toBeNull();
    expect(gptqCheckpointSettings([w, cb])).toBeNull();
    expect(gptqCheckpointSettings([])).toBeNull();
    expect(() => gptqFromAffine(zeroed, "v1")).toThrow(/a zero point is 0, which GPTQ v1 \(zero − 1\) cannot store; use v2/);
    expect(() => gptqFromAffine(real, "v2")).toThrow(/GPTQ's layout needs integer zero points/);
    for (const x of [w, zeroed, real, cb]) x.dispose();
  });

  it("one group size per checkpoint: −1 when every layer has one group a row; mixed bits, symmetry or group sizes do not fit", () => {
    const g16 = affine(4, 16, () => 8);
    const g32 = affine(4, 32, () => 8);
    const row = affine(4, 64, () => 8);
    const row3 = affine(3, 64, () => 4);
    const sym = affine(4, 16, () => 8, { symmetric: true });
    expect(gptqCheckpointSettings([row])!.groupSize).toBe(-1);
    expect(gptqCheckpointSettings([g16, g16])!.groupSize).toBe(16);
    expect(gptqCheckpointSettings([g16, g32])).toBeNull();
    expect(gptqCheckpointSettings([row, row3])).toBeNull();
    expect(gptqCheckpointSettings([g16, sym])).toBeNull();
    expect(gptqCheckpointSettings([sym])!.symmetric).toBe(true);
    for (const x of [g16, g32, row, row3, sym]) x.dispose();
  });

  it("act-order: a g_idx other than ⌊i / groupSize⌋ (a trivial one counts as none) sets desc_act", () => {
    const trivial = affine(4, 16, () => 8, { gIdx: trivialGIdx(64, 16) });
    const perm = trivialGIdx(64, 16).reverse();
    const ordered = affine(4, 16, () => 8, { gIdx: perm });
    expect(Array.from(trivialGIdx(6, 4))).toEqual([0, 0, 0, 0, 1, 1]);
    expect([hasActOrder(trivial), hasActOrder(ordered)]).toEqual([false, true]);
    expect(gptqCheckpointSettings([trivial])!.actOrder).toBe(false);
    expect(gptqCheckpointSettings([trivial, ordered])!.actOrder).toBe(true);
    // Read back, a trivial g_idx is dropped and a permuted one kept.
    for (const [w, kept] of [[trivial, false], [ordered, true]] as const) {
      const g = gptqFromAffine(w, "v1");
      const back = affineFromGptq(
        { qweight: g.qweight.to("cpu"), qzeros: g.qzeros, scales: g.scales.to("cpu"), g_idx: g.g_idx },
        { name: "l", outFeatures: 4, inFeatures: 64, bits: 4, groupSize: 16, symmetric: false, zeroFormat: "v1" },
      );
      expect(back.gIdx !== null).toBe(kept);
      const a = new Float32Array(256);
      const b = new Float32Array(256);
      w.materialize(0, 4, a);
      back.materialize(0, 4, b);
      expect(Array.from(b)).toEqual(Array.from(a));
      back.dispose();
    }
    trivial.dispose();
    ordered.dispose();
  });

  it("quantization_config: checkpoint_format gptq is v1, gptq_v2 is v2; defaults group −1, sym true; bad values name the key", () => {
    expect(gptqSettingsFromConfig({ bits: 4 })).toEqual({ bits: 4, groupSize: -1, symmetric: true, zeroFormat: "v1" });
    expect(gptqSettingsFromConfig({ bits: 3, group_size: 128, sym: false, checkpoint_format: "gptq_v2" })).toEqual({ bits: 3, groupSize: 128, symmetric: false, zeroFormat: "v2" });
    expect([gptqCheckpointFormat("v1"), gptqCheckpointFormat("v2")]).toEqual(["gptq", "gptq_v2"]);
    expect(() => gptqSettingsFromConfig({ bits: 5 })).toThrow("quantization_config.bits must be 2, 3, 4 or 8 for GPTQ, got 5");
    expect(() => gptqSettingsFromConfig({ bits: 4, group_size: 0 })).toThrow("quantization_config.group_size must be a positive integer or -1, got 0");
    expect(() => gptqSettingsFromConfig({ bits: 4, checkpoint_format: "marlin" })).toThrow('quantization_config.checkpoint_format "marlin" is not one of "gptq", "gptq_v2"');
  });
});

// ---------------------------------------------------------------------------------------------
// The modulora layout
// ---------------------------------------------------------------------------------------------

/** A custom format for the codec: one f32 value per row (ŵ[j, i] = v[j]). */
const rowPlugin: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "row-value",
  calibration: "none",
  supportedBits: [1],
  quantize() {
    throw new Error("not used");
  },
  serialize: (w) => ({ tensors: { v: (w as unknown as { v: Tensor }).v }, metadata: { note: "row" } }),
  deserialize: (tensors, meta) => rowWeight(tensors["v"]!, meta["inFeatures"] as number),
};

function rowWeight(v: Tensor, inF: number): QuantizedWeight {
  return {
    format: "custom", plugin: "row-value", outFeatures: v.size, inFeatures: inF, bits: 1, v,
    materialize(r0: number, r1: number, out: Float32Array) {
      const a = v.dataSync() as Float32Array;
      for (let j = r0; j < r1; j++) out.fill(a[j]!, (j - r0) * inF, (j - r0 + 1) * inF);
    },
    storageBytes: () => v.size * 4,
    bitsPerWeight: () => 32 / inF,
    dispose: () => v.dispose(),
  } as QuantizedWeight;
}

describe("the modulora layout", () => {
  it("affine (real zeros), codebook and custom layers round-trip exactly through named tensors and the modulora.layers metadata", () => {
    const layers: [string, QuantizedWeight][] = [
      ["model.layers.0.self_attn.q_proj", affine(4, 16, (k) => k % 7, { real: true })],
      ["model.layers.0.mlp.up_proj", createCodebookWeight({ outFeatures: 2, inFeatures: 8, bits: 2, blockSize: 4, codes: Uint8Array.from({ length: 16 }, (_, i) => i % 4), levels: Float32Array.of(-1, -0.5, 0.5, 1), absmax: Float32Array.of(1, 2, 3, 4) })],
      ["lm_head", rowWeight(keep(tensor(Float32Array.of(0.5, -2, 3), [3])), 5)],
    ];
    const tensors = new Map<string, Tensor>();
    tensors.set("model.norm.weight", keep(tensor(Float32Array.of(1), [1])));
    const enc = new ModuloraLayersEncoder(rowPlugin);
    for (const [p, w] of layers) enc.add(p, w, tensors);
    expect([...tensors.keys()]).toEqual([
      "model.norm.weight", "model.layers.0.self_attn.q_proj.qweight", "model.layers.0.self_attn.q_proj.scales", "model.layers.0.self_attn.q_proj.zeros",
      "model.layers.0.mlp.up_proj.codes", "model.layers.0.mlp.up_proj.levels", "model.layers.0.mlp.up_proj.absmax", "lm_head.v",
    ]);
    const meta = enc.metadata();
    expect(Object.keys(meta)).toEqual([MODULORA_LAYERS_METADATA_KEY]);
    const read = readModuloraLayersMetadata([{ format: "pt" }, meta]);
    expect(read["lm_head"]).toEqual({ format: "custom", outFeatures: 3, inFeatures: 5, bits: 1, note: "row", plugin: "row-value" });
    expect(read["model.layers.0.self_attn.q_proj"]).toMatchObject({ format: "affine", zeroKind: "real", groupSize: 16, outFeatures: 4, inFeatures: 64 });
    for (const [p, w] of layers) {
      const names = moduloraLayerTensorNames(p, tensors.keys());
      const own = new Map(names.map((n) => [n, tensors.get(n)!]));
      const back = decodeModuloraLayer(p, own, read[p]!, { outFeatures: w.outFeatures, inFeatures: w.inFeatures }, rowPlugin);
      const a = new Float32Array(w.outFeatures * w.inFeatures);
      const b = new Float32Array(a.length);
      w.materialize(0, w.outFeatures, a);
      back.materialize(0, w.outFeatures, b);
      expect(Array.from(b), p).toEqual(Array.from(a));
      expect(back.format).toBe(w.format);
    }
    for (const [, w] of layers) w.dispose();
    tensors.get("model.norm.weight")!.dispose();
  });

  it("tensor names one level under the prefix only; errors name the layer and what is wrong", () => {
    expect(moduloraLayerTensorNames("a.b", ["a.b.codes", "a.b.c.codes", "a.bx.codes", "a.b.levels", "a.b"])).toEqual(["a.b.codes", "a.b.levels"]);
    expect(() => readModuloraLayersMetadata([{ format: "pt" }])).toThrow(`model.safetensors has no '${MODULORA_LAYERS_METADATA_KEY}' metadata`);
    expect(() => readModuloraLayersMetadata([{ [MODULORA_LAYERS_METADATA_KEY]: "{" }])).toThrow(/the 'modulora.layers' metadata is not valid JSON/);
    expect(() => checkModuloraLayerShape("lm_head", { outFeatures: 3, inFeatures: 5 }, { outFeatures: 3, inFeatures: 6 }))
      .toThrow("layer 'lm_head' is [3, 5] in the metadata, expected [3, 6] from the config");
    const v = keep(tensor(Float32Array.of(1, 2), [2]));
    const meta = { format: "custom", outFeatures: 2, inFeatures: 4, bits: 1, plugin: "row-value" };
    expect(() => decodeModuloraLayer("lm_head", new Map([["lm_head.v", v]]), meta, { outFeatures: 2, inFeatures: 4 }))
      .toThrow("layer 'lm_head': this weight was made by quantizer plugin 'row-value'; load that plugin (--plugin) to read it");
    v.dispose();
  });
});
