// Gradient averaging in buckets, as PyTorch DDP does it: the gradients are grouped into flat
// buffers of at most `bucketBytes`, filled in reverse parameter order (the order the backward
// produces them, so that a bucket can be all-reduced as soon as its last gradient is ready), each
// bucket is all-reduced with "mean", and the result is written back into the gradients.
import { assign, concat, dtypeInfo, keep, noGrad, reshape, slice, tidy, type DType, type Tensor } from "@modulora/tensor";
import type { Communicator } from "./communicator.js";

/** Options of {@link GradientBucketer} and {@link averageGradients}. */
export interface BucketOptions {
  /** Most bytes in one bucket (default 25 MiB, DDP's `bucket_cap_mb`). A gradient larger than this gets a bucket of its own. */
  bucketBytes?: number;
}

/** One bucket: which gradients (indices in parameter order) it holds, in the order they are packed. */
export interface Bucket {
  /** Indices into the gradient list, in packing order (descending: reverse parameter order). */
  readonly indices: readonly number[];
  /** The dtype every gradient of the bucket has. */
  readonly dtype: DType;
  /** Elements in the bucket. */
  readonly size: number;
  /** Bytes in the bucket. */
  readonly bytes: number;
}

const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

/**
 * A fixed bucket plan for a list of gradients (their sizes and dtypes, in parameter order), and the
 * averaging that uses it. The plan walks the gradients from the last to the first and starts a new
 * bucket when the next one would pass `bucketBytes` or has another dtype. Build it once per model;
 * every rank builds the same plan from the same parameters.
 */
export class GradientBucketer {
  /** The buckets, in all-reduce order (the first holds the last parameters). */
  readonly buckets: readonly Bucket[];
  private readonly shapes: readonly (readonly number[])[];

  constructor(grads: readonly Tensor[], options: BucketOptions = {}) {
    const cap = options.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    if (!Number.isInteger(cap) || cap < 1) throw new RangeError(`GradientBucketer: bucketBytes must be a positive integer, got ${cap}`);
    grads.forEach((g, i) => {
      if (!g || typeof g !== "object" || !("dtype" in g)) throw new TypeError(`GradientBucketer: gradient ${i} is ${g === null ? "null" : typeof g}; every parameter needs a gradient on every rank (zero-fill unused ones)`);
    });
    this.shapes = grads.map((g) => [...g.shape]);
    const buckets: Bucket[] = [];
    let cur: { indices: number[]; dtype: DType; size: number; bytes: number } | null = null;
    for (let i = grads.length - 1; i >= 0; i--) {
      const g = grads[i]!;
      const bytes = g.size * dtypeInfo(g.dtype).size;
      if (cur && (cur.dtype !== g.dtype || cur.bytes + bytes > cap)) { buckets.push(cur); cur = null; }
      cur ??= { indices: [], dtype: g.dtype, size: 0, bytes: 0 };
      cur.indices.push(i);
      cur.size += g.size;
      cur.bytes += bytes;
    }
    if (cur) buckets.push(cur);
    this.buckets = buckets;
  }

  /**
   * All-reduces `grads` (the same list, shapes and dtypes the plan was built from) with "mean",
   * bucket by bucket, and writes the averages back into them, in place.
   */
  async average(comm: Communicator, grads: readonly Tensor[]): Promise<void> {
    if (grads.length !== this.shapes.length) throw new Error(`GradientBucketer.average: the plan has ${this.shapes.length} gradients, got ${grads.length}`);
    grads.forEach((g, i) => {
      const s = this.shapes[i]!;
      if (!g || g.shape.length !== s.length || g.shape.some((d, k) => d !== s[k])) {
        throw new Error(`GradientBucketer.average: gradient ${i} has shape [${g?.shape.join(", ")}], the plan [${s.join(", ")}]; build a new bucketer when the parameters change`);
      }
    });
    for (let k = 0; k < this.buckets.length; k++) await this.reduceBucket(comm, grads, k);
  }

  /**
   * All-reduces bucket `k` alone: packs its gradients into one flat tensor (at call time, so that
   * the gradients may be reused as soon as this returns its promise), averages it over the ranks
   * and writes the averages back. Every rank must reduce the buckets in the same order.
   */
  reduceBucket(comm: Communicator, grads: readonly Tensor[], k: number): Promise<void> {
    const b = this.buckets[k];
    if (!b) throw new RangeError(`GradientBucketer.reduceBucket: bucket ${k} does not exist (the plan has ${this.buckets.length})`);
    // [bucket.size]: the bucket's gradients flattened and packed in plan order.
    const flat = noGrad(() => keep(tidy(() => concat(b.indices.map((i) => reshape(grads[i]!, [-1])), 0))));
    const unpack = (): void => {
      noGrad(() => tidy(() => {
        let off = 0;
        for (const i of b.indices) {
          const g = grads[i]!;
          assign(g, reshape(slice(flat, [off], [off + g.size]), g.shape));
          off += g.size;
        }
      }));
    };
    return comm.allReduce([flat], "mean").then(unpack).finally(() => flat.dispose());
  }
}

/**
 * Averages `grads` over the ranks of `comm`, in place, through a one-off {@link GradientBucketer}
 * (build one and call {@link GradientBucketer.average} to reuse the plan across steps).
 */
export async function averageGradients(comm: Communicator, grads: readonly Tensor[], options: BucketOptions = {}): Promise<void> {
  await new GradientBucketer(grads, options).average(comm, grads);
}
