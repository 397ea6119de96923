// The conformance suite every quantizer plugin runs (as a table of cases), modelled on the
// backend-op and quantize-function tests of ggml and PEFT's case tables.
import { existsSync } from "node:fs";
import { describe, expect, it } from "./vitest.js";
import {
  AdamW, assign, backward, cast, noGrad, dispose, keep, memory, mean, randn, resetPeakMemory, square, sub, tensor, tidy, type Tensor,
} from "@modulora/tensor";
import { gradcheck, maxAbsDiff } from "@modulora/tensor/testing";
import { ModuLoRALinear } from "../modulora-linear.js";
import { resolvePath } from "../quant-linear.js";
import { formatTraits, predictedStorageBytes } from "../formats/traits.js";
import { deserializeQuantizedWeight, serializeQuantizedWeight } from "../formats/serialize.js";
import { validateQuantizer } from "../registry.js";
import type { QuantizeOptions, QuantizerPlugin, CalibrationStats } from "../spec.js";
import type { QuantizedWeight } from "../formats/types.js";
import { dequantizeAll, denseLoraReference, hessianError, loadFixtureWeights, referenceRoundToNearest, relativeError } from "./reference.js";

/** What a plugin's conformance run covers. */
export interface ConformanceConfig {
  /** Bit widths to test (default: the plugin's supportedBits). */
  bits?: readonly number[];
  /** Group sizes to test (default: [32, "row"]); each must divide 64 (the smallest weight's `in`), or be "row". */
  groupSizes?: readonly (number | "row")[];
  /**
   * How large the plugin's error may be, per bit width, as a multiple of the error of the plain
   * round-to-nearest reference ({@link referenceRoundToNearest}: same weight, bits and group size);
   * default 1, no larger. The error is measured as the plugin's calibration defines it: under the
   * Hessian of {@link ConformanceConfig.stats} when that gives one (the output error OPTQ
   * minimizes, {@link hessianError}), as ‖Ŵ − W‖/‖W‖ otherwise. Ŵ = 0 fails at every width.
   */
  errorRatio?: Readonly<Record<number, number>>;
  /** Extra options passed to every quantize call. */
  options?: Partial<QuantizeOptions>;
  /**
   * Real weights to quantize: a safetensors file and 2-D f32 tensor names in it. A missing file
   * fails the test (with what to set), it is never skipped.
   */
  realWeights?: { path: string; names: readonly string[] };
  /** Builds calibration statistics for a weight (for plugins that need them). */
  stats?: (weight: Tensor) => CalibrationStats;
}

/**
 * The plugin's error on `w` and the round-to-nearest reference's, both under the Hessian of
 * `cfg.stats` when it gives one (else H = I: ‖Ŵ − W‖/‖W‖).
 */
function errorVsReference(q: QuantizedWeight, w: Tensor, bits: number, groupSize: number | "row", cfg: ConformanceConfig): { err: number; ref: number; metric: string } {
  const [out, inF] = w.shape as [number, number];
  const wv = w.dataSync() as Float32Array;
  const wHat = dequantizeAll(q);
  const rtn = referenceRoundToNearest(wv, out, inF, bits, groupSize);
  const h = cfg.stats?.(w).hessian;
  if (h) {
    const hv = h.dataSync() as Float64Array;
    return { err: hessianError(wHat, wv, hv, out, inF), ref: hessianError(rtn, wv, hv, out, inF), metric: "output error under H" };
  }
  return { err: relativeError(wHat, wv), ref: relativeError(rtn, wv), metric: "‖Ŵ − W‖/‖W‖" };
}

async function quantize(plugin: QuantizerPlugin, w: Tensor, options: QuantizeOptions, cfg: ConformanceConfig): Promise<QuantizedWeight> {
  return await plugin.quantize(w, { ...options, ...cfg.options }, cfg.stats?.(w));
}

