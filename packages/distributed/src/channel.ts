// Length-prefixed frames over one TCP socket, with a receive queue and timeouts, so that the
// rendezvous and the TCP communicator can `await` the next frame from a given peer.
// Frame: [u32 bytes after this][u8 type][u32 seq][u32 meta bytes][meta JSON][body bytes].
import type { Socket } from "node:net";

/** @internal Frame types. */
export const FRAME = { hello: 1, welcome: 2, abort: 3, data: 4 } as const;

/** @internal One received frame. */
export interface Frame {
  type: number;
  seq: number;
  meta: Record<string, unknown>;
  body: Buffer;
}

const MAX_FRAME = 2 ** 31;

/** @internal A socket to one peer rank, framed. */
export class Channel {
  private buf: Buffer = Buffer.alloc(0);
  private readonly queue: Frame[] = [];
  private waiter: { resolve: (f: Frame) => void; reject: (e: Error) => void } | null = null;
  private ended: Error | null = null;
  /** Set once the peer's rank is known. */
  peerRank: number;
  /** Says who is waiting, for error messages (the rendezvous, then the current collective). */
  describe: () => string;

  constructor(readonly socket: Socket, peerRank: number, describe: () => string) {
    this.describe = describe;
    this.peerRank = peerRank;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.end(new Error(`${this.describe()}: connection to ${this.peerName()} failed: ${err.message}`)));
    socket.on("close", () => this.end(new Error(`${this.describe()}: ${this.peerName()} closed the connection (it exited, crashed or gave up)`)));
  }

  private peerName(): string {
    return this.peerRank >= 0 ? `rank ${this.peerRank}` : "a connecting rank";
  }

  send(type: number, seq: number, meta: Record<string, unknown> = {}, body: Uint8Array = new Uint8Array(0)): void {
    if (this.ended) return;
    const metaBytes = Buffer.from(JSON.stringify(meta));
    const head = Buffer.alloc(13);
    head.writeUInt32LE(9 + metaBytes.length + body.byteLength, 0);
    head.writeUInt8(type, 4);
    head.writeUInt32LE(seq >>> 0, 5);
    head.writeUInt32LE(metaBytes.length, 9);
    this.socket.write(Buffer.concat([head, metaBytes, Buffer.from(body.buffer, body.byteOffset, body.byteLength)]));
  }

  /** The next frame; rejects when none comes within `timeoutMs` (the message says `waitingFor`) or the peer goes away. */
  recv(timeoutMs: number, waitingFor: string): Promise<Frame> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) return Promise.reject(this.ended);
    if (this.waiter) return Promise.reject(new Error(`${this.describe()}: two receives at once from ${this.peerName()}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`${this.describe()}: ${this.peerName()} did not ${waitingFor} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (f) => { clearTimeout(timer); resolve(f); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  close(): void {
    this.ended ??= new Error(`${this.describe()}: the connection to ${this.peerName()} was closed`);
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32LE(0);
      if (len < 9 || len > MAX_FRAME) {
        this.end(new Error(`${this.describe()}: malformed frame from ${this.peerName()} (length ${len}); is something else listening on this port?`));
        this.socket.destroy();
        return;
      }
      if (this.buf.length < 4 + len) return;
      const type = this.buf.readUInt8(4);
      const seq = this.buf.readUInt32LE(5);
      const metaLen = this.buf.readUInt32LE(9);
      let meta: Record<string, unknown>;
      try {
        meta = JSON.parse(this.buf.subarray(13, 13 + metaLen).toString("utf8")) as Record<string, unknown>;
      } catch {
        this.end(new Error(`${this.describe()}: malformed frame from ${this.peerName()} (bad header)`));
        this.socket.destroy();
        return;
      }
      const body = Buffer.from(this.buf.subarray(13 + metaLen, 4 + len));
      this.buf = this.buf.subarray(4 + len);
      this.push({ type, seq, meta, body });
    }
  }

  private push(f: Frame): void {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w.resolve(f);
    } else this.queue.push(f);
  }

  private end(err: Error): void {
    if (this.ended) return;
    this.ended = err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }
}
