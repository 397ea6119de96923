// NcclCommunicator on the CPU build CI has: what the real addon says without NCCL, and the
// communicator's own logic (unique id through the rendezvous, tensor checks, the liveness channel,
// aborts, timeouts) over real TCP sockets with a fake NCCL (test-only `ops`) standing in for the GPU.
import { describe, expect, it } from "vitest";
import { NCCL_NO_CUDA_BUILD, hasCuda, ncclInfo, tensorFrom } from "@modulora/tensor";
import { findFreePort } from "../src/index.js";
import { NcclCommunicator, type NcclCommunicatorOptions, type NcclOps, type NcclTestOptions } from "../src/nccl.js";
import { transportOf } from "../src/rendezvous.js";

interface Fake extends NcclOps {
  calls: string[];
  aborted: number[];
  destroyed: number[];
  ids: Uint8Array[];
}

/** A fake NCCL for one rank: comm handle 100 + rank; `fence` and `asyncError` as the test wants. */
function fake(rank: number, o: { fence?: () => Promise<void>; asyncError?: (calls: string[]) => string | null } = {}): Fake {
  const f: Fake = {
    calls: [], aborted: [], destroyed: [], ids: [],
    info: () => ({ available: true, version: "2.99.0", versionCode: 29900, path: "/fake/libnccl.so.2" }),
    uniqueId: () => Uint8Array.from({ length: 128 }, (_, i) => (i * 7 + 3) & 255),
    init: async (device, id, worldSize, r) => { f.ids.push(new Uint8Array(id)); f.calls.push(`init cuda:${device} ${r}/${worldSize}`); return 100 + rank; },
    allReduce: (device, comm, ptr, count, code, op) => void f.calls.push(`allReduce cuda:${device} comm ${comm} ptr ${ptr} count ${count} code ${code} ${op}`),
    broadcast: (device, comm, ptr, count, code, root) => void f.calls.push(`broadcast cuda:${device} comm ${comm} ptr ${ptr} count ${count} code ${code} root ${root}`),
    group: (fn) => { f.calls.push("groupStart"); try { return fn(); } finally { f.calls.push("groupEnd"); } },
    asyncError: () => (o.asyncError ? o.asyncError(f.calls) : null),
    abort: (comm) => { f.aborted.push(comm); return true; },
    destroy: async (comm) => void f.destroyed.push(comm),
    fence: o.fence ?? (() => Promise.resolve()),
    scratch: () => ({ ptr: 4096, release: () => void f.calls.push("scratch released") }),
  };
  return f;
}

/** The public options type has no `ops`: the fake goes in through the internal one. */
const withOps = (o: NcclTestOptions): NcclCommunicatorOptions => o;

const never = (): Promise<void> => new Promise(() => {});

