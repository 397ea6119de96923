// The rendezvous and TcpCommunicator in one process (several ranks on 127.0.0.1).
import { describe, expect, it } from "vitest";
import { tensorFrom } from "@modulora/tensor";
import { LocalGroup, TcpCommunicator, findFreePort, rendezvous } from "../src/index.js";

async function connectAll(n: number, timeoutMs = 5_000): Promise<TcpCommunicator[]> {
  const masterPort = await findFreePort();
  return Promise.all([...Array(n).keys()].map((rank) => TcpCommunicator.connect({ rank, worldSize: n, masterAddr: "127.0.0.1", masterPort, timeoutMs, payload: new Uint8Array([rank + 40]) })));
}

function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 43758.5453 % 1);
}

describe("rendezvous", () => {
  it("gives every rank rank 0's payload and the list of ranks", async () => {
    const comms = await connectAll(3);
    for (const c of comms) {
      expect([...c.rendezvous.payload]).toEqual([40]);
      expect(c.rendezvous.peers.map((p) => [p.rank, p.pid])).toEqual([[0, process.pid], [1, process.pid], [2, process.pid]]);
    }
    await Promise.all(comms.map((c) => c.close()));
  });

  it("a rank missing at the timeout makes every arrived rank reject naming it", async () => {
    const masterPort = await findFreePort();
    const opts = { worldSize: 4, masterAddr: "127.0.0.1", masterPort, timeoutMs: 300 };
    const results = await Promise.allSettled([0, 1, 3].map((rank) => rendezvous({ ...opts, rank })));
    const want = `rendezvous on port ${masterPort} (rank 0): rank 2 did not arrive within 300 ms (arrived: 0, 1, 3)`;
    for (const r of results) {
      expect(r.status).toBe("rejected");
      expect((r as PromiseRejectedResult).reason.message).toContain(want);
    }
  });

  it("a rank started with another world size is refused", async () => {
    const masterPort = await findFreePort();
    const opts = { masterAddr: "127.0.0.1", masterPort, timeoutMs: 400 };
    const results = await Promise.allSettled([rendezvous({ ...opts, rank: 0, worldSize: 2 }), rendezvous({ ...opts, rank: 1, worldSize: 3 })]);
    expect((results[1] as PromiseRejectedResult).reason.message).toMatch(/a process from .* was started with world size 3, rank 0 with 2/);
    expect((results[0] as PromiseRejectedResult).reason.message).toContain("rank 1 did not arrive within 400 ms");
  });

  it("two processes claiming the same rank: the second is refused", async () => {
    const masterPort = await findFreePort();
    const opts = { masterAddr: "127.0.0.1", masterPort, worldSize: 3, timeoutMs: 400 };
    const first = rendezvous({ ...opts, rank: 1 });
    const r0 = rendezvous({ ...opts, rank: 0 });
    await new Promise((r) => setTimeout(r, 150)); // the first rank 1 is in
    const second = await Promise.allSettled([rendezvous({ ...opts, rank: 1 })]);
    expect((second[0] as PromiseRejectedResult).reason.message).toContain("claims rank 1, which already arrived (two processes with the same RANK?)");
    for (const r of await Promise.allSettled([first, r0])) expect((r as PromiseRejectedResult).reason.message).toContain("rank 2 did not arrive within 400 ms (arrived: 0, 1)");
  });

  it("a rank that cannot reach rank 0 says so", async () => {
    const masterPort = await findFreePort();
    await expect(rendezvous({ rank: 1, worldSize: 2, masterAddr: "127.0.0.1", masterPort, timeoutMs: 250 })).rejects.toThrow(`rendezvous with 127.0.0.1:${masterPort} (rank 1): could not reach rank 0 within 250 ms`);
  });

  it("checks its options", async () => {
    await expect(rendezvous({ rank: 2, worldSize: 2, masterAddr: "h", masterPort: 1 })).rejects.toThrow("rank must be an integer in [0, 1], got 2");
    await expect(rendezvous({ rank: 0, worldSize: 2, masterAddr: "h", masterPort: 0 })).rejects.toThrow("masterPort must be a TCP port");
  });
});

