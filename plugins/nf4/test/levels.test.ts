// The published level tables against independent constructions: NF4 from quantiles of N(0, 1)
// (QLoRA's definition), FP4 from a decode of bitsandbytes' 4-bit float bit fields.
import { describe, expect, it } from "vitest";
import { FP4_LEVELS, NF4_LEVELS, levelSearch, nearestLevelCode } from "../src/index.js";
import { normalCdf, normalQuantile } from "./normal.js";

const f32Bits = (v: number) => new Uint32Array(Float32Array.of(v).buffer)[0]!;

describe("the normal CDF and quantile written for these tests", () => {
  it("Φ and Φ⁻¹ match known values to f64 precision", () => {
    // Φ(1) = 0.841344746068542948…, Φ⁻¹(0.975) = 1.959963984540054…, Φ⁻¹(0.5) = 0
    expect(Math.abs(normalCdf(1) - 0.8413447460685429)).toBeLessThan(2e-16);
    expect(Math.abs(normalCdf(-1) - (1 - 0.8413447460685429))).toBeLessThan(2e-16);
    expect(Math.abs(normalQuantile(0.975) - 1.959963984540054)).toBeLessThan(1e-14);
    expect(Math.abs(normalQuantile(0.8413447460685429) - 1)).toBeLessThan(1e-14);
    expect(Math.abs(normalQuantile(0.5))).toBeLessThan(1e-16);
    // Φ(Φ⁻¹(p)) = p over the range the NF4 construction uses, and beyond
    for (const p of [0.01, 0.3, 0.5 + 1e-9, 0.7, 0.9677083, 0.999]) expect(Math.abs(normalCdf(normalQuantile(p)) - p)).toBeLessThan(1e-15);
  });
});

describe("NF4_LEVELS", () => {
  it("are QLoRA's construction: 8 positive quantiles of N(0,1) from offset 0.9677083, 7 negative, normalized, plus 0 (to 1e-6)", () => {
    const offset = 0.9677083;
    const linspace = (a: number, b: number, n: number) => Array.from({ length: n }, (_, i) => a + ((b - a) * i) / (n - 1));
    const positive = linspace(offset, 0.5, 9).slice(0, 8).map(normalQuantile); // p = 0.5 would give 0: left out
    const negative = linspace(offset, 0.5, 8).slice(0, 7).map((p) => -normalQuantile(p));
    const max = normalQuantile(offset);
    const derived = [...positive, 0, ...negative].map((v) => v / max).sort((a, b) => a - b);
    expect(derived).toHaveLength(16);
    const diffs = derived.map((v, i) => Math.abs(v - NF4_LEVELS[i]!));
    console.log(`NF4: published vs derived, max |diff| = ${Math.max(...diffs).toExponential(2)}`);
    for (let i = 0; i < 16; i++) expect(diffs[i], `level ${i}: published ${NF4_LEVELS[i]}, derived ${derived[i]}`).toBeLessThan(1e-6);
    // the ends and the zero are exact
    expect([NF4_LEVELS[0], NF4_LEVELS[7], NF4_LEVELS[15]]).toEqual([-1, 0, 1]);
  });

  it("are 16 ascending f32 values, and the published decimals (QLoRA appendix E / bitsandbytes) are kept", () => {
    expect(NF4_LEVELS).toHaveLength(16);
    for (let i = 0; i < 16; i++) expect(Math.fround(NF4_LEVELS[i]!)).toBe(NF4_LEVELS[i]);
    for (let i = 1; i < 16; i++) expect(NF4_LEVELS[i]!).toBeGreaterThan(NF4_LEVELS[i - 1]!);
    expect(NF4_LEVELS[1]).toBe(-0.6961928009986877);
    expect(NF4_LEVELS[8]).toBe(0.07958029955625534);
    expect(Object.isFrozen(NF4_LEVELS)).toBe(true);
  });
});

describe("FP4_LEVELS", () => {
  it("decode bitsandbytes' 4-bit float: sign bit 3, exponent field bits 2–1, mantissa bit 0, divided by the largest magnitude, in f32", () => {
    // bitsandbytes lists the magnitudes of bits 2–0 = 000…111 as 0, 0.0625, 8, 12, 4, 6, 2, 3:
    // exponent field e ≥ 1 means 2^(4 − e) with an implicit leading 1 and mantissa m worth ½;
    // e = 0 is zero (m = 0) or the subnormal 2⁻⁴ (m = 1).
    const magnitude = (e: number, m: number) => (e === 0 ? m * 2 ** -4 : 2 ** (4 - e) * (1 + m / 2));
    const raw = Array.from({ length: 16 }, (_, c) => (c & 8 ? -1 : 1) * magnitude((c >> 1) & 3, c & 1));
    expect(raw.slice(0, 8)).toEqual([0, 0.0625, 8, 12, 4, 6, 2, 3]);
    const max = Math.max(...raw.map(Math.abs));
    expect(max).toBe(12);
    const decoded = raw.map((v) => Math.fround(v / max));
    expect(FP4_LEVELS.map(f32Bits)).toEqual(decoded.map(f32Bits)); // bit for bit, −0 at code 8 included
    expect(Object.is(FP4_LEVELS[8], -0)).toBe(true);
    expect(FP4_LEVELS[3]).toBe(1);
    expect(FP4_LEVELS[11]).toBe(-1);
  });
});

describe("the nearest-level rule", () => {
  for (const [name, levels] of [["nf4", NF4_LEVELS], ["fp4", FP4_LEVELS]] as const) {
    it(`${name}: each level maps to its own (lowest) code; halfway between neighbours goes to the lower code, a hair off goes to the nearer`, () => {
      const s = levelSearch(levels);
      for (let c = 0; c < 16; c++) {
        const first = levels.findIndex((v) => v === levels[c]); // FP4: ±0 share code 0
        expect(nearestLevelCode(levels[c]!, s), `level ${c}`).toBe(first);
      }
      const sorted = [...new Set(levels)].sort((a, b) => a - b);
      for (let k = 0; k + 1 < sorted.length; k++) {
        const [a, b] = [sorted[k]!, sorted[k + 1]!];
        const ca = levels.indexOf(a);
        const cb = levels.indexOf(b);
        const mid = (a + b) / 2;
        expect(nearestLevelCode(mid, s), `halfway between ${a} and ${b}`).toBe(Math.min(ca, cb));
        const eps = (b - a) * 1e-9;
        expect(nearestLevelCode(mid - eps, s)).toBe(ca);
        expect(nearestLevelCode(mid + eps, s)).toBe(cb);
      }
      expect(nearestLevelCode(-1, s)).toBe(levels.indexOf(-1));
      expect(nearestLevelCode(1, s)).toBe(levels.indexOf(1));
      expect(s.zeroCode).toBe(name === "nf4" ? 7 : 0);
    });
  }
});
