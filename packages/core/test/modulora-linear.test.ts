import { describe, expect, it } from "vitest";
import { backward, dispose, fillInPlace, matmul, memory, noGrad, randn, resetPeakMemory, sum, tensor, tidy } from "@modulora/tensor";
import { maxAbsDiff } from "@modulora/tensor/testing";
import { ModuLoRALinear, quantLinear } from "../src/index.js";
import { dequantizeAll } from "../src/testing/index.js";
import { ternaryQuantizer } from "./ternary.js";

async function ternary(out: number, inF: number, seed = 1) {
  const w = randn([out, inF], { seed });
  const q = await ternaryQuantizer.quantize(w, { bits: 2, groupSize: "row" });
  w.dispose();
  return q;
}

describe("ModuLoRALinear", () => {
  it("initialises A Kaiming-uniform (bound 1/√in, as PEFT) and B to zeros; scaling alpha/r or alpha/√r", async () => {
    const q = await ternary(16, 100);
    const l = new ModuLoRALinear(q, { r: 8, alpha: 16, seed: 3 });
    const a = l.loraA.toArray();
    expect(l.loraA.shape).toEqual([8, 100]);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(0.1);
    expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(0.09);
    expect(l.loraB.toArray().every((v) => v === 0)).toBe(true);
    expect(l.scaling).toBe(2);
    const rs = new ModuLoRALinear(q, { r: 4, alpha: 16, rsLora: true });
    expect(rs.scaling).toBe(8);
    expect(l.parameters().every((p) => p.requiresGrad)).toBe(true);
    l.dispose();
    rs.dispose();
    q.dispose();
  });
  it("at init (B = 0) equals X·Ŵᵀ; with B ≠ 0 adds s·(X·Aᵀ)·Bᵀ", async () => {
    const q = await ternary(12, 20);
    const l = new ModuLoRALinear(q, { r: 2, alpha: 3, seed: 1 });
    tidy(() => {
      const x = randn([3, 20], { seed: 2 });
      const w = tensor(dequantizeAll(q), [12, 20]);
      expect(maxAbsDiff(l.forward(x).toArray(), matmul(x, w, { transB: true }).toArray())).toBeLessThan(1e-5);
      noGrad(() => fillInPlace(l.loraB, 0.5));
      const lora = matmul(matmul(x, l.loraA, { transB: true }), l.loraB, { transB: true }).toArray().map((v) => v * 1.5);
      const base = matmul(x, w, { transB: true }).toArray();
      expect(maxAbsDiff(l.forward(x).toArray(), base.map((v, i) => v + lora[i]!))).toBeLessThan(1e-5);
    });
    l.dispose();
    q.dispose();
  });
  it("dropout touches the LoRA input only, in training, reproducibly per step", async () => {
    const q = await ternary(8, 16);
    const l = new ModuLoRALinear(q, { r: 4, alpha: 4, dropout: 0.5, seed: 9 });
    noGrad(() => fillInPlace(l.loraB, 1));
    tidy(() => {
      const x = randn([2, 16], { seed: 4 });
      const evalOut = l.forward(x).toArray();
      expect(l.forward(x, { training: false }).toArray()).toEqual(evalOut);
      const t1 = l.forward(x, { training: true, step: 1 }).toArray();
      expect(l.forward(x, { training: true, step: 1 }).toArray()).toEqual(t1);
      expect(l.forward(x, { training: true, step: 2 }).toArray()).not.toEqual(t1);
      expect(t1).not.toEqual(evalOut);
    });
    l.dispose();
    q.dispose();
  });
  it("backward gives dX, dA, dB and nothing for Ŵ; merging into a quantized weight is refused", async () => {
    const q = await ternary(8, 16);
    const l = new ModuLoRALinear(q, { r: 2, alpha: 2 });
    tidy(() => {
      const x = randn([3, 16], { seed: 1, requiresGrad: true });
      backward(sum(l.forward(x)));
      expect(x.grad!.shape).toEqual([3, 16]);
      expect(l.loraA.grad!.shape).toEqual([2, 16]);
      expect(l.loraB.grad!.shape).toEqual([8, 2]);
      x.dispose();
    });
    expect(() => l.merge()).toThrow(/cannot merge a LoRA adapter into a quantized weight \(format 'custom', 2 bits\)/);
    l.dispose();
    q.dispose();
  });
  it("the generic path's extra memory is one row block, and memory() shows it as scratch", async () => {
    const q = await ternary(512, 256);
    tidy(() => {
      const x = randn([4, 256], { seed: 1 });
      quantLinear(x, q, { rowBlock: 128, path: "generic" }); // warm up the GEMM's per-thread packing buffers
      for (const rowBlock of [16, 128]) {
        resetPeakMemory();
        const base = memory();
        quantLinear(x, q, { rowBlock, path: "generic" });
        const peak = memory().nativePeakBytes - base.nativeBytes;
        const out = 4 * 512 * 4;
        expect(peak).toBeGreaterThanOrEqual(out + rowBlock * 256 * 4);
        expect(peak).toBeLessThanOrEqual(out + rowBlock * 256 * 4 + 64 * 1024);
        expect(memory().scratchBytes).toBe(base.scratchBytes);
      }
    });
    q.dispose();
  });
  it("bad input is refused with the op name", async () => {
    const q = await ternary(8, 16);
    tidy(() => {
      expect(() => quantLinear(randn([2, 15], { seed: 1 }), q)).toThrow(/quantLinear: input's last dimension must be in = 16/);
      expect(() => quantLinear(randn([2, 16], { seed: 1 }), q, { path: "fused" })).toThrow(/the custom format has no fused kernel/);
      expect(() => quantLinear(randn([2, 16], { seed: 1 }), q, { rowBlock: 0 })).toThrow(/rowBlock must be a positive integer/);
    });
    expect(() => new ModuLoRALinear(q, { r: 0, alpha: 1 })).toThrow(/rank r must be a positive integer/);
    expect(() => new ModuLoRALinear(q, { r: 2, alpha: 1, dropout: 1 })).toThrow(/dropout must be in \[0, 1\)/);
    q.dispose();
    dispose([]);
  });
});
