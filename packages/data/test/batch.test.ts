import { describe, expect, it } from "vitest";
import { BatchSource, batches, collate, Rng, shuffleInPlace, type Batch, type Example } from "../src/index.js";

const PAD = 0;
/** An example of `len` tokens whose first `prompt` labels are masked; ids are 100 + example number. */
function example(n: number, len: number, prompt = 0): Example {
  const inputIds = Array.from({ length: len }, () => 100 + n);
  return { inputIds, labels: inputIds.map((id, t) => (t < prompt ? -100 : id)), promptLength: prompt };
}
/** Examples with pseudo-random lengths in [1, 64]. */
function randomExamples(count: number, seed = 7): Example[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, (_, i) => example(i, 1 + rng.nextInt(64), 1));
}
const summary = (b: Batch) => ({ indices: b.indices, position: b.position, next: b.next, ids: Array.from(b.inputIds) });

describe("collate", () => {
  it("pads to the longest example: pad id in inputIds, −100 in labels, lengths and token counts", () => {
    const exs = [example(0, 3, 1), example(1, 5, 2), example(2, 2)];
    const b = collate(exs, [0, 1, 2], PAD);
    expect([b.batchSize, b.seqLen]).toEqual([3, 5]);
    expect(Array.from(b.inputIds)).toEqual([100, 100, 100, 0, 0, 101, 101, 101, 101, 101, 102, 102, 0, 0, 0]);
    expect(Array.from(b.labels)).toEqual([-100, 100, 100, -100, -100, -100, -100, 101, 101, 101, 102, 102, -100, -100, -100]);
    expect(Array.from(b.lengths)).toEqual([3, 5, 2]);
    expect(b.tokens).toBe(10);
    expect(b.labelTokens).toBe(2 + 3 + 1); // position 0 is never predicted
    expect(() => collate([{ inputIds: [1, 2], labels: [1] }], [0], PAD)).toThrow("example 0 has 2 ids and 1 labels");
  });
});

