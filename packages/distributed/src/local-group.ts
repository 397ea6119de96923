// n communicators in one process: a stand-in for tests. Each collective call of each rank
// deposits its host copies in a slot shared by the group; the last rank to arrive reduces them
// (the same rank-order reduction as the TCP communicator) and every rank's promise resolves.
import type { Tensor } from "@modulora/tensor";
import {
  checkReduceOp, checkRoot, formatRanks, readHost, reduceInRankOrder, signatureOf, writeHost,
  type Communicator, type HostFloatArray, type ReduceOp,
} from "./communicator.js";

/** Options of {@link LocalGroup.create}. */
export interface LocalGroupOptions {
  /** How long a collective waits for every rank before rejecting (default 10 000 ms). */
  timeoutMs?: number;
}

interface Arrival {
  kind: string;
  signature: string;
  parts: HostFloatArray[];
  resolve: (result: HostFloatArray[] | null) => void;
  reject: (err: Error) => void;
}

interface Slot {
  arrivals: Map<number, Arrival>;
  timer: ReturnType<typeof setTimeout> | null;
}

/** The shared state of one group. */
class LocalHub {
  private readonly slots = new Map<number, Slot>();
  private failure: Error | null = null;

  constructor(readonly worldSize: number, readonly timeoutMs: number) {}

  /** Deposits one rank's contribution to collective number `seq`; resolves with the parts every rank should write, or null. */
  arrive(seq: number, rank: number, kind: string, signature: string, parts: HostFloatArray[],
    combine: (all: Map<number, Arrival>) => Map<number, HostFloatArray[] | null>): Promise<HostFloatArray[] | null> {
    if (this.failure) return Promise.reject(this.failure);
    let slot = this.slots.get(seq);
    if (!slot) {
      slot = { arrivals: new Map(), timer: null };
      this.slots.set(seq, slot);
      const s = slot;
      s.timer = setTimeout(() => this.expire(seq, s), this.timeoutMs);
    }
    const s = slot;
    return new Promise((resolve, reject) => {
      s.arrivals.set(rank, { kind, signature, parts, resolve, reject });
      if (s.arrivals.size < this.worldSize) return;
      if (s.timer) clearTimeout(s.timer);
      this.slots.delete(seq);
      const first = s.arrivals.get(0)!;
      for (const [r, a] of s.arrivals) {
        if (a.kind !== first.kind || a.signature !== first.signature) {
          this.fail(s, new Error(`LocalGroup collective #${seq}: rank ${r} called ${a.kind} [${a.signature}] but rank 0 called ${first.kind} [${first.signature}]; every rank must run the same collectives on the same tensor sizes and dtypes`));
          return;
        }
      }
      const results = combine(s.arrivals);
      for (const [r, a] of s.arrivals) a.resolve(results.get(r) ?? null);
    });
  }

  private expire(seq: number, slot: Slot): void {
    if (this.slots.get(seq) !== slot) return;
    this.slots.delete(seq);
    const missing: number[] = [];
    for (let r = 0; r < this.worldSize; r++) if (!slot.arrivals.has(r)) missing.push(r);
    const kind = [...slot.arrivals.values()][0]?.kind ?? "collective";
    this.fail(slot, new Error(`LocalGroup ${kind} #${seq}: ${formatRanks(missing)} did not arrive within ${this.timeoutMs} ms (arrived: ${[...slot.arrivals.keys()].sort((a, b) => a - b).join(", ")})`));
  }

  private fail(slot: Slot, err: Error): void {
    this.failure = err;
    for (const a of slot.arrivals.values()) a.reject(err);
    for (const s of this.slots.values()) {
      if (s.timer) clearTimeout(s.timer);
      for (const a of s.arrivals.values()) a.reject(err);
    }
    this.slots.clear();
  }
}

/**
 * A {@link Communicator} whose ranks live in one process and exchange through shared host memory:
 * the stand-in for tests of data-parallel code. Create a group with {@link LocalGroup.create} and
 * drive each rank's work concurrently (`Promise.all`).
 */
export class LocalGroup implements Communicator {
  private seq = 0;
  private closed = false;

  private constructor(readonly rank: number, readonly worldSize: number, private readonly hub: LocalHub) {}

  /** `n` communicators, ranks 0 … n−1, of one group. */
  static create(n: number, options: LocalGroupOptions = {}): LocalGroup[] {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`LocalGroup.create: the number of ranks must be a positive integer, got ${n}`);
    const timeoutMs = options.timeoutMs ?? 10_000;
    if (!(timeoutMs > 0)) throw new RangeError(`LocalGroup.create: timeoutMs must be positive, got ${timeoutMs}`);
    const hub = new LocalHub(n, timeoutMs);
    return Array.from({ length: n }, (_, r) => new LocalGroup(r, n, hub));
  }

  async allReduce(tensors: readonly Tensor[], op: ReduceOp): Promise<void> {
    this.checkOpen("allReduce");
    checkReduceOp(op, "LocalGroup.allReduce");
    const parts = await Promise.all(tensors.map((t) => readHost(t, "LocalGroup.allReduce")));
    const result = await this.hub.arrive(++this.seq, this.rank, `allReduce(${op})`, signatureOf(tensors), parts, (all) => {
      const out: HostFloatArray[] = tensors.map((_, i) => reduceInRankOrder([...Array(this.worldSize).keys()].map((r) => all.get(r)!.parts[i]!), op));
      return new Map([...all.keys()].map((r) => [r, out]));
    });
    tensors.forEach((t, i) => writeHost(t, result![i]!));
  }

  async broadcast(tensors: readonly Tensor[], root: number): Promise<void> {
    this.checkOpen("broadcast");
    checkRoot(root, this.worldSize, "LocalGroup.broadcast");
    const parts = this.rank === root ? await Promise.all(tensors.map((t) => readHost(t, "LocalGroup.broadcast"))) : [];
    const result = await this.hub.arrive(++this.seq, this.rank, `broadcast(root ${root})`, signatureOf(tensors), parts, (all) => {
      const src = all.get(root)!.parts;
      return new Map([...all.keys()].map((r) => [r, r === root ? null : src]));
    });
    if (result) tensors.forEach((t, i) => writeHost(t, result[i]!));
  }

  async barrier(): Promise<void> {
    this.checkOpen("barrier");
    await this.hub.arrive(++this.seq, this.rank, "barrier", "", [], () => new Map());
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private checkOpen(what: string): void {
    if (this.closed) throw new Error(`LocalGroup.${what}: rank ${this.rank}'s communicator was closed`);
  }
}
