// The quantized linear, ModuLoRALinear and the Trainer on the `sim` device: the same bits as on
// `cpu`, no host↔device transfer in a training step once the weights are on the device, and the
// generic path never holding Ŵ.
import { describe, expect, it } from "vitest";
import {
  AdamW, assign, backward, dispose, mean, memory, noGrad, randn, registerSimBackend, resetPeakMemory, resetSimStats, simStats, square,
  tensorFrom, tidy, hasQuantFormatKernels, listQuantFormats, packedWeight, quantMatmul, type Device, type Tensor,
} from "@modulora/tensor";
import {
  accumulateAbsSum, accumulateHessian, affinePackedWeight, affineReferenceDequantize, codebookPackedWeight, codebookReferenceDequantize, createAffineWeight, createCodebookWeight,
  ModuLoRALinear, quantLinear, Trainer, type AffineWeight, type CodebookWeight, type QuantizedWeight, type QuantPath, type TrainerEvent,
} from "../src/index.js";
import { ternaryQuantizer } from "./ternary.js";

registerSimBackend();

function lcg(seed: number) {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 16777216;
}

/** The bit patterns of a float array (so that −0, NaN payloads and every ulp count). */
function bits(a: Float32Array | Float64Array): number[] {
  return a instanceof Float64Array ? Array.from(new BigUint64Array(a.buffer, a.byteOffset, a.length), Number) : Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
}

const OUT = 37;
const IN = 96;

function affineOn(device: Device, bitsPerCode: number, gIdx: boolean): AffineWeight {
  const groupSize = 32;
  const groups = IN / groupSize;
  const r = lcg(bitsPerCode * 7 + (gIdx ? 1 : 0));
  return createAffineWeight({
    outFeatures: OUT, inFeatures: IN, bits: bitsPerCode, groupSize,
    codes: Uint8Array.from({ length: OUT * IN }, () => Math.floor(r() * (1 << bitsPerCode))),
    scales: Float32Array.from({ length: OUT * groups }, () => 0.01 + r() * 0.1),
    zeros: Uint8Array.from({ length: OUT * groups }, () => Math.floor(r() * (1 << bitsPerCode))),
    // act-order: a permutation of the group labels
    gIdx: gIdx ? Int32Array.from({ length: IN }, (_, i) => ((i * 5) % IN) % groups) : null,
    device,
  });
}

function codebookOn(device: Device, doubleQuant: boolean): CodebookWeight {
  const r = lcg(doubleQuant ? 3 : 4);
  const blockSize = 32;
  return createCodebookWeight({
    outFeatures: OUT, inFeatures: IN, bits: 4, blockSize,
    codes: Uint8Array.from({ length: OUT * IN }, () => Math.floor(r() * 16)),
    levels: Float32Array.from({ length: 16 }, (_, i) => -1 + (2 * i) / 15),
    absmax: Float32Array.from({ length: (OUT * IN) / blockSize }, () => 0.05 + r()),
    doubleQuant, device,
  });
}

async function ternaryOn(device: Device): Promise<QuantizedWeight> {
  const w = randn([OUT, IN], { seed: 12, device });
  const q = await ternaryQuantizer.quantize(w, { bits: 2, groupSize: "row" });
  w.dispose();
  return q;
}

/** Forward and backward of a ModuLoRALinear on `device`: y, dX, dA, dB as host arrays. */
function runLayer(q: QuantizedWeight, device: Device, path: QuantPath) {
  const layer = new ModuLoRALinear(q, { r: 4, alpha: 8, seed: 3, path, rowBlock: 10, device });
  try {
    return tidy(() => {
      noGrad(() => assign(layer.loraB, randn([OUT, 4], { seed: 5, std: 0.1, device })));
      const x = randn([2, 3, IN], { seed: 6, requiresGrad: true, device });
      const y = layer.forward(x);
      backward(mean(square(y)));
      const out = { y: y.dataSync() as Float32Array, dx: x.grad!.dataSync() as Float32Array, da: layer.loraA.grad!.dataSync() as Float32Array, db: layer.loraB.grad!.dataSync() as Float32Array };
      x.dispose();
      return out;
    });
  } finally {
    layer.dispose();
  }
}

