// The TCP rendezvous on MASTER_ADDR:MASTER_PORT: rank 0 listens, the other ranks connect
// (retrying until the timeout) and say who they are; once all have arrived rank 0 sends every rank
// its payload (the NCCL unique id, later) and the list of ranks. The open sockets stay up as the
// transport of the TcpCommunicator.
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { hostname } from "node:os";
import { Channel, FRAME } from "./channel.js";
import { formatRanks } from "./communicator.js";

/** Options of {@link rendezvous}. */
export interface RendezvousOptions {
  /** This process's rank. */
  rank: number;
  /** Number of ranks. */
  worldSize: number;
  /** Host of rank 0. */
  masterAddr: string;
  /** Port rank 0 listens on. */
  masterPort: number;
  /** How long to wait for every rank to arrive (default 60 000 ms). */
  timeoutMs?: number;
  /** Bytes rank 0 sends to every rank (ignored on the other ranks). */
  payload?: Uint8Array;
  /** Interface rank 0 listens on (default: all interfaces). */
  listenHost?: string;
}

/** One rank as the rendezvous saw it. */
export interface PeerInfo {
  /** The rank. */
  rank: number;
  /** Its host name. */
  host: string;
  /** Its process id. */
  pid: number;
}

/** What {@link rendezvous} resolves with. */
export interface Rendezvous {
  /** This process's rank. */
  readonly rank: number;
  /** Number of ranks. */
  readonly worldSize: number;
  /** Rank 0's payload (empty when it gave none). */
  readonly payload: Uint8Array;
  /** Every rank, in rank order. */
  readonly peers: readonly PeerInfo[];
}

/** @internal The sockets a rendezvous leaves open. Rank 0: a channel per other rank (index = rank, [0] unused); other ranks: [channel to rank 0]. */
export interface Transport {
  readonly channels: readonly Channel[];
  readonly server: Server | null;
}

const transports = new WeakMap<Rendezvous, Transport>();

/** @internal The open sockets of a rendezvous (kept out of its public shape). */
export function transportOf(rdv: Rendezvous): Transport {
  const t = transports.get(rdv);
  if (!t) throw new TypeError("TcpCommunicator: this Rendezvous did not come from rendezvous()");
  return t;
}

function made(rdv: Rendezvous, channels: Channel[], server: Server | null): Rendezvous {
  transports.set(rdv, { channels, server });
  return rdv;
}

function checkOptions(o: RendezvousOptions): Required<Omit<RendezvousOptions, "listenHost" | "payload">> {
  if (!Number.isInteger(o.worldSize) || o.worldSize < 1) throw new RangeError(`rendezvous: worldSize must be a positive integer, got ${o.worldSize}`);
  if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) throw new RangeError(`rendezvous: rank must be an integer in [0, ${o.worldSize - 1}], got ${o.rank}`);
  if (!Number.isInteger(o.masterPort) || o.masterPort < 1 || o.masterPort > 65_535) throw new RangeError(`rendezvous: masterPort must be a TCP port (1-65535), got ${o.masterPort}`);
  if (!o.masterAddr) throw new TypeError("rendezvous: masterAddr is empty; give the host of rank 0 (MASTER_ADDR)");
  const timeoutMs = o.timeoutMs ?? 60_000;
  if (!(timeoutMs > 0)) throw new RangeError(`rendezvous: timeoutMs must be positive, got ${timeoutMs}`);
  return { rank: o.rank, worldSize: o.worldSize, masterAddr: o.masterAddr, masterPort: o.masterPort, timeoutMs };
}

/**
 * Meets the other `worldSize − 1` ranks at `masterAddr:masterPort`. Rank 0 listens; the others
 * connect, retrying until `timeoutMs`. Resolves on every rank with rank 0's payload and the list of
 * ranks once all have arrived.
 *
 * @throws Error on rank 0 (and, through it, on every rank that arrived) naming the ranks that did
 * not arrive within `timeoutMs`; on another rank, an error saying rank 0 could not be reached.
 */
export async function rendezvous(options: RendezvousOptions): Promise<Rendezvous> {
  const o = checkOptions(options);
  const self: PeerInfo = { rank: o.rank, host: hostname(), pid: process.pid };
  if (o.worldSize === 1) return made({ rank: 0, worldSize: 1, payload: options.payload ?? new Uint8Array(0), peers: [self] }, [], null);
  return o.rank === 0 ? host(o, self, options.payload ?? new Uint8Array(0), options.listenHost) : join(o, self);
}

