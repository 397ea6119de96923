import { describe, expect, it } from "vitest";
import { dispose, memory, tensor } from "@modulora/tensor";
import {
  createAffineWeight, createCodebookWeight, deserializeQuantizedWeight, formatTraits, packColumns, packRowsBytes, predictedStorageBytes,
  serializeQuantizedWeight, unpackColumnCode, unpackRowByteCode, fromF16Bits, toF16Bits, FORMAT_TRAITS,
} from "../src/index.js";

function lcg(seed: number) {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 16777216;
}

describe("bit-stream packing (GPTQ layout)", () => {
  it("3-bit codes: 32 codes in 3 words, codes 10 and 21 cross word boundaries", () => {
    const codes = Uint8Array.from({ length: 32 }, (_, i) => i % 8);
    const packed = new Uint32Array(packColumns(codes, 1, 32, 3).buffer);
    expect(packed.length).toBe(3);
    // code 10 = 2 (0b010): bits 30,31 in word 0 get 0b10, bit 0 of word 1 gets 0
    expect(packed[0]! >>> 30).toBe(2);
    expect(packed[1]! & 1).toBe(0);
    // code 21 = 5 (0b101): bit 63 (word 1, bit 31) gets 1, bits 0-1 of word 2 get 0b10
    expect(packed[1]! >>> 31).toBe(1);
    expect(packed[2]! & 3).toBe(2);
    for (let i = 0; i < 32; i++) expect(unpackColumnCode(packed, 1, 0, i, 3)).toBe(i % 8);
  });
  it("2/4/8 bits: code i of a column in word ⌊i·b/32⌋ at bit (i mod 32/b)·b; columns interleave by out", () => {
    for (const bits of [2, 4, 8]) {
      const rows = 3, n = 64;
      const r = lcg(bits);
      const codes = Uint8Array.from({ length: rows * n }, () => Math.floor(r() * (1 << bits)));
      const packed = new Uint32Array(packColumns(codes, rows, n, bits).buffer);
      expect(packed.length).toBe((n * bits / 32) * rows);
      for (let j = 0; j < rows; j++)
        for (let i = 0; i < n; i++) {
          const word = packed[Math.floor((i * bits) / 32) * rows + j]!;
          expect((word >>> ((i % (32 / bits)) * bits)) & ((1 << bits) - 1)).toBe(codes[j * n + i]);
        }
    }
  });
  it("byte streams per row round-trip for 1..4 bits, odd lengths", () => {
    for (const bits of [1, 2, 3, 4]) {
      const rows = 2, n = 37;
      const r = lcg(7 + bits);
      const codes = Uint8Array.from({ length: rows * n }, () => Math.floor(r() * (1 << bits)));
      const packed = packRowsBytes(codes, rows, n, bits);
      const stride = Math.ceil((n * bits) / 8);
      expect(packed.length).toBe(rows * stride);
      for (let j = 0; j < rows; j++) for (let i = 0; i < n; i++) expect(unpackRowByteCode(packed, stride, j, i, bits)).toBe(codes[j * n + i]);
    }
  });
});

