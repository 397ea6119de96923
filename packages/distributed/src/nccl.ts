// The GPU Communicator: NCCL collectives on the device's stream, in place on `cuda:N` tensors, with
// the rendezvous's TCP sockets kept open as a liveness channel. NCCL itself does not time out and
// may not notice a dead peer (on one host, over NVLink, a collective waits forever), so while a
// collective's completion is awaited the communicator polls ncclCommGetAsyncError and listens on
// the sockets: a peer whose socket closes, a peer that reports a failure, or the timeout aborts the
// NCCL communicator (ncclCommAbort) and rejects with an error naming the rank and the collective
// (the sockets' side is liveness.ts).
import {
  cudaAddress, cudaFence, dtypeInfo, keep, ncclAbort, ncclAllReduce, ncclAsyncError, ncclBroadcast, ncclDestroy, ncclGroup,
  ncclInfo, ncclInit, ncclUniqueId, parseDevice, tensorFrom,
  type DType, type NcclComm, type NcclInfo, type NcclReduceOp, type Tensor,
} from "@modulora/tensor";
import { checkReduceOp, checkRoot, type Communicator, type ReduceOp } from "./communicator.js";
import { Liveness } from "./liveness.js";
import { rendezvous, transportOf, type Rendezvous, type RendezvousOptions } from "./rendezvous.js";

/** The NCCL unique id's size in bytes (`NCCL_UNIQUE_ID_BYTES`). */
const UNIQUE_ID_BYTES = 128;
/** The dtypes NcclCommunicator reduces. */
const NCCL_DTYPES: readonly DType[] = ["f32", "f64", "bf16"];

/**
 * @internal The NCCL and stream calls NcclCommunicator makes: the addon's (`@modulora/kernels`,
 * through `@modulora/tensor`) by default; tests give a fake to exercise the liveness logic on the CPU.
 */
export interface NcclOps {
  info(): NcclInfo;
  uniqueId(): Uint8Array;
  init(device: number, id: Uint8Array, worldSize: number, rank: number): Promise<NcclComm>;
  allReduce(device: number, comm: NcclComm, ptr: number, count: number, dtypeCode: number, op: NcclReduceOp): void;
  broadcast(device: number, comm: NcclComm, ptr: number, count: number, dtypeCode: number, root: number): void;
  group<T>(fn: () => T): T;
  asyncError(comm: NcclComm): string | null;
  abort(comm: NcclComm): boolean;
  destroy(comm: NcclComm): Promise<void>;
  /** Resolves once the device's stream has finished the work queued so far. */
  fence(device: number): Promise<void>;
  /** The address of a 1-element f32 buffer on `device` (the barrier's), freed by `release`. */
  scratch(device: number): { ptr: number; release(): void };
}

function addonOps(): NcclOps {
  return {
    info: ncclInfo, uniqueId: ncclUniqueId, init: ncclInit, allReduce: ncclAllReduce, broadcast: ncclBroadcast, group: ncclGroup,
    asyncError: ncclAsyncError, abort: ncclAbort, destroy: ncclDestroy, fence: cudaFence,
    scratch: (device) => {
      const t = keep(tensorFrom(new Float32Array(1), { device: `cuda:${device}` }));
      return { ptr: cudaAddress(t), release: () => t.dispose() };
    },
  };
}

/** Options of {@link NcclCommunicator.connect}. */
export interface NcclCommunicatorOptions extends Omit<RendezvousOptions, "payload"> {
  /** This rank's CUDA device: an index, or `cuda` / `cuda:N` (one device per rank; usually the local rank). */
  device: number | string;
  /**
   * How long the rendezvous, `ncclCommInitRank` and each collective may take before the
   * communicator is aborted and the call rejects naming what it waited for (default 300 000 ms).
   */
  timeoutMs?: number;
  /** How often a pending collective polls NCCL's asynchronous error (default 50 ms). */
  pollMs?: number;
}

/** @internal {@link NcclCommunicator.connect}'s options as the tests give them: with a fake NCCL. */
export type NcclTestOptions = NcclCommunicatorOptions & { ops?: NcclOps };