/** Defines the conformance tests of `plugin` (call it at the top level of a vitest file). */
export function quantizerConformance(plugin: QuantizerPlugin, cfg: ConformanceConfig = {}): void {
  const bitsList = cfg.bits ?? plugin.supportedBits;
  const groups = cfg.groupSizes ?? [32, "row"];
  const ratioOf = (bits: number) => cfg.errorRatio?.[bits] ?? 1;

  describe(`quantizer '${plugin.name}': conformance (spec v1)`, () => {
    it("implements the plugin spec", () => {
      expect(() => validateQuantizer(plugin)).not.toThrow();
    });

    const cases = bitsList.flatMap((bits) => groups.map((groupSize) => ({ bits, groupSize })));
    for (const { bits, groupSize } of cases) {
      describe(`${bits} bits, group ${groupSize}`, () => {
        it(`round-trip error on N(0,1) weights is at most ${ratioOf(bits)}× round-to-nearest's on the same weight`, async () => {
          const w = randn([64, 256], { seed: 11 + bits });
          const q = await quantize(plugin, w, { bits, groupSize }, cfg);
          try {
            expect(q.outFeatures).toBe(64);
            expect(q.inFeatures).toBe(256);
            const { err, ref, metric } = errorVsReference(q, w, bits, groupSize, cfg);
            expect(err, `${metric}: ${err} vs round-to-nearest's ${ref}`).toBeLessThanOrEqual(ratioOf(bits) * ref);
            expect(err).toBeGreaterThan(0);
          } finally {
            q.dispose();
            w.dispose();
          }
        });

        it("reported bits per weight match the bytes actually held", async () => {
          const w = randn([48, 128], { seed: 3 });
          const before = memory().bytes;
          const q = await quantize(plugin, w, { bits, groupSize }, cfg);
          try {
            const held = memory().bytes - before;
            expect(q.storageBytes()).toBe(held);
            expect(q.bitsPerWeight()).toBeCloseTo((held * 8) / (48 * 128), 10);
            if (q.format !== "custom") expect(predictedStorageBytes(q)).toBe(q.storageBytes());
            expect(q.bitsPerWeight()).toBeGreaterThanOrEqual(bits);
          } finally {
            q.dispose();
            w.dispose();
          }
        });

        it("fused path equals generic path, forward and input gradient", async () => {
          const w = randn([40, 128], { seed: 5 });
          const q = await quantize(plugin, w, { bits, groupSize }, cfg);
          try {
            const paths: ("fused" | "generic")[] = resolvePath(q, "auto") === "fused" ? ["fused", "generic"] : ["generic"];
            if (formatTraits(q).fused) expect(paths, `the ${q.format} format should have a fused kernel`).toContain("fused");
            const results = paths.map((path) => {
              const layer = new ModuLoRALinear(q, { r: 4, alpha: 8, seed: 1, path, rowBlock: 7 });
              try {
                return tidy(() => {
                  const x = randn([2, 5, 128], { seed: 9, requiresGrad: true });
                  // non-zero B so that the LoRA branch matters too
                  tidy(() => noGrad(() => assign(layer.loraB, randn([40, 4], { seed: 2, std: 0.1 }))));
                  const y = layer.forward(x);
                  backward(mean(square(y)));
                  const out = { y: y.toArray(), dx: x.grad!.toArray(), da: layer.loraA.grad!.toArray(), db: layer.loraB.grad!.toArray() };
                  x.dispose();
                  return out;
                });
              } finally {
                layer.dispose();
              }
            });
            if (results.length === 2) {
              const [f, g] = results as [typeof results[0], typeof results[0]];
              const scaleOf = (a: number[]) => Math.max(1e-6, ...a.map(Math.abs));
              for (const k of ["y", "dx", "da", "db"] as const) expect(maxAbsDiff(f[k], g[k]) / scaleOf(g[k])).toBeLessThan(1e-5);
            }
          } finally {
            q.dispose();
            w.dispose();
          }
        });

        it("serialize → deserialize reproduces the weight", async () => {
          const w = randn([24, 64], { seed: 6 });
          const q = await quantize(plugin, w, { bits, groupSize }, cfg);
          try {
            const s = serializeQuantizedWeight(q, plugin);
            // copy the tensors, as a checkpoint round trip would
            const copies: Record<string, Tensor> = {};
            for (const [k, t] of Object.entries(s.tensors)) copies[k] = keep(tensor(t.dataSync(), t.shape, { dtype: t.dtype }));
            const meta = JSON.parse(JSON.stringify(s.metadata)) as Record<string, unknown>;
            const back = deserializeQuantizedWeight(copies, meta, plugin);
            try {
              expect(back.format).toBe(q.format);
              expect(Array.from(dequantizeAll(back))).toEqual(Array.from(dequantizeAll(q)));
              expect(back.bitsPerWeight()).toBe(q.bitsPerWeight());
            } finally {
              back.dispose();
            }
          } finally {
            q.dispose();
            w.dispose();
          }
        });
      });
    }

    it("ModuLoRALinear passes a finite-difference gradcheck in f64 (generic path) and matches a dense f64 reference", async () => {
      const bits = bitsList[bitsList.length - 1]!;
      const w = randn([6, 64], { seed: 21 });
      const q = await quantize(plugin, w, { bits, groupSize: groups[0]! }, cfg);
      const layer = new ModuLoRALinear(q, { r: 3, alpha: 6, seed: 4, path: "generic", rowBlock: 4 });
      try {
        const wHat = tensor(dequantizeAll(q), [6, 64], { dtype: "f32" });
        const wHat64 = cast(wHat, "f64");
        const a = tidy(() => cast(layer.loraA.detach(), "f64")).requireGrad(); // (the detached handle goes with the tidy)
        const b = randn([6, 3], { seed: 8, dtype: "f64", requiresGrad: true });
        const x = randn([3, 64], { seed: 7, dtype: "f64", requiresGrad: true });
        // The layer's own math, through the quantized op, in f64:
        const viaLayer = (xx: Tensor, aa: Tensor, bb: Tensor) => {
          const l = Object.create(layer) as ModuLoRALinear;
          Object.defineProperty(l, "loraA", { value: aa });
          Object.defineProperty(l, "loraB", { value: bb });
          return l.forward(xx);
        };
        gradcheck(viaLayer, [x, a, b], { atol: 1e-6, rtol: 1e-5 });
        const ours = tidy(() => viaLayer(x, a, b).toArray());
        const ref = tidy(() => denseLoraReference(x, wHat64, a, b, layer.scaling).toArray());
        expect(maxAbsDiff(ours, ref)).toBeLessThan(1e-10);
        dispose([wHat, wHat64, a, b, x]);
      } finally {
        layer.dispose();
        q.dispose();
        w.dispose();
      }
    });

    it("training through ModuLoRALinear never holds a dense Ŵ: the tape keeps the input and the packed weight only", async () => {
      const bits = bitsList[0]!;
      const [out, inF] = [1024, 512];
      const dense = out * inF * 4; // what an f32 Ŵ would take
      const w = randn([out, inF], { seed: 30 });
      const q = await quantize(plugin, w, { bits, groupSize: groups[0]! }, cfg);
      w.dispose();
      const layer = new ModuLoRALinear(q, { r: 4, alpha: 8, seed: 1 });
      try {
        tidy(() => {
          const x = randn([4, inF], { seed: 31, requiresGrad: true });
          tidy(() => backward(mean(layer.forward(x)))); // warm-up: kernels' per-thread scratch
          resetPeakMemory();
          const before = memory();
          const y = tidy(() => layer.forward(x));
          const heldAfterForward = memory().bytes - before.bytes;
          // y [4, out] plus the LoRA branch's small saved tensors: nothing of size out × in
          expect(heldAfterForward).toBeLessThan(dense / 16);
          backward(mean(y));
          const peak = memory().nativePeakBytes - before.nativeBytes;
          expect(peak).toBeLessThan(dense / 2);
        });
      } finally {
        layer.dispose();
        q.dispose();
      }
    });

    describe("bad options are rejected with clear errors", () => {
      const bad: [string, () => [Tensor, QuantizeOptions], RegExp][] = [
        ["bits 5", () => [randn([4, 32], { seed: 1 }), { bits: 5, groupSize: 32 }], /bits/],
        ["a group size that does not divide in", () => [randn([4, 32], { seed: 1 }), { bits: bitsList[0]!, groupSize: 24 }], /group size/],
        ["NaN weights", () => [tensor(Float32Array.from({ length: 64 }, (_, i) => (i === 9 ? NaN : 0.5)), [2, 32]), { bits: bitsList[0]!, groupSize: 32 }], /NaN|non-finite|finite/],
        ["Inf weights", () => [tensor(Float32Array.from({ length: 64 }, (_, i) => (i === 3 ? Infinity : 0.5)), [2, 32]), { bits: bitsList[0]!, groupSize: 32 }], /Infinity|non-finite|finite/],
        ["a 1-D weight", () => [randn([32], { seed: 1 }), { bits: bitsList[0]!, groupSize: 32 }], /2-D|shape/],
        ["an f64 weight", () => [randn([4, 32], { seed: 1, dtype: "f64" }), { bits: bitsList[0]!, groupSize: 32 }], /f32/],
      ];
      for (const [what, make, pattern] of bad) {
        it(what, async () => {
          const [w, opts] = make();
          try {
            await expect(Promise.resolve().then(() => plugin.quantize(w, opts, cfg.stats?.(w)))).rejects.toThrow(pattern);
          } finally {
            w.dispose();
          }
        });
      }
    });

    if (cfg.realWeights) {
      const { path, names } = cfg.realWeights;
      it(`real weights (${names.length} layers): error falls as bits grow, at most round-to-nearest's times the ratio`, async () => {
        if (!existsSync(path)) {
          throw new Error(`conformance: realWeights.path ${path} does not exist — set realWeights.path to a safetensors file holding ${names.join(", ")}, or leave realWeights out`);
        }
        const weights = loadFixtureWeights(path, names);
        try {
          const sorted = [...bitsList].sort((x, y) => x - y);
          for (const [name, wt] of weights) {
            const errs: number[] = [];
            for (const bits of sorted) {
              const q = await quantize(plugin, wt, { bits, groupSize: "row" }, cfg);
              const { err, ref, metric } = errorVsReference(q, wt, bits, "row", cfg);
              q.dispose();
              expect(err, `${name}, ${bits} bits: ${metric} ${err} vs round-to-nearest's ${ref}`).toBeLessThanOrEqual(ratioOf(bits) * ref);
              errs.push(err);
            }
            for (let i = 1; i < errs.length; i++) expect(errs[i]!, `${name}: ${sorted[i]} bits vs ${sorted[i - 1]}`).toBeLessThan(errs[i - 1]!);
          }
        } finally {
          dispose([...weights.values()]);
        }
      });
    }

    it("a short LoRA fit through the plugin's weights reduces the loss", async () => {
      const bits = bitsList[0]!;
      const w = randn([16, 64], { seed: 40 });
      const q = await quantize(plugin, w, { bits, groupSize: groups[0]! }, cfg);
      const layer = new ModuLoRALinear(q, { r: 4, alpha: 4, seed: 2 });
      const target = randn([16, 64], { seed: 41, std: 0.3 });
      const opt = new AdamW(layer.parameters(), { lr: 0.02 });
      try {
        const x = randn([64, 64], { seed: 42 });
        const yT = x.matmul(target, { transB: true });
        const loss = () => tidy(() => mean(square(sub(layer.forward(x), yT))).item());
        const first = loss();
        for (let i = 0; i < 60; i++) {
          tidy(() => {
            backward(mean(square(sub(layer.forward(x), yT))));
            opt.step();
            opt.zeroGrad();
          });
        }
        expect(loss()).toBeLessThan(first * 0.9);
        dispose([x, yT]);
      } finally {
        opt.dispose();
        layer.dispose();
        target.dispose();
        q.dispose();
        w.dispose();
      }
    });
  });
}
