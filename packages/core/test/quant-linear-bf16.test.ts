// quantLinear with bf16 activations: the fused path passes bf16 straight to quantMatmul (which
// computes in f32 and rounds once), the generic path keeps its cast-around. On the host backends
// both give exactly what quantLinear gave before, cast(quantLinear(cast(x, f32)), bf16), forward
// and backward, bit for bit.
import { describe, expect, it } from "vitest";
import { backward, cast, mul, randn, registerSimBackend, sum, tidy, type Device, type Tensor } from "@modulora/tensor";
import { createAffineWeight, createCodebookWeight, quantLinear, type QuantizedWeight, type QuantPath } from "../src/index.js";

registerSimBackend();

function lcg(seed: number) {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 16777216;
}

const OUT = 37;
const IN = 96;

function affineOn(device: Device, bits: number, gIdx: boolean): QuantizedWeight {
  const groupSize = 32;
  const groups = IN / groupSize;
  const r = lcg(bits * 11 + (gIdx ? 1 : 0));
  return createAffineWeight({
    outFeatures: OUT, inFeatures: IN, bits, groupSize,
    codes: Uint8Array.from({ length: OUT * IN }, () => Math.floor(r() * (1 << bits))),
    scales: Float32Array.from({ length: OUT * groups }, () => 0.01 + r() * 0.1),
    zeros: Uint8Array.from({ length: OUT * groups }, () => Math.floor(r() * (1 << bits))),
    gIdx: gIdx ? Int32Array.from({ length: IN }, (_, i) => ((i * 5) % IN) % groups) : null,
    device,
  });
}

function codebookOn(device: Device): QuantizedWeight {
  const r = lcg(5);
  const blockSize = 32;
  return createCodebookWeight({
    outFeatures: OUT, inFeatures: IN, bits: 4, blockSize,
    codes: Uint8Array.from({ length: OUT * IN }, () => Math.floor(r() * 16)),
    levels: Float32Array.from({ length: 16 }, (_, i) => -1 + (2 * i) / 15),
    absmax: Float32Array.from({ length: (OUT * IN) / blockSize }, () => 0.05 + r()),
    doubleQuant: true, device,
  });
}

const values = (t: Tensor) => Array.from(t.dataSync() as ArrayLike<number>);

/** y and dX of Σ y ⊙ g, for x [2, 3, in] bf16; `castAround`: through an explicit f32 cast of x and a bf16 cast of y. */
function run(q: QuantizedWeight, device: Device, path: QuantPath, castAround: boolean) {
  return tidy(() => {
    const x = cast(randn([2, 3, IN], { seed: 6, device }), "bf16").requireGrad();
    const y = castAround ? cast(quantLinear(cast(x, "f32"), q, { path }), "bf16") : quantLinear(x, q, { path });
    const g = randn([2, 3, OUT], { seed: 7, device });
    backward(sum(mul(cast(y, "f32"), g)));
    return { dtype: y.dtype, gradDtype: x.grad!.dtype, y: values(y), dx: values(x.grad!) };
  });
}

describe("quantLinear on bf16 activations equals cast(quantLinear(cast(x, f32)), bf16)", () => {
  for (const device of ["cpu", "sim"] as const) {
    const weights: [string, () => QuantizedWeight][] = [
      ["affine 4-bit", () => affineOn(device, 4, false)],
      ["affine 3-bit act-order", () => affineOn(device, 3, true)],
      ["codebook 4-bit double-quantized", () => codebookOn(device)],
    ];
    for (const [name, make] of weights) {
      for (const path of ["fused", "generic"] as const) {
        it(`${device} ${name} ${path}: y and dX bit for bit`, () => {
          const q = make();
          try {
            const got = run(q, device, path, false);
            const want = run(q, device, path, true);
            expect(got.dtype).toBe("bf16");
            expect(got.gradDtype).toBe("bf16");
            expect(got.y).toEqual(want.y);
            expect(got.dx).toEqual(want.dx);
            expect(got.y.some((v) => v !== 0)).toBe(true);
          } finally {
            q.dispose?.();
          }
        });
      }
    }
  }
});