describe("TcpCommunicator", () => {
  it("allReduce, broadcast and barrier match LocalGroup bit for bit", async () => {
    const n = 3;
    const tcp = await connectAll(n);
    const local = LocalGroup.create(n);
    const make = (rank: number) => [tensorFrom(values(1000, rank + 1)), tensorFrom(Float64Array.from(values(17, rank + 9)), { shape: [17] })];
    const viaTcp = tcp.map((c) => make(c.rank));
    const viaLocal = local.map((c) => make(c.rank));
    await Promise.all(tcp.map((c) => c.allReduce(viaTcp[c.rank]!, "mean")));
    await Promise.all(local.map((c) => c.allReduce(viaLocal[c.rank]!, "mean")));
    for (let r = 0; r < n; r++) viaTcp[r]!.forEach((t, i) => expect(t.toArray()).toEqual(viaLocal[0]![i]!.toArray()));
    // The mean is not the input of any rank: the test sees a real reduction.
    expect(viaTcp[0]![0]!.toArray()).not.toEqual(Array.from(values(1000, 1)));
    const b = tcp.map((c) => tensorFrom(new Float32Array([c.rank * 1.5, -c.rank])));
    await Promise.all(tcp.map((c) => c.broadcast([b[c.rank]!], 1)));
    for (const t of b) expect(t.toArray()).toEqual([1.5, -1]);
    await Promise.all(tcp.map((c) => c.barrier()));
    await Promise.all(tcp.map((c) => c.close()));
  });

  it("a rank that stops answering makes the others reject within the timeout, naming it", async () => {
    const tcp = await connectAll(3, 300);
    const t = () => tensorFrom(new Float32Array([1, 2]));
    // rank 1 is alive but never calls the collective
    const results = await Promise.allSettled([tcp[0]!.allReduce([t()], "sum"), tcp[2]!.allReduce([t()], "sum")]);
    expect((results[0] as PromiseRejectedResult).reason.message).toBe("TcpCommunicator allReduce(sum) #1 (rank 0): rank 1 did not join allReduce(sum) #1 within 300 ms");
    expect((results[1] as PromiseRejectedResult).reason.message).toBe("TcpCommunicator allReduce(sum) #1 (rank 2): rank 0 gave up: TcpCommunicator allReduce(sum) #1 (rank 0): rank 1 did not join allReduce(sum) #1 within 300 ms");
    await expect(tcp[0]!.barrier()).rejects.toThrow("rank 1 did not join"); // the group stays failed
    await Promise.all(tcp.map((c) => c.close()));
  });

  it("rank 0 going away makes the others reject naming rank 0", async () => {
    const tcp = await connectAll(2, 300);
    await tcp[0]!.close();
    await expect(tcp[1]!.allReduce([tensorFrom(new Float32Array([1]))], "mean")).rejects.toThrow("TcpCommunicator allReduce(mean) #1 (rank 1): rank 0 closed the connection (it exited, crashed or gave up)");
    await tcp[1]!.close();
  });

  it("mismatched tensors are an error naming the rank", async () => {
    const tcp = await connectAll(2);
    const results = await Promise.allSettled([tcp[0]!.allReduce([tensorFrom(new Float32Array(2))], "sum"), tcp[1]!.allReduce([tensorFrom(new Float64Array(2))], "sum")]);
    expect((results[0] as PromiseRejectedResult).reason.message).toBe("TcpCommunicator allReduce(sum) #1 (rank 0): rank 1 called allReduce(sum) [f64:2] but this rank called allReduce(sum) [f32:2]; every rank must run the same collectives on the same tensor sizes and dtypes");
    expect((results[1] as PromiseRejectedResult).reason.message).toContain("(rank 1): rank 0 gave up:");
    await Promise.all(tcp.map((c) => c.close()));
  });
});