describe("quantLinear on sim equals cpu bit for bit", () => {
  const cases: [string, (d: Device) => QuantizedWeight | Promise<QuantizedWeight>, QuantPath[]][] = [
    ...[2, 3, 4].flatMap((b) => [false, true].map((g): [string, (d: Device) => QuantizedWeight, QuantPath[]] => [`affine ${b} bits${g ? ", g_idx" : ""}`, (d) => affineOn(d, b, g), ["fused", "generic"]])),
    ["codebook", (d) => codebookOn(d, false), ["fused", "generic"]],
    ["codebook, double-quantized absmax", (d) => codebookOn(d, true), ["fused", "generic"]],
    ["custom (ternary plugin)", ternaryOn, ["generic"]],
  ];
  for (const [name, make, paths] of cases) {
    for (const path of paths) {
      it(`${name}, ${path} path: forward and all gradients`, async () => {
        const qc = await make("cpu");
        const qs = await make("sim");
        try {
          const c = runLayer(qc, "cpu", path);
          const s = runLayer(qs, "sim", path);
          for (const k of ["y", "dx", "da", "db"] as const) expect(bits(s[k]), k).toEqual(bits(c[k]));
          expect(c.y.every(Number.isFinite)).toBe(true);
        } finally {
          qc.dispose();
          qs.dispose();
        }
      });
    }
  }

  it("the fused path on sim equals the generic path within f32 rounding, and the dequantize kernel equals the TypeScript reference exactly", () => {
    for (const make of [() => affineOn("sim", 3, true), () => codebookOn("sim", true)]) {
      const q = make();
      try {
        const f = runLayer(q, "sim", "fused");
        const g = runLayer(q, "sim", "generic");
        const scale = Math.max(...Array.from(g.dx, Math.abs));
        for (let i = 0; i < f.dx.length; i++) expect(Math.abs(f.dx[i]! - g.dx[i]!)).toBeLessThan(1e-5 * scale);
        const viaKernel = new Float32Array(5 * IN);
        const viaRef = new Float32Array(5 * IN);
        q.materialize(3, 8, viaKernel);
        if (q.format === "affine") affineReferenceDequantize(q, 3, 8, viaRef);
        else codebookReferenceDequantize(q as CodebookWeight, 3, 8, viaRef);
        expect(bits(viaKernel)).toEqual(bits(viaRef));
      } finally {
        q.dispose();
      }
    }
  });

  it("a format without kernels on a device is an error naming the format, the device and what to do", () => {
    const q = affineOn("sim", 4, false);
    try {
      const alien = packedWeight({ ...affinePackedWeight(q), format: "alien" });
      expect(hasQuantFormatKernels("alien", "sim")).toBe(false);
      expect(listQuantFormats("sim")).toEqual(expect.arrayContaining(["affine", "codebook"]));
      tidy(() => {
        expect(() => quantMatmul(randn([2, IN], { seed: 1, device: "sim" }), alien)).toThrow(
          /quantMatmul: format 'alien' has no kernels on device 'sim'; use the generic path .* registerQuantFormatKernels\('alien', 'sim', kernels\)/,
        );
      });
    } finally {
      q.dispose();
    }
  });

  it("the packed weight is described once, on its device; mixing devices is refused with what to do", () => {
    const q = affineOn("sim", 4, false);
    const cb = codebookOn("sim", false);
    try {
      expect(affinePackedWeight(q)).toBe(affinePackedWeight(q));
      expect(affinePackedWeight(q).device).toBe("sim");
      expect(codebookPackedWeight(cb).device).toBe("sim");
      tidy(() => {
        expect(() => quantLinear(randn([2, IN], { seed: 1 }), q)).toThrow(/input is on 'cpu' and the affine weight on 'sim'/);
      });
      expect(() => new ModuLoRALinear(q, { r: 2, alpha: 2, device: "cpu" })).toThrow(/weight is on 'sim', options.device is 'cpu'/);
    } finally {
      q.dispose();
      cb.dispose();
    }
  });
});

