// End-to-end example of the engine: fit low-rank factors B [m, r] and A [r, n] so that B·A
// approximates a target matrix W, with autograd and AdamW, and print the loss as it falls.
// The target is an exact rank-r matrix plus a little noise, so the loss should approach the
// noise floor (noise variance), far below the target's own mean square.
import { AdamW, backward, matmul, mean, memory, randn, square, sub, tidy, noGrad, scale, getNumThreads } from "@modulora/tensor";

const m = Number(process.env.DEMO_M ?? 512);
const n = Number(process.env.DEMO_N ?? 384);
const r = Number(process.env.DEMO_RANK ?? 8);
const steps = Number(process.env.DEMO_STEPS ?? 300);
const noiseStd = 0.01;

const target = tidy(() => {
  const u = randn([m, r], { seed: 1 });
  const v = randn([r, n], { seed: 2 });
  const noise = randn([m, n], { seed: 3, std: noiseStd });
  return noGrad(() => scale(matmul(u, v), 1 / Math.sqrt(r))).add(noise);
});
const targetMs = tidy(() => mean(square(target)).item());

// LoRA-style init: A random, B zero, so B·A starts at 0.
const A = randn([r, n], { seed: 4, std: 1 / Math.sqrt(n) }).requireGrad();
const B = randn([m, r], { seed: 5, std: 0 }).requireGrad();
const opt = new AdamW([A, B], { lr: 0.05, weightDecay: 0 });

console.log(`low-rank fit: W [${m}x${n}] ≈ B [${m}x${r}] · A [${r}x${n}], AdamW lr 0.05, ${steps} steps, ${getNumThreads()} threads`);
console.log(`target mean square ${targetMs.toFixed(4)}, noise floor ${(noiseStd ** 2).toExponential(2)}`);
const t0 = performance.now();
let loss = NaN;
const base = memory();
for (let step = 1; step <= steps; step++) {
  loss = tidy(() => {
    const l = mean(square(sub(matmul(B, A), target)));
    backward(l);
    opt.step();
    opt.zeroGrad();
    return l.item();
  });
  if (step === 1 || step % 25 === 0 || step === steps) {
    console.log(`step ${String(step).padStart(4)}  loss ${loss.toExponential(4)}`);
  }
}
const secs = (performance.now() - t0) / 1000;
const after = memory();
console.log(`done in ${secs.toFixed(2)} s (${(steps / secs).toFixed(1)} steps/s); relative error ${Math.sqrt(loss / targetMs).toExponential(3)}`);
console.log(`memory: ${after.tensors} tensors alive (${base.tensors} before the loop), peak ${(after.peakBytes / 1e6).toFixed(1)} MB`);
opt.dispose();
for (const t of [A, B, target]) t.dispose();
if (!(loss < targetMs * 0.01)) {
  console.error(`the loss did not fall enough: ${loss} vs target mean square ${targetMs}`);
  process.exit(1);
}
