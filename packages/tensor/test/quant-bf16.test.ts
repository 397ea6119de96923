// bf16 inputs of the quantized ops (computed in f32 with f32 accumulation, rounded to bf16 once),
// the format-table flag that says whether a backend's kernels take bf16 themselves, and the random
// packed-code fill of the throughput benchmark (its host path, the one that runs here).
import { describe, expect, it } from "vitest";
import {
  backward, cast, mul, noGrad, packedWeight, philox4x32, quantMatmul, quantMatmulInputGrad, registerQuantFormatKernels, registerSimBackend, seedToKey,
  sum, tensorFrom, tidy, zeros, type PackedWeight, type Tensor,
} from "../src/index.js";
import { packAffineCodes, packCodebookCodes } from "../src/conformance/cases/quant-pack.js";
import { CaseRng } from "../src/conformance/types.js";
import { quantRowBlock, randomPackedCodes } from "../src/cuda/quant.js";

registerSimBackend();

function affine(device: string, bits: number, out: number, inF: number, gIdx: boolean, rng: CaseRng): PackedWeight {
  const groupSize = 32;
  const groups = Math.ceil(inF / groupSize);
  const codes = rng.ints(out * inF, 0, 2 ** bits);
  const perm = Array.from({ length: inF }, (_, i) => i).sort(() => rng.next() - 0.5);
  const g = new Int32Array(inF);
  perm.forEach((col, k) => (g[col] = Math.floor(k / groupSize)));
  return packedWeight({
    format: "affine", outFeatures: out, inFeatures: inF, bits,
    tensors: {
      qweight: tensorFrom(Int32Array.from(packAffineCodes(codes, out, inF, bits)), { shape: [Math.ceil(inF / 32) * bits, out], device }),
      scales: tensorFrom(Array.from(rng.uniform(groups * out, 0.5, 1.5), (s) => s / 2 ** bits), { shape: [groups, out], dtype: "f16", device }),
      zeros: tensorFrom(Uint8Array.from(rng.ints(groups * out, 0, 2 ** bits)), { shape: [groups, out], device }),
      gIdx: gIdx ? tensorFrom(g, { device }) : null,
    },
    params: { groupSize, groups: gIdx ? groups : inF / groupSize, zeroKind: "int" },
  });
}

function codebook(device: string, bits: number, out: number, inF: number, rng: CaseRng): PackedWeight {
  const blockSize = 16;
  const blocks = (out * inF) / blockSize;
  return packedWeight({
    format: "codebook", outFeatures: out, inFeatures: inF, bits,
    tensors: {
      codes: tensorFrom(Uint8Array.from(packCodebookCodes(rng.ints(out * inF, 0, 2 ** bits), out, inF, bits)), { shape: [out, Math.ceil((inF * bits) / 8)], device }),
      levels: tensorFrom(Float32Array.from(rng.uniform(2 ** bits).sort()), { device }),
      absmax: tensorFrom(Float32Array.from(rng.uniform(blocks, 0.5, 2)), { device }),
      absmaxCodes: null, absmaxScale: null, absmaxOffset: null,
    },
    params: { blockSize },
  });
}

const bits16 = (t: Tensor) => Array.from(t.dataSync() as ArrayLike<number>);

