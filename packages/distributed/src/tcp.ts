// A real multi-process Communicator over the rendezvous's TCP sockets, star-shaped through rank 0:
// every collective gathers the ranks' host copies on rank 0, which combines them (rank-order sum,
// as LocalGroup does) and sends each rank its result. Meant for CPU multi-process runs and tests;
// NCCL replaces it on GPUs.
import type { Tensor } from "@modulora/tensor";
import { FRAME, type Channel, type Frame } from "./channel.js";
import {
  checkReduceOp, checkRoot, readHost, reduceInRankOrder, signatureOf, writeHost,
  type Communicator, type HostFloatArray, type ReduceOp,
} from "./communicator.js";
import { rendezvous, transportOf, type Rendezvous, type RendezvousOptions, type Transport } from "./rendezvous.js";

/** Options of {@link TcpCommunicator}. */
export interface TcpCommunicatorOptions {
  /** How long a collective waits for a rank before rejecting with an error naming it (default 60 000 ms; the ranks other than 0 wait up to 2 s more, to hear rank 0 name the rank that failed). */
  timeoutMs?: number;
}

function toBytes(parts: readonly HostFloatArray[]): Uint8Array {
  const total = parts.reduce((s, p) => s + p.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) { out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), off); off += p.byteLength; }
  return out;
}

function fromBytes(body: Uint8Array, like: readonly Tensor[]): HostFloatArray[] {
  const out: HostFloatArray[] = [];
  let off = 0;
  for (const t of like) {
    const ctor = t.dtype === "f64" ? Float64Array : Float32Array;
    const n = t.size * ctor.BYTES_PER_ELEMENT;
    const copy = new Uint8Array(n);
    copy.set(body.subarray(off, off + n));
    out.push(new ctor(copy.buffer));
    off += n;
  }
  return out;
}

/**
 * A {@link Communicator} between processes over TCP (f32 and f64 tensors, copied to the host).
 * Build one with {@link TcpCommunicator.connect} (rendezvous included) or from a {@link Rendezvous}.
 * A rank that exits or stops answering makes the others reject within `timeoutMs` with an error
 * naming it; rank 0 passes the failure on to the ranks still alive.
 */
export class TcpCommunicator implements Communicator {
  readonly rank: number;
  readonly worldSize: number;
  /** The rendezvous this communicator runs over (its payload and peers). */
  readonly rendezvous: Rendezvous;
  private readonly timeoutMs: number;
  private readonly transport: Transport;
  private seq = 0;
  private current = "TcpCommunicator (between collectives)";
  private failure: Error | null = null;
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(rdv: Rendezvous, options: TcpCommunicatorOptions = {}) {
    this.rendezvous = rdv;
    this.transport = transportOf(rdv);
    this.rank = rdv.rank;
    this.worldSize = rdv.worldSize;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    if (!(this.timeoutMs > 0)) throw new RangeError(`TcpCommunicator: timeoutMs must be positive, got ${this.timeoutMs}`);
    for (const ch of this.transport.channels) if (ch) ch.describe = () => this.current;
  }

  /** Runs {@link rendezvous} with `options` and wraps the result. */
  static async connect(options: RendezvousOptions & TcpCommunicatorOptions): Promise<TcpCommunicator> {
    return new TcpCommunicator(await rendezvous(options), options);
  }

  async allReduce(tensors: readonly Tensor[], op: ReduceOp): Promise<void> {
    checkReduceOp(op, "TcpCommunicator.allReduce");
    const parts = await Promise.all(tensors.map((t) => readHost(t, "TcpCommunicator.allReduce")));
    const result = await this.collective(`allReduce(${op})`, signatureOf(tensors), toBytes(parts), (bodies) => {
      const all = bodies.map((b, r) => (r === 0 ? parts : fromBytes(b, tensors)));
      const out = tensors.map((_, i) => reduceInRankOrder(all.map((p) => p[i]!), op));
      const bytes = toBytes(out);
      return bodies.map(() => bytes);
    });
    const out = fromBytes(result, tensors);
    tensors.forEach((t, i) => writeHost(t, out[i]!));
  }