describe("BatchSource", () => {
  it("without shuffle or grouping, batches are the examples in order; the last one is smaller unless dropLast", () => {
    const exs = [example(0, 3), example(1, 5), example(2, 2), example(3, 4), example(4, 1)];
    const src = new BatchSource(exs, { batchSize: 2, padId: PAD, shuffle: false, byLength: false });
    expect(src.length).toBe(3);
    expect([...src.epoch(0)].map((b) => b.indices)).toEqual([[0, 1], [2, 3], [4]]);
    expect([...src.epoch(0)].map((b) => [b.batchSize, b.seqLen])).toEqual([[2, 5], [2, 4], [1, 1]]);
    const dropped = new BatchSource(exs, { batchSize: 2, padId: PAD, shuffle: false, byLength: false, dropLast: true });
    expect(dropped.length).toBe(2);
    expect([...dropped.epoch(3)].map((b) => b.indices)).toEqual([[0, 1], [2, 3]]);
  });

  it("every example appears exactly once per epoch", () => {
    const exs = randomExamples(203);
    const src = new BatchSource(exs, { batchSize: 8, padId: PAD, seed: 3 });
    for (const epoch of [0, 1]) {
      const seen = [...src.epoch(epoch)].flatMap((b) => b.indices).sort((a, b) => a - b);
      expect(seen).toEqual(exs.map((_, i) => i));
    }
  });

  it("groups by length: each bucket is sorted, so batches hold neighbouring lengths and pad little", () => {
    const exs = randomExamples(400);
    const grouped = new BatchSource(exs, { batchSize: 4, padId: PAD, seed: 1, bucketBatches: 50 });
    const plain = new BatchSource(exs, { batchSize: 4, padId: PAD, seed: 1, byLength: false });
    const padding = (src: BatchSource) => [...src.epoch(0)].reduce((s, b) => s + b.batchSize * b.seqLen - b.tokens, 0);
    expect(padding(grouped)).toBeLessThan(padding(plain) / 4);
    // Buckets of 200 examples: each batch is a run of 4 consecutive lengths of its bucket's sorted order.
    const order = grouped.plan(0);
    const len = (i: number) => exs[i]!.inputIds.length;
    for (const batch of order) {
      const lens = batch.map(len);
      expect(lens).toEqual([...lens].sort((a, b) => b - a));
    }
    // The batch order is shuffled: not all longest-first.
    const firstLens = order.map((b) => len(b[0]!));
    expect(firstLens).not.toEqual([...firstLens].sort((a, b) => b - a));
  });

  it("is deterministic for a seed; seeds and epochs give different orders", () => {
    const exs = randomExamples(100);
    const a = new BatchSource(exs, { batchSize: 4, padId: PAD, seed: 42 });
    const b = new BatchSource(exs, { batchSize: 4, padId: PAD, seed: 42 });
    const c = new BatchSource(exs, { batchSize: 4, padId: PAD, seed: 43 });
    expect(b.plan(0)).toEqual(a.plan(0));
    expect(b.plan(5)).toEqual(a.plan(5));
    expect(c.plan(0)).not.toEqual(a.plan(0));
    expect(a.plan(1)).not.toEqual(a.plan(0));
    expect([...a.epoch(2)].map(summary)).toEqual([...b.epoch(2)].map(summary));
  });

  it("resumes at an exact position: the same subsequent batches", () => {
    const exs = randomExamples(37);
    const opts = { batchSize: 4, padId: PAD, seed: 9 };
    const all = [...batches(exs, { ...opts, epochs: 3 })].map(summary);
    expect(all.length).toBe(30);
    expect(all[0]!.position).toEqual({ epoch: 0, index: 0 });
    expect(all[9]!.next).toEqual({ epoch: 1, index: 0 });
    for (const k of [0, 4, 9, 13, 29]) {
      const resumed = [...batches(exs, { ...opts, epochs: 3, start: all[k]!.next })].map(summary);
      expect(resumed).toEqual(all.slice(k + 1));
    }
    // The trainer's DataSource shape: epoch(e, startIndex).
    const src = new BatchSource(exs, opts);
    expect([...src.epoch(1, 6)].map(summary)).toEqual(all.slice(16, 20));
    expect(src.batch({ epoch: 2, index: 3 }).indices).toEqual(all[23]!.indices);
  });

  it("refuses bad options", () => {
    const exs = [example(0, 2)];
    expect(() => new BatchSource(exs, { batchSize: 0, padId: PAD })).toThrow("batchSize must be an integer ≥ 1");
    expect(() => new BatchSource(exs, { batchSize: 1, padId: -1 })).toThrow("padId must be a non-negative integer");
    expect(() => new BatchSource([], { batchSize: 1, padId: PAD })).toThrow("no examples");
    expect(() => new BatchSource(exs, { batchSize: 2, padId: PAD, dropLast: true })).toThrow("make no full batch");
    expect(() => new BatchSource(exs, { batchSize: 1, padId: PAD }).batch({ epoch: 0, index: 1 })).toThrow("index 1 is outside epoch 0");
  });
});

describe("Rng", () => {
  it("is deterministic per (seed, stream), and streams differ", () => {
    const draw = (seed: number, stream: number) => {
      const r = new Rng(seed, stream);
      return Array.from({ length: 8 }, () => r.nextUint32());
    };
    expect(draw(1, 0)).toEqual(draw(1, 0));
    expect(draw(1, 1)).not.toEqual(draw(1, 0));
    expect(draw(2, 0)).not.toEqual(draw(1, 0));
    expect(draw(2 ** 40, 0)).not.toEqual(draw(0, 0));
    expect(() => new Rng(-1)).toThrow(RangeError);
  });

  it("nextInt is uniform enough and a shuffle is a permutation", () => {
    const r = new Rng(5);
    const counts = new Array(10).fill(0);
    for (let i = 0; i < 20000; i++) counts[r.nextInt(10)]++;
    const chi2 = counts.reduce((s, c) => s + (c - 2000) ** 2 / 2000, 0);
    expect(chi2).toBeLessThan(30); // 9 degrees of freedom: p < 0.001 above 27.9
    const items = Array.from({ length: 50 }, (_, i) => i);
    const shuffled = shuffleInPlace([...items], new Rng(1));
    expect(shuffled).not.toEqual(items);
    expect([...shuffled].sort((a, b) => a - b)).toEqual(items);
  });
});
