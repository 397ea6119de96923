import { describe, expect, it } from "vitest";
import { tensorFrom } from "@modulora/tensor";
import { LocalGroup } from "../src/index.js";

describe("LocalGroup", () => {
  it("allReduce sums and averages in place on every rank", async () => {
    const ranks = LocalGroup.create(3);
    const ts = ranks.map((c) => [tensorFrom(new Float32Array([c.rank, 10 * c.rank, 1])), tensorFrom(new Float64Array([c.rank + 0.5]))]);
    await Promise.all(ranks.map((c) => c.allReduce(ts[c.rank]!, "sum")));
    for (const [a, b] of ts) {
      expect(a!.toArray()).toEqual([3, 30, 3]);
      expect(b!.toArray()).toEqual([4.5]);
    }
    const fresh = ranks.map((c) => [tensorFrom(new Float32Array([c.rank, 10 * c.rank, 1])), tensorFrom(new Float64Array([c.rank + 0.5]))]);
    await Promise.all(ranks.map((c) => c.allReduce(fresh[c.rank]!, "mean")));
    for (const [a, b] of fresh) {
      expect(a!.toArray()).toEqual([1, 10, 1]);
      expect(b!.toArray()).toEqual([1.5]);
    }
  });

  it("broadcast copies the root's tensors to every rank", async () => {
    const ranks = LocalGroup.create(3);
    const ts = ranks.map((c) => tensorFrom(new Float32Array([c.rank, c.rank * 2])));
    await Promise.all(ranks.map((c) => c.broadcast([ts[c.rank]!], 2)));
    for (const t of ts) expect(t.toArray()).toEqual([2, 4]);
  });

  it("barrier resolves only once every rank arrived", async () => {
    const ranks = LocalGroup.create(2);
    let resolved = false;
    const p0 = ranks[0]!.barrier().then(() => { resolved = true; });
    await new Promise((r) => setTimeout(r, 20));
    expect(resolved).toBe(false);
    await ranks[1]!.barrier();
    await p0;
    expect(resolved).toBe(true);
  });

  it("a rank that never arrives makes the others reject naming it", async () => {
    const ranks = LocalGroup.create(3, { timeoutMs: 100 });
    const t = () => tensorFrom(new Float32Array([1]));
    const calls = [ranks[0]!.allReduce([t()], "sum"), ranks[2]!.allReduce([t()], "sum")];
    for (const c of calls) await expect(c).rejects.toThrow("LocalGroup allReduce(sum) #1: rank 1 did not arrive within 100 ms (arrived: 0, 2)");
  });

  it("mismatched tensor sizes are an error naming the rank", async () => {
    const ranks = LocalGroup.create(2);
    const calls = [ranks[0]!.allReduce([tensorFrom(new Float32Array(2))], "sum"), ranks[1]!.allReduce([tensorFrom(new Float32Array(3))], "sum")];
    for (const c of calls) await expect(c).rejects.toThrow("rank 1 called allReduce(sum) [f32:3] but rank 0 called allReduce(sum) [f32:2]");
  });

  it("refuses non-float tensors and bad arguments", async () => {
    const [c] = LocalGroup.create(1);
    await expect(c!.allReduce([tensorFrom(new Int32Array([1]))], "sum")).rejects.toThrow("is i32; the CPU communicators reduce f32 and f64 tensors only");
    await expect(c!.allReduce([], "max" as "sum")).rejects.toThrow('op must be "sum" or "mean"');
    await expect(c!.broadcast([], 1)).rejects.toThrow("root must be an integer rank in [0, 0]");
    expect(() => LocalGroup.create(0)).toThrow("positive integer");
  });
});