describe("transfers on sim", () => {
  it("a ModuLoRALinear forward + backward + AdamW step moves nothing between host and device once the weight is there", () => {
    const q = affineOn("sim", 4, true);
    const layer = new ModuLoRALinear(q, { r: 4, alpha: 8, seed: 1, dropout: 0.1 });
    const opt = new AdamW(layer.parameters(), { lr: 0.01 });
    try {
      expect(layer.device).toBe("sim");
      expect(layer.loraA.device).toBe("sim");
      tidy(() => {
        const x = randn([4, 5, IN], { seed: 2, device: "sim" });
        resetSimStats();
        for (let step = 1; step <= 2; step++) {
          tidy(() => {
            backward(mean(square(layer.forward(x, { training: true, step }))));
            opt.step();
            opt.zeroGrad();
          });
        }
        expect(simStats()).toEqual({ hostToDevice: 0, deviceToHost: 0, bytesToDevice: 0, bytesToHost: 0, synchronizations: 0 });
      });
    } finally {
      opt.dispose();
      layer.dispose();
      q.dispose();
    }
  });

  it("the Trainer on sim gives the cpu losses bit for bit, with one upload per micro-batch and one read per step (+1 at the end)", async () => {
    const steps = 6;
    const accum = 2;
    const run = async (device: Device) => {
      const q = affineOn(device, 3, false);
      const layer = new ModuLoRALinear(q, { r: 4, alpha: 8, seed: 1 });
      const r = lcg(99);
      const batches = Array.from({ length: 4 }, () => Float32Array.from({ length: 3 * IN }, () => r() - 0.5));
      const losses: number[] = [];
      const trainer = new Trainer({
        parameters: new Map([["a", layer.loraA], ["b", layer.loraB]]),
        data: { length: batches.length, *epoch(_e: number, start: number) { for (let i = start; i < batches.length; i++) yield { tokens: 3, i }; } },
        loss: (batch: { tokens: number; i: number }) => {
          const x = tensorFrom(batches[batch.i]!, { shape: [3, IN], device });
          return mean(square(layer.forward(x)));
        },
        steps, lr: 0.05, gradAccum: accum, maxGradNorm: 0.5,
        onEvent: (e: TrainerEvent) => {
          if (e.type === "step") losses.push(e.loss, e.gradNorm);
        },
      });
      if (device === "sim") resetSimStats();
      await trainer.fit();
      const stats = simStats();
      const after = [...(layer.loraB.dataSync() as Float32Array)];
      layer.dispose();
      q.dispose();
      return { losses, stats, after };
    };
    const c = await run("cpu");
    const s = await run("sim");
    expect(s.losses).toEqual(c.losses);
    expect(s.after).toEqual(c.after);
    expect(s.losses.length).toBe(2 * steps);
    expect(s.stats.hostToDevice).toBe(steps * accum); // the batches in
    // the loss and the gradient norm together, once per step; plus one finiteness probe of all
    // the parameters at the end of the run
    expect(s.stats.deviceToHost).toBe(steps + 1);
  });
});

