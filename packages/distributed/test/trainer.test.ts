// The Trainer's data-parallel mode on the CPU, with the in-process LocalGroup as the stand-in
// communicator: W ranks with gradAccum k train exactly as one process with gradAccum W·k (the same
// micro-batches, the same seeded order); rank 0 alone writes; a resume continues as one process
// does; early stopping and interruption are decided together; buckets start during the backward.
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Trainer, type Batch, type DataSource, type TrainerDataParallel, type TrainerOptions } from "@modulora/core";
import { matmul, mean, randn, square, sub, tanh, tensorFrom, tidy, type Tensor } from "@modulora/tensor";
import { dataParallel, LocalGroup } from "../src/index.js";

const IN = 5;
const HID = 4;
const OUT = 3;
const MB = 3; // examples per micro-batch
const BATCHES = 12; // micro-batches per epoch

interface XYBatch extends Batch {
  x: number[];
  y: number[];
}

/** A deterministic source: micro-batch (epoch, i) is a seeded function of both (as BatchSource's shuffled order is). */
function source(): DataSource<XYBatch> {
  const make = (epoch: number, i: number): XYBatch => {
    const x = Array.from({ length: MB * IN }, (_, j) => Math.sin(1.7 * i + 0.31 * j + 5.3 * epoch));
    const y = Array.from({ length: MB * OUT }, (_, j) => Math.cos(0.9 * i - 0.47 * j + epoch));
    return { x, y, tokens: MB };
  };
  return {
    length: BATCHES,
    *epoch(epoch, start) {
      for (let i = start; i < BATCHES; i++) yield make(epoch, i);
    },
  };
}

/** A 2-layer model whose parameters are seeded (every rank builds the same). */
function params(): Map<string, Tensor> {
  return new Map([
    ["w1", randn([IN, HID], { seed: 3, std: 0.5, dtype: "f64" }).requireGrad()],
    ["w2", randn([HID, OUT], { seed: 4, std: 0.5, dtype: "f64" }).requireGrad()],
  ]);
}

function options(p: Map<string, Tensor>, extra: Partial<TrainerOptions<XYBatch>>): TrainerOptions<XYBatch> {
  return {
    parameters: p,
    loss: (b) => tidy(() => {
      const x = tensorFrom(Float64Array.from(b.x), { shape: [MB, IN], dtype: "f64" });
      const y = tensorFrom(Float64Array.from(b.y), { shape: [MB, OUT], dtype: "f64" });
      return mean(square(sub(matmul(tanh(matmul(x, p.get("w1")!)), p.get("w2")!), y)));
    }),
    data: source(),
    steps: 7,
    lr: 0.05,
    weightDecay: 0.01,
    schedule: "cosine",
    warmupSteps: 2,
    seed: 9,
    handleSigint: false,
    ...extra,
  };
}

const values = (p: Map<string, Tensor>) => [...p.values()].map((t) => Array.from(t.toFloat64Array()));

function maxRelDiff(a: number[][], b: number[][]): number {
  let m = 0;
  a.forEach((row, i) => row.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i]![j]!) / Math.max(1e-12, Math.abs(b[i]![j]!))))));
  return m;
}

/** One process, gradAccum `accum`: the reference. */
async function single(accum: number, extra: Partial<TrainerOptions<XYBatch>> = {}) {
  const p = params();
  const t = new Trainer(options(p, { gradAccum: accum, ...extra }));
  const r = await t.fit();
  t.dispose();
  return { r, values: values(p) };
}

/** `world` ranks in this process, gradAccum `accum` each; `perRank` adds options by rank. */
async function parallel(world: number, accum: number, perRank: (rank: number) => Partial<TrainerOptions<XYBatch>> = () => ({}), bucketBytes?: number) {
  const comms = LocalGroup.create(world);
  const dps = comms.map((c) => dataParallel(c, bucketBytes ? { bucketBytes } : {}));
  const ps = comms.map(() => params());
  const trainers = ps.map((p, r) => new Trainer(options(p, { gradAccum: accum, dataParallel: dps[r]! as TrainerDataParallel, ...perRank(r) })));
  const rs = await Promise.all(trainers.map((t) => t.fit()));
  trainers.forEach((t) => t.dispose());
  return { rs, values: ps.map(values), dps };
}

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "modulora-dp-"));
  dirs.push(d);
  return d;
};

