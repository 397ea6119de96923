// Type-checked (never run) by the consumer test: the public API as a user's TypeScript sees it.
import { ModuLoRALinear, Trainer, registerQuantizer, type QuantizerPlugin, type QuantizedWeight } from "@modulora/core";
import type { ConformanceConfig } from "@modulora/core/testing";
import { BatchSource, loadDataset, padIdOf, rougeScores, type Batch } from "@modulora/data";
import { LlamaTokenizer, attachLoRA, batchLoss, loadLlama, quantizeModel, type QuantizeModelResult } from "@modulora/llama";
import { hqqQuantizer } from "@modulora/quantizer-hqq";
import { nf4Quantizer } from "@modulora/quantizer-nf4";
import { optqQuantizer } from "@modulora/quantizer-optq";
import { quantizeRtn, rtnQuantizer } from "@modulora/quantizer-rtn";
import { AdamW, backward, randn, tidy, type Tensor } from "@modulora/tensor";

export const plugins: readonly QuantizerPlugin[] = [rtnQuantizer, optqQuantizer, nf4Quantizer, hqqQuantizer];
for (const p of plugins) registerQuantizer(p);

export const conformance: ConformanceConfig = { bits: [4], groupSizes: [32] };

export function layer(): { q: QuantizedWeight; y: Tensor } {
  const q = quantizeRtn(randn([64, 128], { seed: 0 }), { bits: 3, groupSize: 64 });
  const lora = new ModuLoRALinear(q, { r: 4, alpha: 8 });
  return { q, y: lora.forward(randn([2, 128], { seed: 1 })) };
}

export async function fineTune(dir: string, data: string): Promise<{ result: QuantizeModelResult; losses: number[] }> {
  const { model, tokenizer } = loadLlama(dir);
  const tok: LlamaTokenizer = tokenizer;
  const result = await quantizeModel(model, rtnQuantizer, { bits: 4, groupSize: 64 });
  const adapter = attachLoRA(model, { r: 8, alpha: 16 });
  const train = loadDataset(data, { format: "classification", tokenizer: tok, seqLen: 64 });
  const source = new BatchSource(train.examples, { batchSize: 4, padId: padIdOf(tok) });
  const opt = new AdamW(adapter.parameters(), { lr: 1e-3 });
  const losses: number[] = [];
  for (const b of source.epoch(0, 0)) {
    const batch: Batch = b;
    losses.push(tidy(() => { const l = batchLoss(model, batch, { step: losses.length }); backward(l); opt.step(); opt.zeroGrad(); return l.item(); }));
    if (losses.length === 2) break;
  }
  const trainer = new Trainer({ parameters: new Map(adapter.parameters().map((p, i) => [`p${i}`, p])), loss: (x: Batch) => batchLoss(model, x), data: source, steps: 1, lr: 1e-3 });
  await trainer.fit();
  return { result, losses };
}

export const f1: number = rougeScores("a b c", "a b d").rouge1;
