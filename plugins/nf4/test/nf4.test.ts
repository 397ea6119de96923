// quantizeNf4 against plain references written here: the stored codes and absmax decoded by hand
// (not by core's reference dequantizer or the kernels) equal materialize() bit for bit, each code
// is the nearest level by brute force, all-zero blocks, storage, options, and other devices.
import { describe, expect, it } from "vitest";
import { dispose, randn, registerSimBackend, resetSimStats, simStats, tensor, type Tensor } from "@modulora/tensor";
import { getQuantizer, registerQuantizer, unregisterQuantizer, type CodebookWeight } from "@modulora/core";
import { FP4_LEVELS, NF4_LEVELS, nf4Quantizer, quantizeNf4 } from "../src/index.js";

const TABLES = { nf4: NF4_LEVELS, fp4: FP4_LEVELS } as const;

/** The 4-bit codes of a codebook weight, unpacked by hand: two per byte, low nibble first, rows of in/2 bytes. */
function unpackCodes(q: CodebookWeight): Uint8Array {
  const { outFeatures: out, inFeatures: inF } = q;
  expect(q.codes.dtype).toBe("u8");
  expect(q.codes.shape).toEqual([out, inF / 2]);
  const bytes = q.codes.dataSync() as Uint8Array;
  return Uint8Array.from({ length: out * inF }, (_, k) => {
    const [j, i] = [Math.floor(k / inF), k % inF];
    const byte = bytes[j * (inF / 2) + (i >> 1)]!;
    return i & 1 ? byte >> 4 : byte & 15;
  });
}

/** The per-block absmax as stored: f32 directly, or offset + scale · code (in f32) per 256 blocks. */
function storedAbsmax(q: CodebookWeight): Float32Array {
  if (q.absmax) return q.absmax.dataSync() as Float32Array;
  const codes = q.absmaxCodes!.dataSync() as Uint8Array;
  const scale = q.absmaxScale!.dataSync() as Float32Array;
  const offset = q.absmaxOffset!.dataSync() as Float32Array;
  return Float32Array.from(codes, (c, b) => Math.fround(offset[b >> 8]! + Math.fround(scale[b >> 8]! * c)));
}

/** ŵ = f32(absmax[block] · levels[code]), from the stored tensors only. */
function handDequantize(q: CodebookWeight): Float32Array {
  const codes = unpackCodes(q);
  const absmax = storedAbsmax(q);
  const levels = q.levels.dataSync() as Float32Array;
  const inF = q.inFeatures;
  const perRow = inF / q.blockSize;
  return Float32Array.from(codes, (c, k) => Math.fround(absmax[Math.floor(k / inF) * perRow + Math.floor((k % inF) / q.blockSize)]! * levels[c]!));
}

function materialize(q: CodebookWeight): Float32Array {
  const out = new Float32Array(q.outFeatures * q.inFeatures);
  q.materialize(0, q.outFeatures, out);
  return out;
}

/** max |w| of each block, by brute force. */
function blockAbsmax(w: Float32Array, blockSize: number): Float64Array {
  return Float64Array.from({ length: w.length / blockSize }, (_, b) => Math.max(...Array.from(w.subarray(b * blockSize, (b + 1) * blockSize), Math.abs)));
}

/** A weight with rows of different scales and a few all-zero blocks (one whole super-block of 256 blocks among them). */
function testWeight(out: number, inF: number, seed: number, zeroRows: number): { t: Tensor; w: Float32Array } {
  const g = randn([out, inF], { seed });
  const w = Float32Array.from(g.dataSync() as Float32Array, (v, k) => (Math.floor(k / inF) < zeroRows ? 0 : v * 0.02 * (1 + (Math.floor(k / inF) % 7))));
  g.dispose();
  w.fill(0, (out - 1) * inF + 64, (out - 1) * inF + 128); // one more zero block, in the last row
  return { t: tensor(w, [out, inF]), w };
}