async function connectAll(fakes: Fake[], timeoutMs = 5_000): Promise<NcclCommunicator[]> {
  const masterPort = await findFreePort();
  return Promise.all(fakes.map((ops, rank) => NcclCommunicator.connect(withOps({ rank, worldSize: fakes.length, masterAddr: "127.0.0.1", masterPort, device: rank, timeoutMs, pollMs: 5, ops }))));
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

describe("NCCL on this build", () => {
  it("ncclInfo says whether NCCL is there, and why not (a CPU-only build: no CUDA backend)", () => {
    const info = ncclInfo();
    if (!hasCuda()) {
      expect(info).toEqual({ available: false, reason: NCCL_NO_CUDA_BUILD });
      expect(info.reason).toMatch(/^this build of @modulora\/kernels has no CUDA backend .*TcpCommunicator/);
    } else {
      // A CUDA build: available with a version and a path, or a reason that says what to do.
      if (info.available) expect([typeof info.version, typeof info.path]).toEqual(["string", "string"]);
      else expect(info.reason).toMatch(/NCCL|libnccl/);
    }
  });

  it("NcclCommunicator.connect rejects on a build without NCCL, saying what is missing", async () => {
    const info = ncclInfo();
    if (info.available) return; // a CUDA host with NCCL: scripts/gpu/nccl-check.mjs tests the real thing
    const masterPort = await findFreePort();
    const err = await rejection(NcclCommunicator.connect({ rank: 0, worldSize: 1, masterAddr: "127.0.0.1", masterPort, device: 0 }));
    expect(err.message).toBe(`NcclCommunicator.connect (rank 0): NCCL is unavailable: ${info.reason}`);
    if (!hasCuda()) expect(err.message).toContain("has no CUDA backend");
  });
});

describe("NcclCommunicator (fake NCCL, real sockets)", () => {
  it("rank 0's unique id reaches every rank's ncclInit; barrier is a 1-element f32 sum; close destroys", async () => {
    const fakes = [fake(0), fake(1)];
    const comms = await connectAll(fakes);
    expect(fakes.map((f) => f.calls)).toEqual([["init cuda:0 0/2"], ["init cuda:1 1/2"]]);
    expect([...fakes[1]!.ids[0]!]).toEqual([...fakes[0]!.uniqueId()]);
    await Promise.all(comms.map((c) => c.barrier()));
    expect(fakes[1]!.calls.slice(1)).toEqual(["allReduce cuda:1 comm 101 ptr 4096 count 1 code 0 sum"]);
    await Promise.all(comms.map((c) => c.allReduce([], "mean")));
    expect(fakes[0]!.calls.slice(2)).toEqual(["groupStart", "groupEnd"]);
    await Promise.all(comms.map((c) => c.close()));
    expect(fakes.map((f) => [f.destroyed, f.aborted])).toEqual([[[100], []], [[101], []]]);
  });

  it("refuses a CPU tensor, naming it and pointing at TcpCommunicator, and stays usable", async () => {
    const ops = fake(0);
    const [comm] = await connectAll([ops]);
    const t = tensorFrom(new Float32Array([1, 2, 3]));
    const err = await rejection(comm!.allReduce([t], "sum"));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe(`NcclCommunicator allReduce(sum) #1 (rank 0): tensor #${t.id} is on cpu; NcclCommunicator moves tensors on CUDA devices only (use TcpCommunicator for tensors on the CPU)`);
    expect((await rejection(comm!.broadcast([t], 0))).message).toContain("use TcpCommunicator for tensors on the CPU");
    expect((await rejection(comm!.broadcast([], 1))).message).toBe("NcclCommunicator.broadcast: root must be an integer rank in [0, 0], got 1");
    expect(ops.calls).toEqual(["init cuda:0 0/1"]);
    await comm!.barrier();
    await comm!.close();
    expect(ops.aborted).toEqual([]);
    t.dispose();
  });

  it("refuses a device that is not CUDA", async () => {
    const masterPort = await findFreePort();
    const err = await rejection(NcclCommunicator.connect(withOps({ rank: 0, worldSize: 1, masterAddr: "127.0.0.1", masterPort, device: "cpu", ops: fake(0) })));
    expect(err.message).toBe("NcclCommunicator: device 'cpu' is not a CUDA device; NCCL runs on cuda:N (use TcpCommunicator on the CPU)");
  });

  it("a collective that does not finish within timeoutMs aborts NCCL and rejects, and so does every later call", async () => {
    const ops = fake(0, { fence: never });
    const [comm] = await connectAll([ops], 200);
    const t0 = Date.now();
    const err = await rejection(comm!.barrier());
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(err.message).toBe("NcclCommunicator barrier #1 (rank 0): did not complete within 200 ms; a rank is stuck, gone, or did not call this collective (every rank must run the same collectives in the same order)");
    expect(ops.aborted).toEqual([100]);
    expect(await rejection(comm!.fence())).toBe(err);
    await comm!.close();
    expect(ops.destroyed).toEqual([]);
  });

  it("a rank whose socket closes mid-collective is named on every rank, and each aborts", async () => {
    const fakes = [fake(0, { fence: never }), fake(1, { fence: never }), fake(2, { fence: never })];
    const comms = await connectAll(fakes);
    const waits = comms.slice(0, 2).map((c) => rejection(c.allReduce([], "sum")));
    // Rank 2 "dies": its socket goes away without the orderly goodbye.
    transportOf(comms[2]!.rendezvous).channels[0]!.socket.destroy();
    const [e0, e1] = await Promise.all(waits);
    const seen = "rank 2 exited or lost its connection (its rendezvous socket closed)";
    expect(e0!.message).toBe(`NcclCommunicator allReduce(sum) #1 (rank 0): ${seen}`);
    expect(e1!.message).toBe(`NcclCommunicator allReduce(sum) #1 (rank 1): ${seen}`);
    expect(fakes.slice(0, 2).map((f) => f.aborted)).toEqual([[100], [101]]);
    await Promise.all(comms.map((c) => c.close()));
  });

  it("an NCCL error on one rank aborts it, and the others reject naming that rank", async () => {
    const fakes = [fake(0, { fence: never }), fake(1, { fence: never, asyncError: (calls) => (calls.length > 1 ? "rank 1's communicator failed: remote process exited or there was a network error (ncclResult 6)" : null) })];
    const comms = await connectAll(fakes);
    const [e0, e1] = await Promise.all(comms.map((c) => rejection(c.barrier())));
    const ours = "NcclCommunicator barrier #1 (rank 1): rank 1's communicator failed: remote process exited or there was a network error (ncclResult 6)";
    expect(e1!.message).toBe(ours);
    expect(e0!.message).toBe(`NcclCommunicator barrier #1 (rank 0): rank 1 failed: ${ours}`);
    expect(fakes.map((f) => f.aborted)).toEqual([[100], [101]]);
    await Promise.all(comms.map((c) => c.close()));
  });

  it("a rank that closes in order is not a failure for the ranks still finishing", async () => {
    const fakes = [fake(0), fake(1)];
    const comms = await connectAll(fakes);
    await comms[1]!.close();
    await new Promise((r) => setTimeout(r, 50));
    await comms[0]!.fence();
    await comms[0]!.close();
    expect(fakes.map((f) => [f.destroyed, f.aborted])).toEqual([[[100], []], [[101], []]]);
  });
});