describe("affine format", () => {
  const make = (bits: number, groupSize: number | "row", opts: { real?: boolean; gIdx?: boolean } = {}) => {
    const out = 5, inF = 64;
    const groups = groupSize === "row" ? 1 : inF / groupSize;
    const r = lcg(bits * 31 + (groupSize === "row" ? 0 : groupSize));
    const codes = Uint8Array.from({ length: out * inF }, () => Math.floor(r() * (1 << bits)));
    const scales = Float32Array.from({ length: out * groups }, () => 0.01 + r());
    const zeros = opts.real ? Float32Array.from({ length: out * groups }, () => r() * 3) : Uint8Array.from({ length: out * groups }, () => Math.floor(r() * (1 << bits)));
    const gIdx = opts.gIdx ? Int32Array.from({ length: inF }, (_, i) => (i * 7) % groups) : null;
    return { p: { outFeatures: out, inFeatures: inF, bits, groupSize, codes, scales, zeros, gIdx }, groups };
  };
  it("materialize computes f16(scale) · (q − zero) for every layout option", () => {
    for (const bits of [2, 3, 4, 8])
      for (const g of [16, 32, "row"] as const)
        for (const real of [false, true])
          for (const act of [false, true]) {
            if (act && g === "row") continue;
            const { p, groups } = make(bits, g, { real, gIdx: act });
            const w = createAffineWeight(p);
            const out = new Float32Array(5 * 64);
            w.materialize(0, 5, out);
            const s16 = fromF16Bits(toF16Bits(p.scales));
            const z = real ? fromF16Bits(toF16Bits(p.zeros as Float32Array)) : p.zeros;
            const gs = g === "row" ? 64 : g;
            for (let j = 0; j < 5; j++)
              for (let i = 0; i < 64; i++) {
                const grp = act ? p.gIdx![i]! : Math.floor(i / gs);
                const k = j * groups + grp;
                expect(out[j * 64 + i]).toBe(Math.fround(s16[k]! * (p.codes[j * 64 + i]! - z[k]!)));
              }
            w.dispose();
          }
  });
  it("materialize of a row range equals that slice of the whole", () => {
    const w = createAffineWeight(make(3, 32).p);
    const all = new Float32Array(5 * 64);
    w.materialize(0, 5, all);
    const part = new Float32Array(2 * 64);
    w.materialize(2, 4, part);
    expect(Array.from(part)).toEqual(Array.from(all.subarray(128, 256)));
    expect(() => w.materialize(4, 6, part)).toThrow(/outside \[0, 5\)/);
    w.dispose();
  });
  it("storage bytes: the trait table's prediction equals what is held, and the memory counters agree", () => {
    for (const [bits, g] of [[2, 32], [3, 16], [4, "row"], [8, 32]] as const) {
      const before = memory().bytes;
      const w = createAffineWeight(make(bits, g).p);
      const held = memory().bytes - before;
      expect(w.storageBytes()).toBe(held);
      expect(predictedStorageBytes(w)).toBe(held);
      expect(w.bitsPerWeight()).toBeCloseTo((held * 8) / (5 * 64), 12);
      w.dispose();
    }
    // 4-bit, group 128 on a realistic shape: 4 + (16 + 8) / 128 = 4.1875 bits per weight
    const out = 256, inF = 256;
    const w = createAffineWeight({ outFeatures: out, inFeatures: inF, bits: 4, groupSize: 128, codes: new Uint8Array(out * inF), scales: new Float32Array(out * 2).fill(1), zeros: new Uint8Array(out * 2) });
    expect(w.bitsPerWeight()).toBe(4 + 24 / 128);
    expect(formatTraits(w).blockSize(w)).toBe(128);
    expect(FORMAT_TRAITS.affine.bytesPerBlock(w)).toBe(64 + 2 + 1);
    w.dispose();
  });
  it("bad parts are refused with what is wrong", () => {
    const { p } = make(4, 32);
    expect(() => createAffineWeight({ ...p, bits: 5 })).toThrow("affine weight: bits must be one of 2, 3, 4, 8, got 5");
    expect(() => createAffineWeight({ ...p, groupSize: 24 })).toThrow("affine weight: group size 24 does not divide in = 64");
    expect(() => createAffineWeight({ ...p, codes: p.codes.map(() => 16) })).toThrow(/code 16 at 0 does not fit in 4 bits/);
    expect(() => createAffineWeight({ ...p, scales: p.scales.map(() => NaN) })).toThrow(/scale NaN at 0 is not finite/);
    expect(() => createAffineWeight({ ...p, codes: p.codes.subarray(1) })).toThrow(/codes hold 319 values/);
  });
  it("serializes under GPTQ tensor names and reads back identically", () => {
    const w = createAffineWeight(make(3, 16, { gIdx: true }).p);
    const s = serializeQuantizedWeight(w);
    expect(Object.keys(s.tensors).sort()).toEqual(["g_idx", "qweight", "scales", "zeros"]);
    expect(s.tensors.qweight!.shape).toEqual([6, 5]);
    expect(s.tensors.scales!.dtype).toBe("f16");
    const copies = Object.fromEntries(Object.entries(s.tensors).map(([k, t]) => [k, tensor(t.dataSync(), t.shape, { dtype: t.dtype })]));
    const back = deserializeQuantizedWeight(copies, JSON.parse(JSON.stringify(s.metadata)));
    const a = new Float32Array(320), b = new Float32Array(320);
    w.materialize(0, 5, a);
    back.materialize(0, 5, b);
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(() => deserializeQuantizedWeight({}, { ...s.metadata })).toThrow("quantized weight: tensor 'qweight' is missing (have: none)");
    expect(() => deserializeQuantizedWeight({}, { format: "blocky" })).toThrow('unknown quantized weight format "blocky"; known: affine, codebook, custom');
    // The format names a table entry, never an inherited property of the table object.
    expect(() => deserializeQuantizedWeight({}, { format: "toString" })).toThrow('unknown quantized weight format "toString"; known: affine, codebook, custom');
    back.dispose();
    w.dispose();
  });
});