describe("quantizeNf4: the stored codes and absmax", () => {
  for (const table of ["nf4", "fp4"] as const)
    for (const doubleQuant of [true, false])
      it(`${table}, doubleQuant ${doubleQuant}: decoded by hand they equal materialize() bit for bit; each code is the nearest level (brute force, ties to the lower code)`, () => {
        // [40, 1024] in blocks of 64: 640 blocks, so 3 super-blocks (256, 256, 128); rows 0–15 are zero (super-block 0)
        const { t, w } = testWeight(40, 1024, 3, 16);
        const q = quantizeNf4(t, { bits: 4, groupSize: 64, table, doubleQuant });
        try {
          expect(q.format).toBe("codebook");
          expect([q.bits, q.blockSize, q.outFeatures, q.inFeatures]).toEqual([4, 64, 40, 1024]);
          expect(Array.from(q.levels.dataSync())).toEqual(Array.from(Float32Array.from(TABLES[table])));
          expect(q.absmax === null).toBe(doubleQuant);
          const wHat = handDequantize(q);
          expect(materialize(q)).toEqual(wHat); // on cpu, materialize runs the native codebook kernel

          let zeros = 0;
          for (let k = 0; k < wHat.length; k++) if (wHat[k] === 0) zeros++;
          expect(zeros).toBeGreaterThanOrEqual(16 * 1024 + 64);

          // the codes: the nearest level to f32(w / absmax) over all 16, lowest code on a tie;
          // all-zero blocks store the code of the level 0
          const levels = TABLES[table];
          const zeroCode = levels.indexOf(0);
          const am = blockAbsmax(w, 64);
          const codes = unpackCodes(q);
          for (let k = 0; k < w.length; k++) {
            const m = am[Math.floor(k / 64)]!;
            let want = zeroCode;
            if (m > 0) {
              const x = Math.fround(w[k]! / m);
              let best = Infinity;
              for (let c = 0; c < 16; c++) {
                const d = Math.abs(x - levels[c]!);
                if (d < best) [best, want] = [d, c];
              }
            }
            if (codes[k] !== want) expect(codes[k], `weight ${k} = ${w[k]}, block absmax ${m}`).toBe(want);
          }

          // the absmax: exact without double quantization; within half a step of the super-block's 8-bit grid with it
          const stored = storedAbsmax(q);
          if (!doubleQuant) expect(Array.from(stored)).toEqual(Array.from(am, Math.fround));
          else {
            const scale = q.absmaxScale!.dataSync() as Float32Array;
            expect(scale).toHaveLength(3);
            expect(scale[0]).toBe(0); // the all-zero super-block
            for (let b = 0; b < am.length; b++) expect(Math.abs(stored[b]! - am[b]!), `block ${b}`).toBeLessThanOrEqual(0.5 * scale[b >> 8]! * (1 + 1e-5) + 1e-12);
            for (let b = 0; b < 256; b++) expect(stored[b]).toBe(0);
          }
          for (let b = 0; b < am.length; b++) if (am[b] === 0) expect(stored[b], `zero block ${b}`).toBe(0);
        } finally {
          q.dispose();
          t.dispose();
        }
      });

  it("ties: x exactly halfway between two levels goes to the lower code; ±0 to the level 0's code", () => {
    // absmax 1 (each row holds ±1), so x = w. Midpoints that are f32 values, checked here:
    const tiny = Math.fround(1 / 192); // FP4 code 1 (and −tiny code 9)
    const nf4Mids = [[7, 8], [13, 14], [2, 3]].map(([a, b]) => (NF4_LEVELS[a!]! + NF4_LEVELS[b!]!) / 2);
    for (const m of [...nf4Mids, tiny / 2]) expect(Math.fround(m)).toBe(m);
    const fp4Row = [1, tiny / 2, -tiny / 2, 0, -0, 0.375, 0.75, -1];
    const nf4Row = [1, ...nf4Mids, 0, -0, 0.5, -1];
    const w = tensor(Float32Array.from([...fp4Row, ...nf4Row, ...fp4Row.map(() => 0)]), [3, 8]);
    const fp4 = quantizeNf4(w, { bits: 4, groupSize: 8, table: "fp4", doubleQuant: false });
    const nf4 = quantizeNf4(w, { bits: 4, groupSize: 8, doubleQuant: false });
    try {
      // FP4: ±tiny/2 halfway between 0 (code 0) and ±1/192 (1, 9) → 0; 0.375 is nearer 1/3 (4) than 0.5 (5); 0.75 nearest 2/3 (2)
      expect(Array.from(unpackCodes(fp4)).slice(0, 8)).toEqual([3, 0, 0, 0, 0, 4, 2, 11]);
      // NF4: halfway 7|8 → 7, 13|14 → 13, 2|3 → 2; ±0 → 7; 0.5 is nearer 0.4407 (12) than 0.5626 (13)
      expect(Array.from(unpackCodes(nf4)).slice(8, 16)).toEqual([15, 7, 13, 2, 7, 7, 12, 0]);
      // the all-zero row: the level 0's code
      expect(Array.from(unpackCodes(fp4)).slice(16)).toEqual(fp4Row.map(() => 0));
      expect(Array.from(unpackCodes(nf4)).slice(16)).toEqual(fp4Row.map(() => 7));
      expect(Array.from(materialize(fp4)).slice(0, 8)).toEqual([1, 0, 0, 0, 0, Math.fround(1 / 3), Math.fround(2 / 3), -1]);
    } finally {
      dispose([w]);
      fp4.dispose();
      nf4.dispose();
    }
  });

  it("an all-zero weight quantizes to ŵ = 0 with and without double quantization", () => {
    const w = tensor(new Float32Array(4 * 128), [4, 128]);
    for (const doubleQuant of [true, false]) {
      const q = quantizeNf4(w, { bits: 4, groupSize: 64, doubleQuant });
      expect(Array.from(materialize(q)).every((v) => v === 0)).toBe(true);
      expect(Array.from(unpackCodes(q)).every((c) => c === 7)).toBe(true);
      q.dispose();
    }
    w.dispose();
  });

  it("groupSize 'row' is one block per row", () => {
    const w = randn([8, 96], { seed: 2 });
    const q = quantizeNf4(w, { bits: 4, groupSize: "row", doubleQuant: false });
    try {
      expect(q.blockSize).toBe(96);
      expect(Array.from(storedAbsmax(q))).toEqual(Array.from(blockAbsmax(w.dataSync() as Float32Array, 96), Math.fround));
      expect(materialize(q)).toEqual(handDequantize(q));
    } finally {
      q.dispose();
      w.dispose();
    }
  });
});