describe("Trainer with dataParallel (LocalGroup stand-in)", () => {
  it.each([
    [2, 1],
    [2, 2],
    [3, 1],
  ])("%i ranks × gradAccum %i equal one process with gradAccum W·k (parameters, losses, step count)", async (world, accum) => {
    const ref = await single(world * accum);
    const dp = await parallel(world, accum);
    for (const v of dp.values) {
      expect(v).toEqual(dp.values[0]); // every rank holds the same bits
      // f64 throughout: only the summation order of the micro-batch gradients differs.
      expect(maxRelDiff(v, ref.values)).toBeLessThan(1e-12);
    }
    for (const r of dp.rs) {
      expect(r.steps).toBe(7);
      expect(Math.abs(r.lastLoss - ref.r.lastLoss)).toBeLessThan(1e-12 * ref.r.lastLoss);
      expect(r.tokens).toBe(ref.r.tokens); // every rank counts the whole step's tokens
    }
    // Training moved the parameters (the comparison is not of two untouched inits).
    expect(maxRelDiff(ref.values, values(params()))).toBeGreaterThan(1e-3);
  });

  it("is not the same as one process without accumulation (the check above can fail)", async () => {
    const ref = await single(1);
    const dp = await parallel(2, 1);
    expect(maxRelDiff(dp.values[0]!, ref.values)).toBeGreaterThan(1e-4);
  });

  it("with epochs instead of steps, runs ⌈batches / (W·k)⌉ steps an epoch, as one process with W·k does", async () => {
    const ref = await single(4, { steps: undefined, epochs: 2 });
    const dp = await parallel(2, 2, () => ({ steps: undefined, epochs: 2 }));
    expect(ref.r.steps).toBe(2 * Math.ceil(BATCHES / 4));
    expect(dp.rs.map((r) => r.steps)).toEqual([ref.r.steps, ref.r.steps]);
    expect(maxRelDiff(dp.values[1]!, ref.values)).toBeLessThan(1e-12);
  });

  it("buckets start their all-reduce during the backward (one bucket a parameter here)", async () => {
    const dp = await parallel(2, 1, () => ({}), 8);
    for (const d of dp.dps) {
      expect(d.buckets.map((b) => b.indices)).toEqual([[1], [0]]); // reverse parameter order
      expect(d.reducedBuckets).toBe(2 * 7);
      expect(d.overlappedBuckets).toBe(2 * 7); // both parameters' gradients were final inside the backward
    }
  });

  it("rank 0 alone writes outDir; the other ranks write nothing even when given one", async () => {
    const out0 = join(tmp(), "run");
    const out1 = join(tmp(), "other");
    await parallel(2, 1, (r) => ({ outDir: r === 0 ? out0 : out1, saveEvery: 3 }));
    expect(readdirSync(out0).sort()).toEqual(["checkpoint-6", "checkpoint-7", "metrics.jsonl"]);
    expect(existsSync(out1)).toBe(false);
  });

  it("a resumed run continues as one process does: rank 0 reads the checkpoint and sends parameters, moments and state", async () => {
    const flat = { schedule: "constant" as const, warmupSteps: 0 };
    const ref = await single(2, flat);
    const out = join(tmp(), "run");
    // First 4 steps on 2 ranks, then a resume to 7 on 2 fresh ranks (rank 1 starts from its seeded init).
    await parallel(2, 1, (r) => ({ ...flat, outDir: r === 0 ? out : undefined, steps: 4, saveEvery: 2 }));
    const resumed = await parallel(2, 1, (r) => ({ ...flat, outDir: r === 0 ? out : undefined, resume: r === 0, steps: 7 }));
    expect(resumed.rs.map((r) => r.resumedFrom)).toEqual([4, 4]);
    expect(resumed.values[1]).toEqual(resumed.values[0]);
    expect(maxRelDiff(resumed.values[0]!, ref.values)).toBeLessThan(1e-12);
  });

  it("early stopping is rank 0's decision, taken by every rank at the same step", async () => {
    // Rank 0's evaluation never improves after the first; rank 1's always does: both stop with rank 0.
    let calls = [0, 0];
    const dp = await parallel(2, 1, (r) => ({
      evaluate: () => ({ loss: r === 0 ? (calls[0]++ === 0 ? 1 : 2) : 10 - calls[1]++ }),
      evalEvery: 1,
      earlyStoppingPatience: 2,
    }));
    expect(dp.rs.map((r) => [r.stoppedBy, r.steps])).toEqual([["early-stopping", 3], ["early-stopping", 3]]);
    calls = [0, 0];
  });

  it("a rank that never arrives makes the others fail with an error naming it", async () => {
    const comms = LocalGroup.create(2, { timeoutMs: 300 });
    const p = params();
    const t = new Trainer(options(p, { dataParallel: dataParallel(comms[0]!) as TrainerDataParallel }));
    await expect(t.fit()).rejects.toThrow(/rank 1/);
    t.dispose();
  });
});
