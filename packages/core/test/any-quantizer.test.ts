import { describe, expect, it } from "vitest";
import { AdamW, add, backward, dispose, matmul, mean, memory, randn, scale, square, sub, tanh, tidy, tensor, type Tensor } from "@modulora/tensor";
import { ModuLoRALinear } from "../src/index.js";
import { dequantizeAll } from "../src/testing/index.js";
import { ternaryQuantizer, TernaryWeight } from "./ternary.js";

describe("proof of 'any quantizer': a plain-TypeScript ternary plugin trains through the generic path", () => {
  it("two ModuLoRALinear layers fit a planted rank-4 correction of their ternary weights", async () => {
    const [d, h, r] = [32, 48, 4];
    const w1 = randn([h, d], { seed: 1, std: 1 / Math.sqrt(d) });
    const w2 = randn([d, h], { seed: 2, std: 1 / Math.sqrt(h) });
    const q1 = (await ternaryQuantizer.quantize(w1, { bits: 2, groupSize: "row" })) as TernaryWeight;
    const q2 = (await ternaryQuantizer.quantize(w2, { bits: 2, groupSize: "row" })) as TernaryWeight;
    // The target network is the ternary network plus a rank-4 update per layer, so LoRA with
    // r = 4 can represent it exactly: the optimum of the loss is 0. We ask for < 2% of the
    // starting loss (which is the size of the planted update's effect) after 300 AdamW steps.
    const delta = (q: TernaryWeight, seed: number) =>
      tidy(() => {
        const u = randn([q.outFeatures, r], { seed, std: 0.3 });
        const v = randn([r, q.inFeatures], { seed: seed + 1, std: 1 / Math.sqrt(q.inFeatures) });
        return add(tensor(dequantizeAll(q), [q.outFeatures, q.inFeatures]), matmul(u, v));
      });
    const t1 = delta(q1, 10);
    const t2 = delta(q2, 20);
    const x = randn([128, d], { seed: 3 });
    const target = tidy(() => matmul(tanh(matmul(x, t1, { transB: true })), t2, { transB: true }));
    const l1 = new ModuLoRALinear(q1, { r, alpha: r, seed: 5, rowBlock: 16 });
    const l2 = new ModuLoRALinear(q2, { r, alpha: r, seed: 6, rowBlock: 16 });
    expect(l1.path).toBe("generic");
    const opt = new AdamW([...l1.parameters(), ...l2.parameters()], { lr: 0.01 });
    const net = (inp: Tensor) => l2.forward(tanh(l1.forward(inp)));
    const lossOf = () => tidy(() => mean(square(sub(net(x), target))).item());
    const first = lossOf();
    const before = memory();
    for (let step = 0; step < 300; step++) {
      tidy(() => {
        backward(mean(square(sub(net(x), target))));
        opt.step();
        opt.zeroGrad();
      });
    }
    const last = lossOf();
    expect(memory().bytes).toBe(before.bytes);
    expect(last).toBeLessThan(first * 0.02);
    expect(q1.materializeCalls).toBeGreaterThan(300); // Ŵ re-materialized on demand, forward and backward
    opt.dispose();
    l1.dispose();
    l2.dispose();
    dispose([w1, w2, t1, t2, x, target]);
    q1.dispose();
    q2.dispose();
  });
});