describe("calibration statistics on the device", () => {
  it("accumulateHessian and accumulateAbsSum: sim equals cpu bit for bit and equals plain XᵀX and Σ|x| within f32 GEMM rounding, with no transfer until the read", () => {
    const r = lcg(5);
    const chunks = [Float32Array.from({ length: 7 * 12 }, () => r() - 0.5), Float32Array.from({ length: 2 * 5 * 12 }, () => r() - 0.5)];
    const on = (device: Device) => {
      const xs = [tensorFrom(chunks[0]!, { shape: [7, 12], device }), tensorFrom(chunks[1]!, { shape: [2, 5, 12], device })];
      if (device === "sim") resetSimStats();
      let h: Tensor | null = null;
      let s: Tensor | null = null;
      for (const x of xs) {
        h = accumulateHessian(h, x);
        s = accumulateAbsSum(s, x);
      }
      const moved = simStats();
      const out = { h: h!.dataSync() as Float64Array, s: s!.dataSync() as Float64Array, moved };
      dispose([...xs, h!, s!]);
      return out;
    };
    const c = on("cpu");
    const s = on("sim");
    expect(s.moved.hostToDevice + s.moved.deviceToHost).toBe(0);
    expect(bits(s.h)).toEqual(bits(c.h));
    expect(bits(s.s)).toEqual(bits(c.s));
    const all = [...chunks[0]!, ...chunks[1]!];
    for (let i = 0; i < 12; i++)
      for (let j = 0; j < 12; j++) {
        let ref = 0;
        let mag = 0;
        for (let t = 0; t < 17; t++) {
          ref += all[t * 12 + i]! * all[t * 12 + j]!;
          mag += Math.abs(all[t * 12 + i]! * all[t * 12 + j]!);
        }
        // Each chunk's XᵀX is an f32 GEMM over at most 10 rows: error ≤ (rows + 1)·u·Σ|x_i x_j|.
        expect(Math.abs(c.h[i * 12 + j]! - ref)).toBeLessThanOrEqual(11 * 2 ** -24 * mag);
      }
    for (let j = 0; j < 12; j++) {
      let ref = 0;
      for (let t = 0; t < 17; t++) ref += Math.abs(all[t * 12 + j]!);
      expect(c.s[j]).toBeCloseTo(ref, 12); // f64 sums of f32 values
    }
  });
});

describe("the generic path keeps no Ŵ", () => {
  for (const [device, kind] of [["cpu", "custom"], ["sim", "custom"], ["sim", "affine"]] as const) {
  it(`${kind} weight on ${device}: forward holds the output only, backward re-materializes one row block at a time`, async () => {
    const [out, inF] = [1024, 256];
    const dense = out * inF * 4;
    const w = randn([out, inF], { seed: 3, device });
    const q = kind === "custom" ? await ternaryQuantizer.quantize(w, { bits: 2, groupSize: "row" }) : rtnLike(w);
    w.dispose();
    const layer = new ModuLoRALinear(q, { r: 4, alpha: 8, seed: 1, rowBlock: 16, path: "generic", device });
    try {
      tidy(() => {
        const x = randn([4, inF], { seed: 4, requiresGrad: true, device });
        tidy(() => backward(mean(layer.forward(x)))); // warm-up: kernels' per-thread scratch
        x.zeroGrad();
        resetPeakMemory(device);
        const before = memory(device);
        const y = tidy(() => layer.forward(x));
        // y [4, out] plus the LoRA branch's small saved tensors; nothing of size out × in
        expect(memory(device).bytes - before.bytes).toBeLessThan(dense / 16);
        backward(mean(y));
        // every block is freed before the next one: the peak stays far below a dense Ŵ
        expect(memory(device).nativePeakBytes - before.nativeBytes).toBeLessThan(dense / 4);
        expect(x.grad!.shape).toEqual([4, inF]);
        x.dispose();
      });
    } finally {
      layer.dispose();
      q.dispose();
    }
  });
  }
});

/** An affine weight of W's shape on W's device (codes from W's signs; the values do not matter here). */
function rtnLike(w: Tensor): AffineWeight {
  const [out, inF] = w.shape as [number, number];
  const host = w.dataSync() as Float32Array;
  return createAffineWeight({
    outFeatures: out, inFeatures: inF, bits: 2, groupSize: 64,
    codes: Uint8Array.from(host, (v) => (v > 0.5 ? 3 : v > 0 ? 2 : v > -0.5 ? 1 : 0)),
    scales: new Float32Array(out * (inF / 64)).fill(0.5), zeros: new Uint8Array(out * (inF / 64)).fill(2), device: w.device,
  });
}
