// The data-parallel side of the Trainer (`@modulora/core`'s TrainerDataParallel, matched
// structurally): gradients averaged in DDP-style buckets whose all-reduce starts during the
// backward of a step's last micro-batch, as soon as the bucket's gradients are final, strictly in
// bucket order (so that every rank issues the same collectives in the same order, even where a
// rank's graph leaves a gradient out).
import { keep, noGrad, zerosLike, type Tensor } from "@modulora/tensor";
import { GradientBucketer, type BucketOptions } from "./buckets.js";
import type { Communicator } from "./communicator.js";

/** Options of {@link dataParallel}. */
export type DataParallelOptions = BucketOptions;

/**
 * One rank's data-parallel group for the Trainer (`new Trainer({ ..., dataParallel })`): averages
 * the gradients over `communicator`'s ranks, bucket by bucket, overlapped with the backward.
 */
export class DataParallel {
  /** The group the gradients are averaged over. */
  readonly communicator: Communicator;
  private readonly options: DataParallelOptions;
  private bucketer: GradientBucketer | null = null;
  private bucketOf: number[] = [];
  private params: readonly Tensor[] = [];
  private missing: number[] = [];
  private launched = 0;
  private inflight: Promise<void>[] = [];
  private active = false;
  /** Buckets whose all-reduce started during the backward, over the whole run (the rest started after it). */
  overlappedBuckets = 0;
  /** Buckets reduced over the whole run. */
  reducedBuckets = 0;

  constructor(communicator: Communicator, options: DataParallelOptions = {}) {
    this.communicator = communicator;
    this.options = options;
  }

  /** This process's rank. */
  get rank(): number {
    return this.communicator.rank;
  }

  /** Number of ranks. */
  get worldSize(): number {
    return this.communicator.worldSize;
  }

  /** The bucket plan (built on the first step from the parameters' sizes and dtypes). */
  get buckets(): GradientBucketer["buckets"] {
    return this.bucketer?.buckets ?? [];
  }

  /** Starts a step's gradient sync (the Trainer calls it before the backward of the step's last micro-batch). */
  beginStep(params: readonly Tensor[]): void {
    if (this.active) throw new Error("DataParallel.beginStep: the previous step's gradients were not finished (finishGradients was not awaited)");
    if (!this.bucketer || params.length !== this.params.length || params.some((p, i) => p !== this.params[i])) {
      this.bucketer = new GradientBucketer(params, this.options);
      this.bucketOf = new Array<number>(params.length);
      this.bucketer.buckets.forEach((b, k) => b.indices.forEach((i) => (this.bucketOf[i] = k)));
    }
    this.params = params;
    this.missing = this.bucketer.buckets.map((b) => b.indices.length);
    this.launched = 0;
    this.inflight = [];
    this.active = true;
  }

  /** Parameter `index`'s gradient is final for this step: its bucket starts once complete and every earlier bucket has started. */
  gradientReady(index: number): void {
    if (!this.active) return;
    const k = this.bucketOf[index];
    if (k === undefined) return;
    this.missing[k]!--;
    this.launchReady(true);
  }

  /** Every gradient averaged over the ranks, in place: starts the buckets not started yet (zero-filling gradients the backward did not reach), then waits for all. */
  async finishGradients(): Promise<void> {
    if (!this.active) throw new Error("DataParallel.finishGradients: no step was begun (call beginStep first)");
    try {
      noGrad(() => {
        for (const p of this.params) if (!p.grad) p.grad = keep(zerosLike(p));
      });
      this.missing.fill(0);
      this.launchReady(false);
      await Promise.all(this.inflight);
    } finally {
      this.active = false;
      this.inflight = [];
    }
  }

  private launchReady(duringBackward: boolean): void {
    const buckets = this.bucketer!.buckets;
    const grads = this.params.map((p) => p.grad!);
    while (this.launched < buckets.length && this.missing[this.launched] === 0) {
      const k = this.launched++;
      const done = this.bucketer!.reduceBucket(this.communicator, grads, k);
      // A rejection is reported by finishGradients' Promise.all; until then it must not count as unhandled.
      done.catch(() => {});
      this.inflight.push(done);
      this.reducedBuckets++;
      if (duringBackward) this.overlappedBuckets++;
    }
  }

  /** Element-wise sum over the ranks, in place. */
  allReduceSum(tensors: readonly Tensor[]): Promise<void> {
    return this.communicator.allReduce(tensors, "sum");
  }

  /** Rank `root`'s tensors into every rank's, in place. */
  broadcast(tensors: readonly Tensor[], root: number): Promise<void> {
    return this.communicator.broadcast(tensors, root);
  }
}

/** A {@link DataParallel} over `communicator`, for the Trainer's `dataParallel` option. */
export function dataParallel(communicator: Communicator, options: DataParallelOptions = {}): DataParallel {
  return new DataParallel(communicator, options);
}
