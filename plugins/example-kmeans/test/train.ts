// What the package's tiny-llama tests share: four small token batches and a short LoRA fit.
import { fileURLToPath } from "node:url";
import { Trainer } from "@modulora/core";
import { attachLoRA, batchLoss, LlamaTokenizer, type LlamaModel, type TokenBatchLike } from "@modulora/llama";

export const TINY = fileURLToPath(new URL("../../../fixtures/tiny-llama/", import.meta.url));

const ids = LlamaTokenizer.fromDir(TINY).encode("The quick brown fox jumps over the lazy dog. Packages are installed with apt. ".repeat(4)).slice(0, 61);
/** Four micro-batches of [2, 16] tokens: windows of one text at different offsets. */
export const BATCHES: TokenBatchLike[] = [0, 1, 2, 3].map((k) => {
  const x = Int32Array.from({ length: 32 }, (_, i) => ids[(i + k * 5) % ids.length]!);
  return { inputIds: x, labels: x, lengths: [16, 16], tokens: 32 };
});

/** `steps` AdamW steps of a LoRA adapter (r 4, no dropout) over {@link BATCHES}; the adapter is detached after. Returns the losses. */
export async function fitLoRA(model: LlamaModel, steps: number): Promise<number[]> {
  const adapter = attachLoRA(model, { r: 4, alpha: 8, dropout: 0, seed: 3 });
  const losses: number[] = [];
  const trainer = new Trainer({
    parameters: new Map(adapter.parameters().map((p, i) => [`p${i}`, p] as const)),
    data: { length: BATCHES.length, epoch: (_e, start) => BATCHES.slice(start) },
    steps, lr: 2e-3,
    loss: (b) => batchLoss(model, b as TokenBatchLike, { training: true }),
    onEvent: (e) => void (e.type === "step" && losses.push(e.loss)),
  });
  try {
    await trainer.fit();
  } finally {
    trainer.dispose();
    adapter.detach();
  }
  return losses;
}