function deviceIndexOf(device: number | string): number {
  if (typeof device === "number") {
    if (!Number.isInteger(device) || device < 0) throw new RangeError(`NcclCommunicator: device must be a CUDA device index ≥ 0, got ${device}`);
    return device;
  }
  const p = parseDevice(device);
  if (p.family !== "cuda") throw new TypeError(`NcclCommunicator: device '${device}' is not a CUDA device; NCCL runs on cuda:N (use TcpCommunicator on the CPU)`);
  return p.index ?? 0;
}

function errorOf(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * The device buffers of the (checked) tensors, empty ones left out: computed before any NCCL call,
 * so that a disposed tensor is a plain rejection, not a failure that aborts the communicator.
 */
function buffersOf(tensors: readonly Tensor[]): { ptr: number; count: number; code: number }[] {
  return tensors.filter((t) => t.size > 0).map((t) => ({ ptr: cudaAddress(t), count: t.size, code: dtypeInfo(t.dtype).code }));
}

/**
 * A {@link Communicator} over NCCL for tensors on CUDA devices (`f32`, `f64`, `bf16`, contiguous,
 * all on this rank's device). Collectives are queued on the device's stream when called (ordered
 * with the kernels around them, no host synchronization) and their promises resolve once the
 * stream has run them. Build one with {@link NcclCommunicator.connect}.
 *
 * Failures: a rank that exits, reports an NCCL error, or does not finish a collective within
 * `timeoutMs` makes every rank abort its NCCL communicator and reject with an error naming that
 * rank and the collective; later calls reject with the same error.
 */
export class NcclCommunicator implements Communicator {
  readonly rank: number;
  readonly worldSize: number;
  /** The CUDA device index of this rank. */
  readonly device: number;
  /** The rendezvous this communicator was made from (its peers). */
  readonly rendezvous: Rendezvous;
  /** The NCCL library in use. */
  readonly nccl: NcclInfo;
  private readonly comm: NcclComm;
  private readonly ops: NcclOps;
  private readonly liveness: Liveness;
  private readonly timeoutMs: number;
  private readonly pollMs: number;
  private barrierBuffer: { ptr: number; release(): void } | null = null;
  private seq = 0;
  private failure: Error | null = null;
  private aborted = false;
  private closed = false;
  private readonly pending = new Set<Promise<void>>();

  private constructor(rdv: Rendezvous, comm: NcclComm, device: number, ops: NcclOps, liveness: Liveness, nccl: NcclInfo, timeoutMs: number, pollMs: number) {
    this.rendezvous = rdv;
    this.rank = rdv.rank;
    this.worldSize = rdv.worldSize;
    this.comm = comm;
    this.device = device;
    this.ops = ops;
    this.liveness = liveness;
    this.nccl = nccl;
    this.timeoutMs = timeoutMs;
    this.pollMs = pollMs;
  }

  /**
   * Meets the other ranks at `masterAddr:masterPort` (rank 0 makes the NCCL unique id and sends it
   * as the rendezvous payload), then joins the NCCL communicator on `device`.
   *
   * @throws Error when NCCL is unavailable (a CPU-only build of the addon, no `libnccl.so.2`; the
   * message says which and what to do), when the rendezvous fails, or when `ncclCommInitRank` fails
   * or does not return within `timeoutMs` (a `ncclCommInitRank` that never returns keeps its thread,
   * and the process, alive: exit on this error).
   */
  static async connect(options: NcclCommunicatorOptions): Promise<NcclCommunicator> {
    const ops = (options as NcclTestOptions).ops ?? addonOps();
    const info = ops.info();
    if (!info.available) throw new Error(`NcclCommunicator.connect (rank ${options.rank}): NCCL is unavailable: ${info.reason ?? "no reason given"}`);
    const device = deviceIndexOf(options.device);
    const timeoutMs = options.timeoutMs ?? 300_000;
    const pollMs = options.pollMs ?? 50;
    if (!(timeoutMs > 0)) throw new RangeError(`NcclCommunicator: timeoutMs must be positive, got ${timeoutMs}`);
    if (!(pollMs > 0)) throw new RangeError(`NcclCommunicator: pollMs must be positive, got ${pollMs}`);
    const payload = options.rank === 0 ? ops.uniqueId() : undefined;
    const rdv = await rendezvous({ ...options, timeoutMs, payload });
    const liveness = new Liveness(rdv.rank, transportOf(rdv));
    const where = `NcclCommunicator.connect (rank ${rdv.rank}, cuda:${device})`;
    try {
      if (rdv.payload.byteLength !== UNIQUE_ID_BYTES) {
        throw new Error(`${where}: rank 0 sent a ${rdv.payload.byteLength}-byte payload, not a ${UNIQUE_ID_BYTES}-byte NCCL unique id; every rank must use NcclCommunicator`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const comm = await Promise.race([
        ops.init(device, rdv.payload, rdv.worldSize, rdv.rank).catch((err: unknown) => { throw new Error(`${where}: ${errorOf(err).message}`); }),
        liveness.failed.then((e) => { throw new Error(`${where}: ncclCommInitRank could not finish: ${e.message}`); }),
        new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${where}: ncclCommInitRank did not return within ${timeoutMs} ms; are all ${rdv.worldSize} ranks running, each on its own GPU?`)), timeoutMs); }),
      ]).finally(() => clearTimeout(timer));
      return new NcclCommunicator(rdv, comm, device, ops, liveness, info, timeoutMs, pollMs);
    } catch (err) {
      const e = errorOf(err);
      liveness.report(e);
      await liveness.close(false);
      throw e;
    }
  }

  /** In-place all-reduce of `tensors` in one NCCL group (`"mean"` is `ncclAvg`). */
  allReduce(tensors: readonly Tensor[], op: ReduceOp): Promise<void> {
    return this.collective(`allReduce(${op})`, tensors, () => {
      checkReduceOp(op, "NcclCommunicator.allReduce");
      const ncclOp: NcclReduceOp = op === "mean" ? "avg" : "sum";
      const items = buffersOf(tensors);
      return () => this.ops.group(() => {
        for (const b of items) this.ops.allReduce(this.device, this.comm, b.ptr, b.count, b.code, ncclOp);
      });
    });
  }

  /** In-place broadcast of rank `root`'s `tensors` in one NCCL group. */
  broadcast(tensors: readonly Tensor[], root: number): Promise<void> {
    return this.collective(`broadcast(root ${root})`, tensors, () => {
      checkRoot(root, this.worldSize, "NcclCommunicator.broadcast");
      const items = buffersOf(tensors);
      return () => this.ops.group(() => {
        for (const b of items) this.ops.broadcast(this.device, this.comm, b.ptr, b.count, b.code, root);
      });
    });
  }

  /** Resolves once every rank has called `barrier()`: a one-element all-reduce, then a wait for it. */
  barrier(): Promise<void> {
    return this.collective("barrier", [], () => () => {
      this.barrierBuffer ??= this.ops.scratch(this.device);
      this.ops.allReduce(this.device, this.comm, this.barrierBuffer.ptr, 1, 0, "sum");
    });
  }

  /** Resolves once the device's stream has run everything queued so far (the collectives included), with the same failure checks. */
  fence(): Promise<void> {
    return this.collective("fence", [], () => () => undefined);
  }

  /**
   * Waits for the pending collectives, then destroys the NCCL communicator (aborts it after a
   * failure) and closes the sockets, telling the other ranks this rank left in order.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.pending]);
    let error: Error | null = null;
    if (this.failure) this.abortOnce();
    else {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          this.ops.destroy(this.comm),
          new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`NcclCommunicator.close (rank ${this.rank}): ncclCommDestroy did not return within ${this.timeoutMs} ms`)), this.timeoutMs); }),
        ]);
      } catch (err) {
        error = errorOf(err);
      } finally {
        clearTimeout(timer);
      }
    }
    this.barrierBuffer?.release();
    this.barrierBuffer = null;
    await this.liveness.close(!this.failure && !error);
    if (error) throw error;
  }

  /**
   * Checks the tensors and queues the collective now (so that it is ordered with the kernels queued
   * before and after the call), then waits for the stream off the JS thread.
   */
  private collective(kind: string, tensors: readonly Tensor[], prepare: () => () => void): Promise<void> {
    const seq = ++this.seq;
    const what = `NcclCommunicator ${kind} #${seq} (rank ${this.rank})`;
    try {
      if (this.closed) throw new Error(`${what}: the communicator was closed`);
      if (this.failure) throw this.failure;
      this.checkTensors(tensors, what);
      const launch = prepare();
      try {
        launch();
      } catch (err) {
        throw this.fail(what, errorOf(err).message);
      }
    } catch (err) {
      return Promise.reject(errorOf(err));
    }
    const p = this.wait(what);
    this.pending.add(p);
    const drop = (): void => void this.pending.delete(p);
    p.then(drop, drop);
    return p;
  }

  private checkTensors(tensors: readonly Tensor[], what: string): void {
    for (const t of tensors) {
      const d = parseDevice(t.device);
      if (d.family !== "cuda") {
        throw new TypeError(`${what}: tensor #${t.id} is on ${t.device}; NcclCommunicator moves tensors on CUDA devices only (use TcpCommunicator for tensors on the CPU)`);
      }
      if ((d.index ?? 0) !== this.device) {
        throw new TypeError(`${what}: tensor #${t.id} is on ${t.device}, but this rank's communicator is on cuda:${this.device}; move it there first`);
      }
      if (!NCCL_DTYPES.includes(t.dtype)) throw new TypeError(`${what}: tensor #${t.id} is ${t.dtype}; NcclCommunicator reduces ${NCCL_DTYPES.join(", ")} tensors only (cast first)`);
      if (!t.isContiguous) throw new TypeError(`${what}: tensor #${t.id} [${t.shape.join(", ")}] is not contiguous; the collective works in place on its memory, so pass a contiguous tensor (t.contiguous())`);
    }
  }

  /**
   * Waits for the device's stream to pass the fence, checking NCCL's asynchronous error every
   * `pollMs`, the peers (at once, when the liveness channel reports), and the deadline.
   */
  private wait(what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + this.timeoutMs;
      let fenced: { error: Error | null } | null = null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let finished = false;
      const finish = (err?: Error): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        this.liveness.off(check);
        if (err) reject(err);
        else resolve();
      };
      const check = (): void => {
        if (finished) return;
        clearTimeout(timer);
        try {
          const asyncError = this.failure ? null : this.ops.asyncError(this.comm);
          if (asyncError) return finish(this.fail(what, asyncError));
          if (fenced) return finish(fenced.error ? this.fail(what, `waiting for the device's stream failed: ${fenced.error.message}`) : undefined);
          if (this.failure) return finish(this.failure);
          const peer = this.liveness.failure;
          if (peer) return finish(this.fail(what, peer.message, false));
          if (Date.now() >= deadline) {
            return finish(this.fail(what, `did not complete within ${this.timeoutMs} ms; a rank is stuck, gone, or did not call this collective (every rank must run the same collectives in the same order)`));
          }
          timer = setTimeout(check, Math.max(1, Math.min(this.pollMs, deadline - Date.now())));
        } catch (err) {
          finish(errorOf(err));
        }
      };
      this.liveness.on(check);
      this.ops.fence(this.device).then(
        () => { fenced = { error: null }; check(); },
        (err: unknown) => { fenced = { error: errorOf(err) }; check(); },
      );
      check();
    });
  }

  /** Records the failure of `what`, aborts NCCL, tells the other ranks (when it is ours), and returns the error. */
  private fail(what: string, message: string, ours = true): Error {
    if (this.failure) return this.failure;
    const err = new Error(`${what}: ${message}`);
    this.failure = err;
    this.abortOnce();
    if (ours) this.liveness.report(err);
    return err;
  }

  private abortOnce(): void {
    if (this.aborted) return;
    this.aborted = true;
    try {
      this.ops.abort(this.comm);
    } catch {
      // the failure being reported matters more than the abort's own error
    }
  }
}