describe("codebook format", () => {
  const nf = Float32Array.from([-1, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0, 0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.723, 1]);
  const make = (bits: number, doubleQuant: boolean) => {
    const out = 3, inF = 64, blockSize = 16;
    const r = lcg(bits + (doubleQuant ? 100 : 0));
    const codes = Uint8Array.from({ length: out * inF }, () => Math.floor(r() * (1 << bits)));
    const levels = bits === 4 ? nf : Float32Array.from({ length: 1 << bits }, (_, i) => -1 + (2 * i) / ((1 << bits) - 1));
    const absmax = Float32Array.from({ length: (out * inF) / blockSize }, () => 0.1 + r());
    return { outFeatures: out, inFeatures: inF, bits, blockSize, codes, levels, absmax, doubleQuant };
  };
  it("materialize = absmax[block] · levels[q], with plain and double-quantized absmax", () => {
    for (const bits of [1, 2, 3, 4])
      for (const dq of [false, true]) {
        const p = make(bits, dq);
        const w = createCodebookWeight(p);
        const out = new Float32Array(3 * 64);
        w.materialize(0, 3, out);
        let maxRel = 0;
        for (let j = 0; j < 3; j++)
          for (let i = 0; i < 64; i++) {
            const b = j * 4 + Math.floor(i / 16);
            const exact = p.absmax[b]! * p.levels[p.codes[j * 64 + i]!]!;
            if (!dq) expect(out[j * 64 + i]).toBe(Math.fround(exact));
            else maxRel = Math.max(maxRel, Math.abs(out[j * 64 + i]! - exact));
          }
        // 8-bit absmax: |error| ≤ |level| · half a step of (max − min)/255, with |level| ≤ 1 and max − min < 1
        if (dq) expect(maxRel).toBeLessThan(1 / 510 + 1e-6);
        expect(w.storageBytes()).toBe(predictedStorageBytes(w));
        w.dispose();
      }
  });
  it("serialize round trip and bad parts", () => {
    const w = createCodebookWeight(make(4, true));
    const s = serializeQuantizedWeight(w);
    expect(Object.keys(s.tensors).sort()).toEqual(["absmax_codes", "absmax_offset", "absmax_scale", "codes", "levels"]);
    const back = deserializeQuantizedWeight(Object.fromEntries(Object.entries(s.tensors).map(([k, t]) => [k, tensor(t.dataSync(), t.shape, { dtype: t.dtype })])), s.metadata);
    const a = new Float32Array(192), b = new Float32Array(192);
    w.materialize(0, 3, a);
    back.materialize(0, 3, b);
    expect(Array.from(b)).toEqual(Array.from(a));
    dispose([]);
    back.dispose();
    w.dispose();
    const p = make(2, false);
    expect(() => createCodebookWeight({ ...p, blockSize: 24 })).toThrow("codebook weight: block size 24 does not divide in = 64");
    expect(() => createCodebookWeight({ ...p, levels: new Float32Array(3) })).toThrow(/levels hold 3 values, expected 2\^2 = 4/);
    expect(() => createCodebookWeight({ ...p, bits: 5 })).toThrow(/bits must be one of 1, 2, 3, 4/);
  });
});
