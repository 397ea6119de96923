// The references the conformance suite compares every quantizer with.
import { describe, expect, it } from "vitest";
import { randn } from "@modulora/tensor";
import { hessianError, referenceRoundToNearest, relativeError } from "../src/testing/index.js";

describe("referenceRoundToNearest", () => {
  it("min-max grid containing 0, by hand: 4 bits on [-1, -0.33, 0, 0.75, 2] (scale 0.2, zero 5)", () => {
    const deq = referenceRoundToNearest([-1, -0.33, 0, 0.75, 2], 1, 5, 4, "row");
    // codes round(x / 0.2) + 5 = 0, 3, 5, 9, 15 → 0.2 · (code − 5)
    expect(Array.from(deq)).toEqual([-1, -0.4, 0, 0.8, 2].map(Math.fround));
  });
  it("groups are separate; an all-positive group keeps 0 in range; an all-zero group stays zero", () => {
    const deq = referenceRoundToNearest([1, 2, 3, 0, 0, 0], 2, 3, 2, "row");
    // row 0: range [0, 3], scale 1, zero 0: exact; row 1: zeros
    expect(Array.from(deq)).toEqual([1, 2, 3, 0, 0, 0]);
    // groups of 2 at 2 bits: [-1, 2] → scale 1, zero 1 (exact); [0.4, 3] → range [0, 3], scale 1, zero 0: 0.4 → 0
    expect(Array.from(referenceRoundToNearest([-1, 2, 0.4, 3], 1, 4, 2, 2))).toEqual([-1, 2, 0, 3]);
  });
});

describe("hessianError", () => {
  it("with H = I it is the relative weight error; Ŵ = 0 gives 1 under any H", () => {
    const w = randn([8, 16], { seed: 1 });
    const wv = w.dataSync() as Float32Array;
    const wHat = referenceRoundToNearest(wv, 8, 16, 3, 8);
    const eye = new Float64Array(256);
    for (let i = 0; i < 16; i++) eye[i * 17] = 1;
    expect(hessianError(wHat, wv, eye, 8, 16)).toBeCloseTo(relativeError(wHat, wv), 12);
    const h = new Float64Array(256);
    for (let i = 0; i < 16; i++) for (let j = 0; j < 16; j++) h[i * 16 + j] = 0.5 ** Math.abs(i - j);
    expect(hessianError(new Float32Array(128), wv, h, 8, 16)).toBeCloseTo(1, 12);
    w.dispose();
  });
  it("a quantizer that returns Ŵ = 0 fails the suite's comparison at every width (the reference's error is below 1)", () => {
    const w = randn([64, 256], { seed: 13 });
    const wv = w.dataSync() as Float32Array;
    for (const bits of [1, 2, 3, 4, 8])
      for (const g of [32, "row"] as const) expect(relativeError(referenceRoundToNearest(wv, 64, 256, bits, g), wv), `${bits} bits, group ${g}`).toBeLessThan(1);
    w.dispose();
  });
});