function host(o: ReturnType<typeof checkOptions>, self: PeerInfo, payload: Uint8Array, listenHost?: string): Promise<Rendezvous> {
  const where = `rendezvous on port ${o.masterPort} (rank 0)`;
  return new Promise((resolve, reject) => {
    const channels: Channel[] = [];
    const peers: PeerInfo[] = [self];
    let settled = false;
    const server: Server = createServer((socket) => {
      if (settled) { socket.destroy(); return; }
      const ch = new Channel(socket, -1, () => where);
      ch.recv(Math.max(1, deadline - Date.now()), "introduce itself").then((f) => {
        const r = f.meta.rank;
        const why = f.type !== FRAME.hello ? "sent something other than a hello"
          : f.meta.worldSize !== o.worldSize ? `was started with world size ${String(f.meta.worldSize)}, rank 0 with ${o.worldSize}`
            : typeof r !== "number" || !Number.isInteger(r) || r < 1 || r >= o.worldSize ? `claims rank ${String(r)}, outside [1, ${o.worldSize - 1}]`
              : channels[r] ? `claims rank ${r}, which already arrived (two processes with the same RANK?)` : null;
        if (why) {
          ch.send(FRAME.abort, 0, { message: `${where}: a process from ${socket.remoteAddress ?? "?"} ${why}` });
          socket.end();
          return;
        }
        ch.peerRank = r as number;
        channels[r as number] = ch;
        peers.push({ rank: r as number, host: String(f.meta.host), pid: Number(f.meta.pid) });
        if (peers.length === o.worldSize) finish();
      }, () => ch.close());
    });
    const timer = setTimeout(() => {
      const missing: number[] = [];
      for (let r = 1; r < o.worldSize; r++) if (!channels[r]) missing.push(r);
      fail(new Error(`${where}: ${formatRanks(missing)} did not arrive within ${o.timeoutMs} ms (arrived: ${peers.map((p) => p.rank).sort((a, b) => a - b).join(", ")}); check that every rank was started with the same MASTER_ADDR:MASTER_PORT and WORLD_SIZE=${o.worldSize}`));
    }, o.timeoutMs);
    const deadline = Date.now() + o.timeoutMs;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const ch of channels) if (ch) { ch.send(FRAME.abort, 0, { message: err.message }); ch.socket.end(); }
      server.close();
      reject(err);
    };
    const finish = (): void => {
      settled = true;
      clearTimeout(timer);
      peers.sort((a, b) => a.rank - b.rank);
      for (const ch of channels) if (ch) ch.send(FRAME.welcome, 0, { peers }, payload);
      resolve(made({ rank: 0, worldSize: o.worldSize, payload, peers }, channels, server));
    };
    server.on("error", (err: NodeJS.ErrnoException) => fail(new Error(`${where}: cannot listen: ${err.message}${err.code === "EADDRINUSE" ? " (another job uses this MASTER_PORT; pick another)" : ""}`)));
    server.listen(o.masterPort, listenHost);
  });
}

async function join(o: ReturnType<typeof checkOptions>, self: PeerInfo): Promise<Rendezvous> {
  const where = `rendezvous with ${o.masterAddr}:${o.masterPort} (rank ${o.rank})`;
  const deadline = Date.now() + o.timeoutMs;
  let lastError = "";
  let socket: Socket | null = null;
  while (!socket) {
    if (Date.now() >= deadline) throw new Error(`${where}: could not reach rank 0 within ${o.timeoutMs} ms (last error: ${lastError || "none"}); is rank 0 running, and MASTER_ADDR/MASTER_PORT right?`);
    try {
      socket = await connectOnce(o.masterAddr, o.masterPort, Math.max(1, deadline - Date.now()));
    } catch (err) {
      lastError = (err as Error).message;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const ch = new Channel(socket, 0, () => where);
  ch.send(FRAME.hello, 0, { rank: o.rank, worldSize: o.worldSize, host: self.host, pid: self.pid });
  // Rank 0 started no later than our connect, so it answers (welcome or abort) within timeoutMs of now.
  const f = await ch.recv(o.timeoutMs + 5_000, "answer the rendezvous").catch((err: Error) => { ch.close(); throw err; });
  if (f.type === FRAME.abort) { ch.close(); throw new Error(String(f.meta.message)); }
  if (f.type !== FRAME.welcome) { ch.close(); throw new Error(`${where}: unexpected frame type ${f.type} from rank 0`); }
  return made({ rank: o.rank, worldSize: o.worldSize, payload: new Uint8Array(f.body), peers: f.meta.peers as PeerInfo[] }, [ch], null);
}

function connectOnce(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host, port });
    const timer = setTimeout(() => { s.destroy(); reject(new Error("connect timed out")); }, Math.min(timeoutMs, 5_000));
    s.once("connect", () => { clearTimeout(timer); s.removeAllListeners("error"); resolve(s); });
    s.once("error", (err) => { clearTimeout(timer); s.destroy(); reject(err); });
  });
}
