// One configuration of the LoRA fine-tuning step on a LLaMA directory, in its own process so
// that its peak memory is its own. Prints one JSON line with every timed step.
//   node step.mjs <modelDir> <base: f32|rtn4|rtn3|rtn2> <batch> <seq> <steps> [warmup = 2]
import { AdamW, backward, getNumThreads, memory, resetPeakMemory, tensor, tidy } from "@modulora/tensor";
import { attachLoRA, loadLlama, quantizeModel } from "@modulora/llama";
import { rtnQuantizer } from "@modulora/quantizer-rtn";

const [dir, base, bArg, tArg, stepsArg, warmArg] = process.argv.slice(2);
const B = Number(bArg), T = Number(tArg), steps = Number(stepsArg), warmup = Number(warmArg ?? 2);
const { model, config } = loadLlama(dir);
if (base !== "f32") await quantizeModel(model, rtnQuantizer, { bits: Number(base.slice(3)), groupSize: 128, measureError: false });
const adapter = attachLoRA(model, { r: 8, alpha: 16, dropout: 0, seed: 0 });
const opt = new AdamW(adapter.parameters(), { lr: 1e-4 });
// random token ids, as the PyTorch baseline uses
let s = 12345;
const ids = Int32Array.from({ length: B * T }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % config.vocabSize));
const idsT = tensor(ids, [B, T], { dtype: "i32" });
const times = [];
resetPeakMemory();
for (let i = 0; i < warmup + steps; i++) {
  const t0 = performance.now();
  tidy(() => {
    backward(model.loss(idsT, idsT, { training: true, step: i }));
    opt.step();
    opt.zeroGrad();
  });
  times.push((performance.now() - t0) / 1000);
}
const timed = times.slice(warmup).sort((a, b) => a - b);
const h = timed.length >> 1;
const med = timed.length % 2 ? timed[h] : (timed[h - 1] + timed[h]) / 2;
const m = memory();
console.log(JSON.stringify({
  system: "modulora-ts", base: base === "f32" ? "f32" : `${base}-g128`, threads: getNumThreads(), B, T,
  step_s: Number(med.toFixed(4)), tok_s: Math.round((B * T) / med),
  steps_s: times.slice(warmup).map((t) => Number(t.toFixed(4))), warmup_s: times.slice(0, warmup).map((t) => Number(t.toFixed(4))),
  peak_tensor_mb: Number((m.nativePeakBytes / 2 ** 20).toFixed(1)), rss_mb: Number((process.memoryUsage().rss / 2 ** 20).toFixed(1)),
  weights_mb: Number((model.layers.reduce((acc, l) => acc + Object.values(l.linears).reduce((a, lin) => a + lin.storageBytes(), 0), 0) / 2 ** 20).toFixed(2)),
}));
