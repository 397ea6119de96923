// The rendezvous's TCP sockets kept open as a liveness channel beside NCCL (nccl.ts), which does not
// time out and may not notice a dead peer.
//
// Protocol on the rendezvous sockets (star through rank 0): FRAME.abort {message} says
// "this rank failed, and why"; FRAME.data {kind: "bye"} says "this rank closed its communicator in
// order". Rank 0 passes a failure it sees (a peer's abort, a closed socket) on to every other rank.
import { FRAME, type Channel } from "./channel.js";
import type { Transport } from "./rendezvous.js";

/** Longest wait of one liveness receive (setTimeout's limit is 2^31 − 1 ms); it is re-armed when it passes. */
const LISTEN_MS = 2_000_000_000;

/** @internal The rendezvous sockets as a liveness channel: who failed, and who left in order. */
export class Liveness {
  failure: Error | null = null;
  /** Resolves with the first failure (never rejects). */
  readonly failed: Promise<Error>;
  private resolveFailed!: (e: Error) => void;
  private readonly left = new Set<number>();
  private readonly listeners = new Set<() => void>();
  private closing = false;

  constructor(private readonly rank: number, private readonly transport: Transport) {
    this.failed = new Promise((resolve) => (this.resolveFailed = resolve));
    transport.channels.forEach((ch, peer) => { if (ch) void this.listen(ch, peer); });
  }

  private async listen(ch: Channel, peer: number): Promise<void> {
    for (;;) {
      let f;
      try {
        f = await ch.recv(LISTEN_MS, "send anything");
      } catch {
        if (!ch.socket.destroyed && !this.closing) continue; // the long wait passed: listen again
        if (this.closing || this.left.has(peer)) return;
        this.fail(new Error(`rank ${peer} exited or lost its connection (its rendezvous socket closed)`), peer);
        return;
      }
      if (f.type === FRAME.abort) {
        // From rank 0 the message names the rank that failed already; from another rank, say who.
        const m = String(f.meta.message);
        this.fail(new Error(peer === 0 ? m : `rank ${peer} failed: ${m}`), peer);
      } else if (f.type === FRAME.data && f.meta.kind === "bye") {
        this.left.add(peer);
      }
    }
  }

  /** Records the first failure; rank 0 passes it on to the other ranks (except `from`, where it came from). */
  fail(err: Error, from = -1): void {
    if (this.failure) return;
    this.record(err);
    if (this.rank === 0) this.transport.channels.forEach((ch, r) => { if (ch && r !== from && !this.left.has(r)) ch.send(FRAME.abort, 0, { message: err.message }); });
  }

  /** This rank failed (its message names it): tell the others, through rank 0. */
  report(err: Error): void {
    if (this.rank === 0) this.fail(err);
    else {
      if (!this.failure) this.record(err);
      this.transport.channels[0]?.send(FRAME.abort, 0, { message: err.message });
    }
  }

  /** Calls `fn` on a failure, until {@link Liveness.off}. */
  on(fn: () => void): void {
    this.listeners.add(fn);
  }

  off(fn: () => void): void {
    this.listeners.delete(fn);
  }

  private record(err: Error): void {
    this.failure = err;
    this.resolveFailed(err);
    for (const fn of [...this.listeners]) fn();
  }

  /** Says goodbye when `orderly`, lets the sockets flush (what was sent, an abort included; at most 1 s), then closes them. */
  async close(orderly: boolean): Promise<void> {
    this.closing = true;
    await Promise.all(this.transport.channels.map((ch) => new Promise<void>((resolve) => {
      if (!ch || ch.socket.destroyed) return resolve();
      const timer = setTimeout(resolve, 1_000);
      ch.socket.once("close", () => { clearTimeout(timer); resolve(); });
      if (orderly) ch.send(FRAME.data, 0, { kind: "bye" });
      ch.socket.end();
    })));
    for (const ch of this.transport.channels) ch?.close();
    await new Promise<void>((resolve) => (this.transport.server ? this.transport.server.close(() => resolve()) : resolve()));
  }
}
