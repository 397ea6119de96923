// docs/writing-a-quantizer.md followed from scratch: the tutorial's code blocks (fenced with the
// info string `ts file=my-quantizer.ts`) are extracted in order, written to a temporary directory
// inside this package (so that node resolves @modulora/core from the workspace), compiled with
// esbuild's transform, imported, registered, run through core's conformance suite, used to
// quantize tiny-llama and to train a LoRA adapter a few steps. A broken snippet fails here.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { transform } from "esbuild";
import { afterAll, describe, expect, it } from "vitest";
import { dispose, loadSafetensors } from "@modulora/tensor";
import { getQuantizer, registerQuantizer, resolveQuantizerOptions, unregisterQuantizer, type AffineWeight, type QuantizerPlugin } from "@modulora/core";
import { dequantizeAll, quantizerConformance, referenceRoundToNearest, relativeError } from "@modulora/core/testing";
import { loadLlama, quantizeModel, type QuantizedLinear } from "@modulora/llama";
import { fitLoRA, TINY } from "./train.js";

const GUIDE = fileURLToPath(new URL("../../../docs/writing-a-quantizer.md", import.meta.url));
const PACKAGE = fileURLToPath(new URL("../", import.meta.url));

/** The bodies of the fenced blocks whose info string is exactly `ts file=<name>`, in order. */
export function tutorialBlocks(markdown: string, name: string): string[] {
  const blocks: string[] = [];
  const re = /^```([^\n]*)\n([\s\S]*?)^```[ \t]*$/gm;
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) if (m[1]!.trim() === `ts file=${name}`) blocks.push(m[2]!);
  return blocks;
}

// The tutorial, compiled as an author would (TypeScript → ESM JavaScript) and imported.
const blocks = tutorialBlocks(readFileSync(GUIDE, "utf8"), "my-quantizer.ts");
const dir = mkdtempSync(join(PACKAGE, ".guide-tutorial-"));
const removeDir = () => rmSync(dir, { recursive: true, force: true });
afterAll(removeDir);
type Tutorial = { default: QuantizerPlugin; clipRtnQuantizer: QuantizerPlugin };
let tutorial: Tutorial;
try {
  const source = blocks.join("\n");
  writeFileSync(join(dir, "my-quantizer.ts"), source);
  const { code } = await transform(source, { loader: "ts", format: "esm", target: "node20", sourcefile: "my-quantizer.ts" });
  writeFileSync(join(dir, "my-quantizer.js"), code);
  tutorial = (await import(pathToFileURL(join(dir, "my-quantizer.js")).href)) as Tutorial;
} catch (err) {
  removeDir(); // a snippet that does not compile or load fails the file, and leaves nothing behind
  throw err;
}
const plugin = tutorial.default;

// Step 5 of the tutorial: the conformance suite, with the default error ratio of 1 (the clipping
// search wins by far more than the f16 rounding of the scales costs at 2 to 4 bits).
quantizerConformance(plugin, {
  groupSizes: [32, "row"],
  realWeights: { path: join(TINY, "model.safetensors"), names: ["model.layers.1.self_attn.q_proj.weight", "model.layers.2.mlp.down_proj.weight"] },
});


describe("the tutorial of docs/writing-a-quantizer.md", () => {
  it("has its code in blocks marked `ts file=my-quantizer.ts`, which compile into the plugin the guide describes", () => {
    expect(blocks.length).toBe(3);
    expect(plugin).toBe(tutorial.clipRtnQuantizer);
    expect(plugin).toMatchObject({ specVersion: 1, name: "clip-rtn", calibration: "none", supportedBits: [2, 3, 4], defaultGroupSize: 128 });
    expect(plugin.options!.map((o) => [o.name, o.type, o.default])).toEqual([["steps", "int", 10], ["minRatio", "number", 0.6]]);
  });

  it("its options are checked as the guide says: bounds, and the plugin's own check", () => {
    expect(resolveQuantizerOptions(plugin, {})).toEqual({ steps: 10, minRatio: 0.6 });
    expect(() => resolveQuantizerOptions(plugin, { steps: 0 })).toThrow(/steps must be at least 1/);
    expect(() => resolveQuantizerOptions(plugin, { minRatio: 1 })).toThrow(/min-ratio of 1 only tries the min-max range/);
  });

  it("the clipping search beats plain round-to-nearest on a tiny-llama weight", async () => {
    const weights = loadSafetensors(join(TINY, "model.safetensors"), { names: ["model.layers.0.self_attn.v_proj.weight"] });
    const w = weights.get("model.layers.0.self_attn.v_proj.weight")!;
    const v = w.dataSync() as Float32Array;
    const ref = relativeError(referenceRoundToNearest(v, 256, 256, 3, 64), v);
    const q = (await plugin.quantize(w, { bits: 3, groupSize: 64 })) as AffineWeight;
    // measured: 0.906 × RTN's error at 3 bits, group 64
    expect(relativeError(dequantizeAll(q), v) / ref).toBeLessThan(0.95);
    q.dispose();
    dispose([...weights.values()]);
  });

  it("registered, it quantizes tiny-llama (3 bits, group 64) and a LoRA adapter trains on it: the loss falls", async () => {
    registerQuantizer(plugin);
    const { model } = loadLlama(TINY);
    try {
      expect(getQuantizer("clip-rtn")).toBe(plugin);
      const { report } = await quantizeModel(model, "clip-rtn", { bits: 3, groupSize: 64, steps: 8 });
      expect(report).toHaveLength(28);
      // 3-bit codes, an f16 scale and a u8 zero per 64 weights
      for (const r of report) expect(r.bitsPerWeight, r.name).toBeCloseTo(3 + 24 / 64, 12);
      expect((model.layers[0]!.linears.q_proj as QuantizedLinear).weight.format).toBe("affine");
      const losses = await fitLoRA(model, 8);
      expect(losses).toHaveLength(8);
      // measured: 5.05, 4.31, 3.49, 2.85 in the first pass over the 4 batches, 3.09, 2.19, 1.75, 1.30 in the second
      const pass = (k: number) => losses.slice(4 * k, 4 * k + 4).reduce((s, l) => s + l, 0);
      expect(pass(1), losses.join(", ")).toBeLessThan(0.8 * pass(0));
    } finally {
      model.dispose();
      unregisterQuantizer("clip-rtn");
    }
  });
});
