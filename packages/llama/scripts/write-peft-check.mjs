// Regenerates the inputs of scripts/peft_check.py: trains a small adapter on fixtures/tiny-llama
// (30 AdamW steps, lr 3e-3, on the 3 windows of its reference.safetensors) and writes it to
// scripts/results/trained-adapter with our logits of 2 × 16 tokens in
// scripts/results/trained-adapter-logits.safetensors. adapter.test.ts checks the committed files.
//   pnpm --filter @modulora/llama build && node packages/llama/scripts/write-peft-check.mjs
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as T from "@modulora/tensor";
import { attachLoRA, loadLlama, saveAdapter, shiftLabels } from "../dist/index.js";

const FIX = fileURLToPath(new URL("../../../fixtures/", import.meta.url));
const RESULTS = fileURLToPath(new URL("./results/", import.meta.url));
const { model } = loadLlama(`${FIX}tiny-llama/`);
const ref = T.loadSafetensors(`${FIX}tiny-llama-lora/reference.safetensors`);
const ids = T.keep(ref.get("input_ids"));
const adapter = attachLoRA(model, { r: 8, alpha: 16, dropout: 0.05, seed: 42 });
const targets = T.keep(shiftLabels(ids));
const opt = new T.AdamW(adapter.parameters(), { lr: 3e-3 });
for (let step = 0; step < 30; step++) {
  T.tidy(() => T.backward(T.crossEntropy(model.forward(ids, { training: true, step }).logits, targets, { ignoreIndex: -100 })));
  opt.step();
  opt.zeroGrad();
}
opt.dispose();
mkdirSync(RESULTS, { recursive: true });
saveAdapter(adapter, `${RESULTS}trained-adapter`, {
  baseModelNameOrPath: "fixtures/tiny-llama", overwrite: true,
  extra: { taskFormat: "lm", note: "30 AdamW steps (lr 3e-3) on the 3 windows of fixtures/tiny-llama/reference.safetensors" },
});
T.tidy(() => {
  const x = T.contiguous(T.slice(ids, [0, 0], [2, 16]));
  T.saveSafetensors(`${RESULTS}trained-adapter-logits.safetensors`, new Map([["input_ids", x], ["logits", model.forward(x).logits]]), { format: "pt", note: "modulora-ts logits of tiny-llama + trained-adapter" });
});
adapter.detach();
T.dispose([targets, ids, ...ref.values()]);
model.dispose();
console.log(`wrote ${RESULTS}trained-adapter and trained-adapter-logits.safetensors`);