  async broadcast(tensors: readonly Tensor[], root: number): Promise<void> {
    checkRoot(root, this.worldSize, "TcpCommunicator.broadcast");
    const mine = this.rank === root ? toBytes(await Promise.all(tensors.map((t) => readHost(t, "TcpCommunicator.broadcast")))) : new Uint8Array(0);
    const result = await this.collective(`broadcast(root ${root})`, signatureOf(tensors), mine, (bodies) => {
      const src = bodies[root]!;
      return bodies.map((_, r) => (r === root ? new Uint8Array(0) : src));
    });
    if (this.rank !== root) {
      const out = fromBytes(result, tensors);
      tensors.forEach((t, i) => writeHost(t, out[i]!));
    }
  }

  async barrier(): Promise<void> {
    await this.collective("barrier", "", new Uint8Array(0), (bodies) => bodies.map(() => new Uint8Array(0)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.catch(() => undefined);
    for (const ch of this.transport.channels) ch?.close();
    await new Promise<void>((resolve) => (this.transport.server ? this.transport.server.close(() => resolve()) : resolve()));
  }

  /** Collectives run one at a time, in call order, so that sequence numbers match across ranks. */
  private collective(kind: string, signature: string, body: Uint8Array, combine: (bodies: Uint8Array[]) => Uint8Array[]): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new Error(`TcpCommunicator.${kind}: rank ${this.rank}'s communicator was closed`));
    const run = this.queue.then(() => this.runCollective(kind, signature, body, combine));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async runCollective(kind: string, signature: string, body: Uint8Array, combine: (bodies: Uint8Array[]) => Uint8Array[]): Promise<Uint8Array> {
    if (this.failure) throw this.failure;
    const seq = ++this.seq;
    const what = `TcpCommunicator ${kind} #${seq} (rank ${this.rank})`;
    this.current = what;
    if (this.worldSize === 1) return combine([body])[0]!;
    try {
      if (this.rank !== 0) {
        const ch = this.transport.channels[0]!;
        ch.send(FRAME.data, seq, { kind, signature }, body);
        // Rank 0 times the other ranks out after timeoutMs; waiting a little longer lets its
        // verdict (naming the rank that failed) arrive before we blame rank 0 itself.
        const f = await ch.recv(this.timeoutMs + Math.min(2_000, this.timeoutMs / 2), `answer ${kind} #${seq}`);
        this.checkFrame(f, seq, kind, signature, 0, what);
        return f.body;
      }
      const bodies: Uint8Array[] = [body];
      // Wait for every rank at once, so that the first to fail is named, not the lowest.
      const frames = await Promise.all(this.transport.channels.slice(1).map(async (ch, i) => {
        const f = await ch.recv(this.timeoutMs, `join ${kind} #${seq}`);
        this.checkFrame(f, seq, kind, signature, i + 1, what);
        return f;
      }));
      frames.forEach((f) => bodies.push(f.body));
      const results = combine(bodies);
      this.transport.channels.forEach((ch, r) => { if (r > 0) ch.send(FRAME.data, seq, { kind, signature }, results[r]!); });
      return results[0]!;
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      this.failure = e;
      if (this.rank === 0) for (const ch of this.transport.channels.slice(1)) ch?.send(FRAME.abort, seq, { message: e.message });
      throw e;
    }
  }

  private checkFrame(f: Frame, seq: number, kind: string, signature: string, from: number, what: string): void {
    if (f.type === FRAME.abort) throw new Error(`${what}: rank ${from} gave up: ${String(f.meta.message)}`);
    if (f.type !== FRAME.data || f.seq !== seq) throw new Error(`${what}: rank ${from} is out of step (sent frame ${f.type} #${f.seq}); every rank must run the same collectives in the same order`);
    if (f.meta.kind !== kind || f.meta.signature !== signature) {
      throw new Error(`${what}: rank ${from} called ${String(f.meta.kind)} [${String(f.meta.signature)}] but this rank called ${kind} [${signature}]; every rank must run the same collectives on the same tensor sizes and dtypes`);
    }
  }
}
