// Two LoRA fine-tuning steps on a Hugging Face model directory through the public API only:
// RTN 4-bit base, adapters on all seven linears, AdamW. Prints one JSON line: the base model's
// loss on the batch before the adapters exist, and the loss of each step (the first equals the
// base loss: LoRA's B starts at zero).
import { AdamW, backward, noGrad, tidy } from "@modulora/tensor";
import { attachLoRA, batchLoss, loadLlama, quantizeModel } from "@modulora/llama";
import { rtnQuantizer } from "@modulora/quantizer-rtn";

const dir = process.argv[2];
if (!dir) throw new Error("usage: node finetune-step.mjs MODEL_DIR");
const { model, tokenizer } = loadLlama(dir);
const quantized = await quantizeModel(model, rtnQuantizer, { bits: 4, groupSize: 64 });
const ids = Int32Array.from(tokenizer.encode("Once upon a time there was a little robot who wanted to learn to paint."));
const batch = { inputIds: ids, labels: ids, lengths: [ids.length], tokens: ids.length };
const baseLoss = noGrad(() => tidy(() => batchLoss(model, batch, { training: false }).item()));
const adapter = attachLoRA(model, { r: 8, alpha: 16, seed: 0 });
const opt = new AdamW(adapter.parameters(), { lr: 1e-2, weightDecay: 0 });
const losses = [];
for (let step = 0; step < 2; step++) {
  losses.push(tidy(() => {
    const loss = batchLoss(model, batch, { step, training: false });
    backward(loss);
    opt.step();
    opt.zeroGrad();
    return loss.item();
  }));
}
console.log(JSON.stringify({ bitsPerWeight: quantized.bitsPerWeight, factors: adapter.parameters().length, tokens: ids.length, baseLoss, losses }));