describe("quantMatmul with bf16 inputs (host kernels: f32 around the f32 kernels)", () => {
  for (const device of ["cpu", "sim"]) {
    it(`${device}: y and dx are bf16, equal bit for bit to the f32 product of the widened input rounded once`, () => {
      tidy(() => {
        const rng = new CaseRng(7);
        const weights = [affine(device, 4, 37, 96, false, rng), affine(device, 3, 33, 100, true, rng), codebook(device, 2, 21, 48, rng)];
        for (const w of weights) {
          const x = tensorFrom(Array.from(rng.uniform(5 * w.inFeatures)), { shape: [5, w.inFeatures], dtype: "bf16", device }).requireGrad();
          const y = quantMatmul(x, w);
          expect(y.dtype).toBe("bf16");
          expect(y.device).toBe(device);
          const want = noGrad(() => cast(quantMatmul(cast(x, "f32"), w), "bf16"));
          expect(bits16(y)).toEqual(bits16(want));
          const g = tensorFrom(Array.from(rng.uniform(5 * w.outFeatures)), { shape: [5, w.outFeatures], device });
          backward(sum(mul(cast(y, "f32"), g)));
          const dy = cast(g, "bf16");
          const dx = quantMatmulInputGrad(dy, w);
          expect(dx.dtype).toBe("bf16");
          const wantDx = cast(quantMatmulInputGrad(cast(dy, "f32"), w), "bf16");
          expect(bits16(dx)).toEqual(bits16(wantDx));
          expect(x.grad!.dtype).toBe("bf16");
          expect(bits16(x.grad!)).toEqual(bits16(wantDx));
        }
      });
    });
  }
  it("f64 and f16 inputs are refused with a hint to cast", () => {
    tidy(() => {
      const w = affine("cpu", 4, 5, 32, false, new CaseRng(1));
      expect(() => quantMatmul(zeros([2, 32], { dtype: "f64" }), w)).toThrow(/quantMatmul: computes in f32 \(or bf16, accumulated in f32\), got f64; cast the input first/);
      expect(() => quantMatmulInputGrad(zeros([2, 5], { dtype: "f16" }), w)).toThrow(/quantMatmulInputGrad: computes in f32 \(or bf16, accumulated in f32\), got f16/);
    });
  });
  it("kernels flagged bf16 receive the bf16 input; unflagged ones an f32 cast, their f32 result rounded to bf16", () => {
    tidy(() => {
      const seen: string[] = [];
      const kernels = (flag: boolean) => ({
        bf16: flag,
        forward: (x: Tensor, w: PackedWeight) => {
          seen.push(`forward ${x.dtype}`);
          return noGrad(() => cast(zeros([x.shape[0]!, w.outFeatures]), flag ? x.dtype : "f32"));
        },
        inputGrad: (dy: Tensor, w: PackedWeight) => {
          seen.push(`inputGrad ${dy.dtype}`);
          return noGrad(() => cast(zeros([dy.shape[0]!, w.inFeatures]), flag ? dy.dtype : "f32"));
        },
        dequantize: (w: PackedWeight, r0: number, r1: number) => zeros([r1 - r0, w.inFeatures]),
      });
      registerQuantFormatKernels("probe-bf16", "cpu", kernels(true));
      registerQuantFormatKernels("probe-f32", "cpu", kernels(false));
      for (const format of ["probe-bf16", "probe-f32"]) {
        const w = packedWeight({ format, outFeatures: 3, inFeatures: 4, bits: 4, tensors: { t: zeros([1]) }, params: {} });
        const x = zeros([2, 4], { dtype: "bf16" }).requireGrad();
        const y = quantMatmul(x, w);
        expect(y.dtype).toBe("bf16");
        backward(sum(cast(y, "f32")));
        expect(x.grad!.dtype).toBe("bf16");
      }
      expect(seen).toEqual(["forward bf16", "inputGrad bf16", "forward f32", "inputGrad f32"]);
    });
  });
});

describe("randomPackedCodes (host path) and the cuda row blocks", () => {
  it("fills an integer tensor's bytes from Philox stream 3, the same on cpu and sim, in place", () => {
    tidy(() => {
      const seed = 12345;
      const [k0, k1] = seedToKey(seed);
      const want = new Uint8Array(37);
      const block = new Uint32Array(4);
      for (let c = 0; c * 16 < want.length; c++) {
        philox4x32(c, 0, 3, 0, k0, k1, block);
        for (let k = 0; k < 16 && c * 16 + k < want.length; k++) want[c * 16 + k] = (block[k >> 2]! >>> (8 * (k & 3))) & 255;
      }
      const cpu = zeros([37], { dtype: "u8" });
      expect(randomPackedCodes(cpu, seed)).toBe(cpu);
      expect(Array.from(cpu.dataSync() as Uint8Array)).toEqual(Array.from(want));
      const sim = zeros([37], { dtype: "u8", device: "sim" });
      randomPackedCodes(sim, seed);
      expect(Array.from(sim.dataSync() as Uint8Array)).toEqual(Array.from(want));
      // i32 words are the same bytes, little-endian.
      const words = zeros([3, 3], { dtype: "i32" });
      randomPackedCodes(words, seed);
      expect(Array.from(new Uint8Array((words.dataSync() as Int32Array).buffer).subarray(0, 36))).toEqual(Array.from(want.subarray(0, 36)));
      const other = zeros([37], { dtype: "u8" });
      randomPackedCodes(other, seed + 1);
      expect(Array.from(other.dataSync() as Uint8Array)).not.toEqual(Array.from(want));
      randomPackedCodes(zeros([0], { dtype: "u8" }), seed);
    });
  });
  it("refuses float and non-contiguous tensors and unsafe seeds", () => {
    tidy(() => {
      expect(() => randomPackedCodes(zeros([4]), 1)).toThrow(/randomPackedCodes: fills integer tensors \(packed codes\), got f32/);
      expect(() => randomPackedCodes(zeros([2, 3], { dtype: "i32" }).transpose(0, 1), 1)).toThrow(/must be contiguous/);
      expect(() => randomPackedCodes(zeros([4], { dtype: "u8" }), 0.5)).toThrow(/seed must be a safe integer/);
    });
  });
  it("row blocks hold at most 64 MiB of scratch in multiples of 128 rows, or the whole layer when smaller", () => {
    expect(quantRowBlock(100, 4096, 4)).toBe(100);
    expect(quantRowBlock(11008, 4096, 4)).toBe(4096);
    expect(quantRowBlock(11008, 4096, 2)).toBe(8192);
    expect(quantRowBlock(32000, 22016, 4)).toBe(640);
    expect(quantRowBlock(100000, 1 << 20, 4)).toBe(128);
    for (const [out, inF, es] of [[32000, 8192, 4], [22016, 8192, 2], [4096, 11008, 4]] as const) {
      const r = quantRowBlock(out, inF, es);
      expect(r % 128 === 0 || r === out).toBe(true);
      expect(r * inF * es).toBeLessThanOrEqual(64 * 2 ** 20);
    }
  });
});
