// The bf16 compute policy in core: LoRA over a bf16 frozen base keeps f32 factors (the branch runs
// on an f32 cast of the input), and the Trainer's `dtype`: f32 master weights, recorded in every
// checkpoint, the same dtype required to resume.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { add, assign, backward, cast, dispose, keep, matmul, mean, noGrad, randn, scale, square, sub, sum, tidy, zeros, type Tensor } from "@modulora/tensor";
import { LoRALinear, Trainer, TRAINER_DTYPES, type DataSource } from "../src/index.js";

const tmp = mkdtempSync(join(tmpdir(), "modulora-core-bf16-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("LoRALinear over a bf16 weight", () => {
  it("y is bf16 = x·Wᵀ + cast(s·(x_f32·Aᵀ)·Bᵀ); dA, dB are f32 and dX bf16", () => {
    tidy(() => {
      const w = cast(randn([5, 8], { seed: 1 }), "bf16"); // [out, in]
      const x = cast(randn([3, 8], { seed: 2 }), "bf16").requireGrad(); // [M, in]
      const lora = new LoRALinear(w, { r: 2, alpha: 4, seed: 3 });
      // B is zeros after init: give it values, so that the branch is not trivially 0.
      noGrad(() => assign(lora.loraB, randn([5, 2], { seed: 4 })));
      const y = lora.forward(x);
      expect(y.dtype).toBe("bf16");
      const want = add(matmul(x, w, { transB: true }), cast(scale(matmul(matmul(cast(x, "f32"), lora.loraA, { transB: true }), lora.loraB, { transB: true }), lora.scaling), "bf16"));
      expect(Array.from(y.dataSync())).toEqual(Array.from(want.dataSync()));
      backward(sum(cast(y, "f32")));
      expect(lora.loraA.grad!.dtype).toBe("f32");
      expect(lora.loraB.grad!.dtype).toBe("f32");
      expect(x.grad!.dtype).toBe("bf16");
      // The merged weight is f32: the bf16 weight widened exactly, plus s·B·A.
      const merged = lora.mergedWeight();
      expect(merged.dtype).toBe("f32");
      expect(Array.from(merged.dataSync())).toEqual(Array.from(add(cast(w, "f32"), scale(matmul(lora.loraB, lora.loraA), lora.scaling)).dataSync()));
      lora.dispose();
    });
  });

  it("f16 weights are still refused, naming the dtypes it takes", () => {
    tidy(() => {
      expect(() => new LoRALinear(zeros([2, 3], { dtype: "f16" }), { r: 1, alpha: 1 })).toThrow(/LoRALinear: weight must be f32 or bf16 \(a bf16 frozen base\), got f16; cast it first/);
    });
  });
});

interface XB {
  x: Tensor;
  tokens: number;
}
const data: DataSource<XB> = {
  length: 3,
  *epoch(epoch, start) {
    for (let i = start; i < 3; i++) yield { x: randn([4, 6], { seed: 100 + epoch * 17 + i }), tokens: 4 };
  },
};

/** A least-squares toy: f32 master weight w, used in bf16 by the loss when `dtype` is bf16. */
function toy(dtype: "f32" | "bf16", opts: Record<string, unknown> = {}) {
  const w = keep(randn([3, 6], { seed: 1, std: 0.1, requiresGrad: true }));
  const target = keep(randn([3, 6], { seed: 2 }));
  const trainer = new Trainer<XB>({
    parameters: new Map([["w", w]]),
    loss: (b) => {
      const x = dtype === "bf16" ? cast(b.x, "bf16") : b.x;
      const wd = dtype === "bf16" ? cast(w, "bf16") : w;
      const td = dtype === "bf16" ? cast(target, "bf16") : target;
      const l = cast(mean(square(sub(matmul(x, wd, { transB: true }), matmul(x, td, { transB: true })))), "f32");
      b.x.dispose();
      return l;
    },
    data,
    lr: 0.05,
    dtype,
    ...opts,
  });
  return { w, trainer, cleanup: () => { trainer.dispose(); dispose([w, target]); } };
}

describe("Trainer dtype", () => {
  it("accepts f32 and bf16 only, naming the choices", () => {
    expect(TRAINER_DTYPES).toEqual(["f32", "bf16"]);
    const w = keep(zeros([2], { requiresGrad: true }));
    expect(() => new Trainer<XB>({ parameters: new Map([["w", w]]), loss: () => sum(w), data, lr: 1, dtype: "f16" as "f32" })).toThrow(/Trainer: dtype "f16" is not a compute dtype; use one of f32, bf16/);
    w.dispose();
  });

  it("refuses bf16 trainable parameters: master weights stay f32", () => {
    const p = keep(zeros([2], { dtype: "bf16", requiresGrad: true }));
    expect(() => new Trainer<XB>({ parameters: new Map([["lora_A", p]]), loss: () => sum(p), data, lr: 1, dtype: "bf16" })).toThrow(
      /Trainer: trainable parameters must be f32 \(master weights\), got lora_A \(bf16\); with dtype "bf16" keep the LoRA factors in f32/,
    );
    p.dispose();
  });

  it("a bf16 run trains its f32 master weight, records its dtype, and resumes only under it", async () => {
    const out = join(tmp, "run");
    const a = toy("bf16", { steps: 2, saveEvery: 1, outDir: out });
    const before = a.w.toFloat64Array();
    const r = await a.trainer.fit();
    expect(a.w.dtype).toBe("f32");
    expect(Array.from(a.w.toFloat64Array())).not.toEqual(Array.from(before));
    expect(Number.isFinite(r.lastLoss)).toBe(true);
    a.cleanup();
    const state = JSON.parse(readFileSync(join(out, "checkpoint-2", "trainer_state.json"), "utf8")) as { computeDType?: string };
    expect(state.computeDType).toBe("bf16");
    const b = toy("f32", { steps: 3, saveEvery: 1, outDir: out, resume: true });
    await expect(b.trainer.fit()).rejects.toThrow(/checkpoint was made with dtype bf16, this run uses f32: pass the same dtype to resume/);
    b.cleanup();
    const c = toy("bf16", { steps: 3, saveEvery: 1, outDir: out, resume: true });
    const rc = await c.trainer.fit();
    expect(rc.resumedFrom).toBe(2);
    expect(rc.steps).toBe(3);
    c.cleanup();
  });
});
