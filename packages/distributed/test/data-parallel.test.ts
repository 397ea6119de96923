// The data-parallel equivalence on the CPU: a tiny linear model trained K steps by 2 ranks
// (LocalGroup, each on its shard of every global batch, gradients averaged) equals 1 rank with
// the same global batch through gradient accumulation over the same shards.
import { describe, expect, it } from "vitest";
import { AdamW, backward, matmul, mean, mul, randn, square, sub, tensorFrom, tidy, type Tensor } from "@modulora/tensor";
import { GradientBucketer, LocalGroup, shardBatch, shardIndices, type Communicator } from "../src/index.js";

const IN = 6;
const OUT = 3;
const N = 48; // examples
const B = 8; // global batch
const K = 6; // steps

// The dataset: x [N, IN], y = x·W* + noise [N, OUT].
const X = Array.from({ length: N }, (_, i) => Array.from({ length: IN }, (_, j) => Math.sin(i * 1.3 + j * 0.7)));
const Y = X.map((x, i) => Array.from({ length: OUT }, (_, k) => x.reduce((s, v, j) => s + v * Math.cos(j + 2 * k), 0) + 0.05 * Math.sin(7 * i + k)));

// The same seeded order on every rank, as one process would walk it.
function order(seed: number): number[] {
  const idx = [...Array(N).keys()];
  let s = seed;
  for (let i = N - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx;
}

function initParams(): Tensor[] {
  return [randn([IN, OUT], { seed: 11, std: 0.3 }).requireGrad(), randn([1, OUT], { seed: 12, std: 0.1 }).requireGrad()];
}

/** Mean squared error of the model on `examples`, its gradient accumulated into the params' .grad, scaled by `weight`. */
function lossBackward(params: Tensor[], examples: number[], weight: number): number {
  return tidy(() => {
    const x = tensorFrom(examples.flatMap((i) => X[i]!), { shape: [examples.length, IN] });
    const y = tensorFrom(examples.flatMap((i) => Y[i]!), { shape: [examples.length, OUT] });
    const pred = matmul(x, params[0]!).add(params[1]!);
    const loss = mean(square(sub(pred, y)));
    const scaled = weight === 1 ? loss : mul(loss, weight);
    backward(scaled);
    return loss.item();
  });
}

async function trainDataParallel(comm: Communicator): Promise<number[][]> {
  const params = initParams();
  const opt = new AdamW(params, { lr: 0.05, weightDecay: 0.01 });
  const perm = order(7);
  let bucketer: GradientBucketer | null = null;
  for (let step = 0; step < K; step++) {
    const global = perm.slice((step * B) % N, (step * B) % N + B);
    lossBackward(params, shardBatch(global, comm.rank, comm.worldSize), 1);
    const grads = params.map((p) => p.grad!);
    bucketer ??= new GradientBucketer(grads, { bucketBytes: 16 }); // several buckets for these 21 numbers
    await bucketer.average(comm, grads);
    opt.step();
    opt.zeroGrad();
  }
  opt.dispose();
  return params.map((p) => p.toArray());
}

function trainAccumulated(microBatches: number): number[][] {
  const params = initParams();
  const opt = new AdamW(params, { lr: 0.05, weightDecay: 0.01 });
  const perm = order(7);
  for (let step = 0; step < K; step++) {
    const global = perm.slice((step * B) % N, (step * B) % N + B);
    for (let m = 0; m < microBatches; m++) lossBackward(params, shardBatch(global, m, microBatches), 1 / microBatches);
    opt.step();
    opt.zeroGrad();
  }
  opt.dispose();
  return params.map((p) => p.toArray());
}

describe("data parallel on the CPU", () => {
  it(`2 ranks × ${B / 2} examples for ${K} steps equal 1 rank accumulating 2 micro-batches of the global batch of ${B}`, async () => {
    const ranks = LocalGroup.create(2);
    const [r0, r1] = await Promise.all(ranks.map((c) => trainDataParallel(c)));
    const single = trainAccumulated(2);
    const start = initParams().map((p) => p.toArray());
    // The replicas stay identical bit for bit: every rank applies the same averaged gradient.
    expect(r1).toEqual(r0);
    let maxDiff = 0;
    let moved = 0;
    r0!.forEach((p, i) => p.forEach((v, k) => {
      maxDiff = Math.max(maxDiff, Math.abs(v - single[i]![k]!));
      moved = Math.max(moved, Math.abs(v - start[i]![k]!));
    }));
    console.log(`max |2 ranks - 1 rank accumulated| = ${maxDiff.toExponential(2)}; parameters moved up to ${moved.toFixed(3)}`);
    expect(moved).toBeGreaterThan(0.1); // the training did something
    expect(maxDiff).toBeLessThan(1e-5); // f32 roundoff (summation order of the two half-batch means)
    // The control: a rank that skips the averaging (trains on its own shard only) ends far away.
    const noAverage: Communicator = { rank: 0, worldSize: 2, allReduce: async () => {}, broadcast: async () => {}, barrier: async () => {}, close: async () => {} };
    const alone = await trainDataParallel(noAverage);
    const far = Math.max(...alone.flatMap((p, i) => p.map((v, k) => Math.abs(v - single[i]![k]!))));
    console.log(`without averaging: max |diff| = ${far.toExponential(2)}`);
    expect(far).toBeGreaterThan(1e-3);
  });
});

describe("shardIndices / shardBatch", () => {
  it("cut a global batch into contiguous equal shares in rank order", () => {
    expect([0, 1, 2].map((r) => shardIndices(12, r, 3))).toEqual([{ start: 0, end: 4 }, { start: 4, end: 8 }, { start: 8, end: 12 }]);
    const batch = ["a", "b", "c", "d", "e", "f"];
    expect([0, 1].map((r) => shardBatch(batch, r, 2))).toEqual([["a", "b", "c"], ["d", "e", "f"]]);
    expect([0, 1].flatMap((r) => shardBatch(batch, r, 2))).toEqual(batch);
  });

  it("refuse a global batch not divisible by the world size", () => {
    expect(() => shardIndices(10, 0, 4)).toThrow("a global batch of 10 examples does not split evenly over 4 ranks; use a global batch size that is a multiple of 4 (e.g. 8)");
    expect(() => shardIndices(8, 4, 4)).toThrow("rank must be an integer in [0, 3]");
    expect(() => shardIndices(8, 0, 0)).toThrow("worldSize must be a positive integer");
  });
});