describe("storage", () => {
  it("bits per weight: 4 + 32/64 without double quantization, 4 + 8/64 + 64/(64·256) with it, plus the 16 f32 levels", () => {
    const [out, inF] = [256, 4096];
    const w = randn([out, inF], { seed: 9 });
    const n = out * inF;
    const blocks = n / 64;
    try {
      const plain = quantizeNf4(w, { bits: 4, groupSize: 64, doubleQuant: false });
      expect(plain.storageBytes()).toBe(n / 2 + 4 * blocks + 64);
      expect(plain.bitsPerWeight()).toBeCloseTo(4 + 32 / 64 + 512 / n, 12);
      plain.dispose();
      const dq = quantizeNf4(w, { bits: 4, groupSize: 64 });
      expect(dq.storageBytes()).toBe(n / 2 + blocks + 8 * (blocks / 256) + 64);
      expect(dq.bitsPerWeight()).toBeCloseTo(4 + 8 / 64 + 64 / (64 * 256) + 512 / n, 12); // 4.1294 here; 4.1289 without the levels
      dq.dispose();
    } finally {
      w.dispose();
    }
  });
});

describe("options", () => {
  const w = () => randn([4, 64], { seed: 1 });
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["table 'nf5'", { table: "nf5" }, /quantizer 'nf4': table must be one of nf4, fp4, got "nf5"/],
    ["doubleQuant 'yes'", { doubleQuant: "yes" }, /quantizer 'nf4': doubleQuant must be true or false, got "yes"/],
    ["bits 3", { bits: 3 }, /quantizer 'nf4': bits = 3 is not supported; use one of 4/],
    ["symmetric true", { symmetric: true }, /quantizer 'nf4': symmetric = true has no meaning here/],
    ["a group size that does not divide in", { groupSize: 48 }, /group size 48 does not divide in = 64/],
  ];
  for (const [what, extra, pattern] of cases)
    it(`${what} is refused, naming the option`, () => {
      const t = w();
      try {
        expect(() => quantizeNf4(t, { bits: 4, groupSize: 64, ...extra })).toThrow(pattern);
      } finally {
        t.dispose();
      }
    });

  it("defaults: nf4 table, double quantization on; the plugin declares them for tools", () => {
    const t = w();
    const q = quantizeNf4(t, { bits: 4, groupSize: 32 });
    expect(q.absmax).toBeNull();
    expect(q.absmaxCodes).not.toBeNull();
    expect(Array.from(q.levels.dataSync())).toEqual(Array.from(Float32Array.from(NF4_LEVELS)));
    q.dispose();
    t.dispose();
    expect(nf4Quantizer).toMatchObject({ name: "nf4", calibration: "none", supportedBits: [4], defaultGroupSize: 64, supportsSymmetric: false });
    expect(nf4Quantizer.options!.map((o) => [o.name, o.type, o.default])).toEqual([["table", "string", "nf4"], ["doubleQuant", "boolean", true]]);
    expect(nf4Quantizer.options![0]!.choices).toEqual(["nf4", "fp4"]);
  });

  it("registers explicitly and is found by name", () => {
    registerQuantizer(nf4Quantizer);
    expect(getQuantizer("nf4")).toBe(nf4Quantizer);
    unregisterQuantizer("nf4");
  });
});

describe("on the sim device", () => {
  it("a weight on sim gives the packed tensors of cpu bit for bit, on sim, reading the weight once", () => {
    registerSimBackend();
    for (const [table, doubleQuant] of [["nf4", true], ["fp4", false]] as const) {
      const wc = randn([24, 512], { seed: 12 });
      const ws = wc.to("sim");
      resetSimStats();
      const qs = quantizeNf4(ws, { bits: 4, groupSize: 64, table, doubleQuant });
      const moved = simStats();
      const qc = quantizeNf4(wc, { bits: 4, groupSize: 64, table, doubleQuant });
      try {
        const keys = doubleQuant ? (["codes", "levels", "absmaxCodes", "absmaxScale", "absmaxOffset"] as const) : (["codes", "levels", "absmax"] as const);
        for (const k of keys) {
          expect(qs[k]!.device, k).toBe("sim");
          expect(Array.from(qs[k]!.dataSync()), `${table}: ${k}`).toEqual(Array.from(qc[k]!.dataSync()));
        }
        // out: the finiteness probe and the weight; in: each packed tensor once
        expect(moved.deviceToHost).toBe(2);
        expect(moved.hostToDevice).toBe(keys.length);
        expect(materialize(qs)).toEqual(materialize(qc));
      } finally {
        dispose([wc, ws]);
        qs.dispose();
        qc.dispose();
      }
    }
  });
});
