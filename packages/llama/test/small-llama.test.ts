// Golden test of the whole load path and forward on small-llama (GQA, 5 bf16 shards, SentencePiece
// tokenizer) against the Hugging Face `transformers` outputs it carries (reference.safetensors: 3
// windows of 48 tokens; reference.json: the loss). The references were computed at about TF32
// precision, so they are compared by relative L2 (≤ 1e-3), as fixtures/README.md prescribes; an
// independent f32 PyTorch forward measured 2e-4 on the logits and 2e-5 on the loss.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as T from "@modulora/tensor";
import { loadLlama, type LlamaModel } from "../src/model.js";
import { REPO_ROOT, relL2, smallLlamaDir, smallLlamaPath } from "./fixtures.js";


describe("the small-llama path", () => {
  it("comes from MODULORA_SMALL_LLAMA (relative to the repository root) or defaults to ../shared/fixtures/small-llama", () => {
    expect(smallLlamaPath({})).toBe(join(REPO_ROOT, "../shared/fixtures/small-llama"));
    expect(smallLlamaPath({ MODULORA_SMALL_LLAMA: "/x/y" })).toBe("/x/y");
    expect(smallLlamaPath({ MODULORA_SMALL_LLAMA: "fixtures/tiny-llama" })).toBe(join(REPO_ROOT, "fixtures/tiny-llama"));
  });
  it("a missing directory is an error that says what to set", () => {
    expect(() => smallLlamaDir({ MODULORA_SMALL_LLAMA: "/nonexistent/small-llama" })).toThrow(
      "small-llama fixture not found at /nonexistent/small-llama (MODULORA_SMALL_LLAMA=/nonexistent/small-llama) — set MODULORA_SMALL_LLAMA",
    );
  });
});

describe("small-llama forward vs transformers (reference.safetensors, 3 × 48 tokens)", () => {
  // Loaded by the first test that needs it (not in beforeAll: vitest reports the tests of a failed
  // hook as skipped, and a missing fixture must fail them).
  let loaded: { model: LlamaModel; ref: Map<string, T.Tensor>; refLoss: number } | undefined;
  const fixture = () => {
    if (!loaded) {
      const dir = smallLlamaDir();
      const ref = T.loadSafetensors(join(dir, "reference.safetensors"));
      const refLoss = (JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as { reference_loss: number }).reference_loss;
      loaded = { model: loadLlama(dir).model, ref, refLoss };
    }
    return loaded;
  };
  afterAll(() => {
    loaded?.model.dispose();
    if (loaded) T.dispose(loaded.ref);
  });

  it("logits, the output of block 0 and the last hidden state: relative L2 ≤ 1e-3", () => {
    const { model, ref } = fixture();
    const ids = ref.get("input_ids")!;
    expect(ids.shape).toEqual([3, 48]);
    const errs = T.noGrad(() =>
      T.tidy(() => {
        const { logits, hiddenStates: hs } = model.forward(ids, { outputHiddenStates: true });
        const hiddenStates = hs!;
        expect(logits.shape).toEqual([3, 48, 8192]);
        const mine: Record<string, T.Tensor> = { logits, hidden_layer1: hiddenStates[1]!, hidden_last: hiddenStates[hiddenStates.length - 1]! };
        return Object.fromEntries(Object.entries(mine).map(([k, t]) => [k, relL2(t.dataSync() as Float32Array, ref.get(k)!.dataSync() as Float32Array)]));
      }),
    );
    console.log(`small-llama relative L2: ${Object.entries(errs).map(([k, e]) => `${k} ${e.toExponential(2)}`).join(", ")}`);
    for (const [k, e] of Object.entries(errs)) expect(e, k).toBeLessThanOrEqual(1e-3);
  });

  it("the loss on the reference windows equals reference_loss within 1e-4", () => {
    const { model, ref, refLoss } = fixture();
    const ids = ref.get("input_ids")!;
    const loss = T.noGrad(() => T.tidy(() => model.loss(ids, ids).item()));
    console.log(`small-llama loss ${loss.toFixed(6)} vs reference ${refLoss.toFixed(6)}`);
    expect(Math.abs(loss - refLoss)).toBeLessThanOrEqual(1e-4);
  });
});
