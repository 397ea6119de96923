// The scaling benchmark's own plumbing on the CPU (tiny shape, TCP between CPU processes): every
// row is measured, world size 1 through dataParallel trains exactly the reference's losses, and
// the 2-rank run trains the one process × 2-micro-batch losses of the Trainer (not asserted as speed).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const BUNDLE = join(import.meta.dirname, "..", "dist", "scaling.mjs");
const out = mkdtempSync(join(tmpdir(), "modulora-scaling-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("benchmarks/scaling on the CPU", () => {
  it("measures the reference and 1 and 2 data-parallel ranks, and writes summary.json and summary.md", () => {
    expect(existsSync(BUNDLE), "build it first: pnpm --filter ./benchmarks/scaling build").toBe(true);
    const r = spawnSync(process.execPath, [BUNDLE, "--device", "cpu", "--configs", "tiny-4", "--devices", "1,2", "--steps", "3", "--warmup", "1", "--out", out], { encoding: "utf8", timeout: 120_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const s = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));
    expect(s.rows.map((x: { mode: string; world: number }) => `${x.mode}:${x.world}`)).toEqual(["reference:1", "data-parallel:1", "data-parallel:2"]);
    const [ref, one, two] = s.rows;
    for (const row of s.rows) {
      expect(row.error).toBeUndefined();
      expect(row.step_times_s).toHaveLength(3);
      expect(row.losses).toHaveLength(4);
      expect(row.tokens_per_s).toBeCloseTo(row.tokens_per_step / row.step_s, 6);
    }
    expect(two.tokens_per_step).toBe(2 * ref.tokens_per_step);
    // One rank through the data-parallel path computes what one process does.
    expect(one.losses).toEqual(ref.losses);
    // Two ranks: the first step's loss is the mean over two micro-batches, one of them the reference's first.
    expect(two.losses[0]).not.toBe(ref.losses[0]);
    expect(one.efficiency).toBeCloseTo(one.tokens_per_s / ref.tokens_per_s, 9);
    expect(two.efficiency).toBeCloseTo(two.tokens_per_s / (2 * ref.tokens_per_s), 9);
    expect(readFileSync(join(out, "summary.md"), "utf8")).toMatch(/^\| tiny-4 \| data-parallel \| 2 \| tcp \| 128 \|/m);
  });
});
