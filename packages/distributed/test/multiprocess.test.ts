// Real processes: spawnLocalRanks + rendezvous + TcpCommunicator (test/fixtures/allreduce-rank.mjs
// imports this package's dist/, built before the tests by `turbo test`).
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { RankFailedError, spawnLocalRanks } from "../src/index.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/allreduce-rank.mjs", import.meta.url));

function collect(): { lines: Map<number, string[]>; onLine: (rank: number, stream: string, line: string) => void } {
  const lines = new Map<number, string[]>();
  return { lines, onLine: (rank, stream, line) => { lines.set(rank, [...(lines.get(rank) ?? []), `${stream}: ${line}`]); } };
}

async function failure(p: Promise<unknown>): Promise<RankFailedError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(RankFailedError);
    return err as RankFailedError;
  }
  throw new Error("expected the launch to fail");
}

describe("spawnLocalRanks + TcpCommunicator", () => {
  it("2 ranks rendezvous, all-reduce known tensors and both print the mean", async () => {
    const { lines, onLine } = collect();
    const exits = await spawnLocalRanks(2, [process.execPath, FIXTURE], { onLine, env: { NCCL_NVLS_ENABLE: undefined } });
    expect(exits).toEqual([{ rank: 0, code: 0, signal: null }, { rank: 1, code: 0, signal: null }]);
    const f32 = (x: number) => Math.fround(x);
    // mean of rank 0 [1, 2, 0] and rank 1 [2, 4, 0.1] in f32: (x0 + x1) / 2, each step rounded to f32.
    const a = [f32(3 / 2), f32(6 / 2), f32(f32(0 + f32(0.1)) / 2)];
    const b = [(0 + 1 / 3) / 2, -0.5];
    for (const rank of [0, 1]) {
      const out = lines.get(rank)!.filter((l) => l.startsWith("stdout: {"));
      expect(out).toHaveLength(1);
      expect(JSON.parse(out[0]!.slice("stdout: ".length))).toEqual({ rank, payload: [7, 1, 2, 250], peers: [0, 1], a, b, c: [1, 1, 1], nvls: "0" });
    }
  });

  it("a rank that exits 1 makes the launcher reject naming it, and the other rank is stopped", async () => {
    const { lines, onLine } = collect();
    const err = await failure(spawnLocalRanks(2, [process.execPath, FIXTURE], { onLine, graceMs: 2_000, env: { MODE: "exit-at-start", FAIL_RANK: "1" } }));
    expect(err.message).toBe("spawnLocalRanks: rank 1 exited with code 1; the other ranks were stopped (rank 0 was killed by SIGTERM)");
    expect(err.rank).toBe(1);
    expect(err.exits).toEqual([{ rank: 0, code: null, signal: "SIGTERM" }, { rank: 1, code: 1, signal: null }]);
    expect(lines.get(1)).toContain("stderr: rank 1: failing on purpose");
  });

  it("a rank dying after the rendezvous makes the others' collective reject naming it", async () => {
    const { lines, onLine } = collect();
    const err = await failure(spawnLocalRanks(3, [process.execPath, FIXTURE], { onLine, env: { MODE: "exit-after-rendezvous", FAIL_RANK: "2" } }));
    expect(err.rank).toBe(2);
    expect(err.exits[2]).toEqual({ rank: 2, code: 3, signal: null });
    // Rank 0 sees the socket close; rank 1 hears it from rank 0 (they ignore SIGTERM in this mode).
    const seen = "TcpCommunicator allReduce(mean) #1 (rank 0): rank 2 closed the connection (it exited, crashed or gave up)";
    for (const rank of [0, 1]) expect(err.exits[rank]).toEqual({ rank, code: 2, signal: null });
    expect(lines.get(0)).toContain(`stderr: rank 0 failed: ${seen}`);
    expect(lines.get(1)).toContain(`stderr: rank 1 failed: TcpCommunicator allReduce(mean) #1 (rank 1): rank 0 gave up: ${seen}`);
  });

  it("refuses bad arguments", async () => {
    await expect(spawnLocalRanks(0, [process.execPath])).rejects.toThrow("positive integer");
    await expect(spawnLocalRanks(1, [])).rejects.toThrow("argv is empty");
  });
});
