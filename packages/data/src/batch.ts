// Batching: padded [B, T] batches, grouped by length, in a seeded order that is a pure function of
// (seed, epoch), so a trainer can resume at an exact (epoch, index) position.
import { IGNORE_INDEX, type Example } from "./encode.js";
import { Rng, shuffleInPlace } from "./random.js";

/** Options of {@link BatchSource} and {@link batches}. */
export interface BatchOptions {
  /** Examples per batch. */
  batchSize: number;
  /** The id padding positions get (labels there are −100): see `padIdOf(tokenizer)`. */
  padId: number;
  /** Seed of the shuffles (default 0). Epoch e uses stream e of this seed. */
  seed?: number;
  /** Shuffle examples and batch order each epoch (default true). */
  shuffle?: boolean;
  /**
   * Group examples of similar length (default true): the (shuffled) examples are cut into buckets
   * of `bucketBatches × batchSize`, each bucket is sorted by length (longest first, ties in bucket
   * order), cut into batches, and then the batch order is shuffled. Less padding, still random.
   */
  byLength?: boolean;
  /** Batches per length bucket (default 50). */
  bucketBatches?: number;
  /** Drop the last, smaller batch of an epoch (default false). */
  dropLast?: boolean;
}

/** A position in the batch stream: batch `index` of `epoch` (both from 0). */
export interface BatchPosition {
  epoch: number;
  index: number;
}

/** One padded batch (right padding). */
export interface Batch {
  /** `[B, T]` row-major token ids, padding = `padId`. */
  inputIds: Int32Array;
  /** `[B, T]` labels, −100 on prompt tokens and padding. */
  labels: Int32Array;
  /** B. */
  batchSize: number;
  /** T: the longest example of the batch. */
  seqLen: number;
  /** `[B]` unpadded lengths. */
  lengths: Int32Array;
  /** Real (non-padding) tokens: the sum of `lengths`. */
  tokens: number;
  /** Labels the shifted loss scores: positions t ≥ 1 whose label is not −100. */
  labelTokens: number;
  /** Which examples, in row order. */
  indices: number[];
  /** Where this batch is. */
  position: BatchPosition;
  /** Where the next batch is: resume from here to continue after this batch. */
  next: BatchPosition;
}

/** The part of an {@link Example} batching reads. */
export type ExampleTokens = Pick<Example, "inputIds" | "labels">;

/**
 * Pads `examples[indices]` into one `[B, T]` batch, T the longest of them.
 * @throws RangeError for an empty example or one whose labels and ids differ in length.
 */
export function collate(examples: readonly ExampleTokens[], indices: readonly number[], padId: number): Omit<Batch, "position" | "next"> {
  const rows = indices.map((i) => {
    const ex = examples[i];
    if (!ex) throw new RangeError(`collate: no example ${i}`);
    if (ex.inputIds.length === 0 || ex.inputIds.length !== ex.labels.length) {
      throw new RangeError(`collate: example ${i} has ${ex.inputIds.length} ids and ${ex.labels.length} labels (need equal, ≥ 1)`);
    }
    return ex;
  });
  const b = rows.length;
  const t = Math.max(...rows.map((r) => r.inputIds.length));
  const inputIds = new Int32Array(b * t).fill(padId);
  const labels = new Int32Array(b * t).fill(IGNORE_INDEX);
  const lengths = new Int32Array(b);
  let tokens = 0;
  let labelTokens = 0;
  rows.forEach((r, row) => {
    inputIds.set(r.inputIds, row * t);
    labels.set(r.labels, row * t);
    lengths[row] = r.inputIds.length;
    tokens += r.inputIds.length;
    for (let j = 1; j < r.labels.length; j++) if (r.labels[j] !== IGNORE_INDEX) labelTokens++;
  });
  return { inputIds, labels, batchSize: b, seqLen: t, lengths, tokens, labelTokens, indices: [...indices] };
}

/**
 * The batches of a dataset, epoch by epoch. It has the shape of core's `DataSource` (`length`,
 * `epoch(epoch, startIndex)`), so a Trainer can use it directly.
 */
export class BatchSource {
  /** Batches per epoch. */
  readonly length: number;
  private readonly examples: readonly ExampleTokens[];
  private readonly options: Required<BatchOptions>;
  private cached: { epoch: number; plan: number[][] } | null = null;

  constructor(examples: readonly ExampleTokens[], options: BatchOptions) {
    const o: Required<BatchOptions> = { seed: 0, shuffle: true, byLength: true, bucketBatches: 50, dropLast: false, ...options };
    for (const [name, v] of [["batchSize", o.batchSize], ["bucketBatches", o.bucketBatches]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`batches: ${name} must be an integer ≥ 1, got ${v}`);
    }
    if (!Number.isInteger(o.padId) || o.padId < 0) throw new RangeError(`batches: padId must be a non-negative integer, got ${o.padId}`);
    if (!Number.isSafeInteger(o.seed) || o.seed < 0) throw new RangeError(`batches: seed must be a non-negative safe integer, got ${o.seed}`);
    if (examples.length === 0) throw new RangeError("batches: no examples");
    this.examples = examples;
    this.options = o;
    this.length = o.dropLast ? Math.floor(examples.length / o.batchSize) : Math.ceil(examples.length / o.batchSize);
    if (this.length === 0) throw new RangeError(`batches: ${examples.length} examples make no full batch of ${o.batchSize} (dropLast)`);
  }

  /** The example indices of each batch of `epoch`: a pure function of (examples' lengths, options, epoch). */
  plan(epoch: number): number[][] {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new RangeError(`batches: epoch must be a non-negative integer, got ${epoch}`);
    if (this.cached?.epoch === epoch) return this.cached.plan;
    const { batchSize, shuffle, byLength, bucketBatches, seed } = this.options;
    const rng = new Rng(seed, epoch);
    const order = Array.from({ length: this.examples.length }, (_, i) => i);
    if (shuffle) shuffleInPlace(order, rng);
    if (byLength) {
      const bucket = bucketBatches * batchSize;
      const len = (i: number) => this.examples[i]!.inputIds.length;
      for (let at = 0; at < order.length; at += bucket) {
        const sorted = order.slice(at, at + bucket).sort((x, y) => len(y) - len(x)); // stable: ties keep bucket order
        order.splice(at, sorted.length, ...sorted);
      }
    }
    let plan: number[][] = [];
    for (let i = 0; i < this.length; i++) plan.push(order.slice(i * batchSize, (i + 1) * batchSize));
    if (shuffle) plan = shuffleInPlace(plan, rng);
    this.cached = { epoch, plan };
    return plan;
  }

  /** Batch `index` of `epoch`. */
  batch(position: BatchPosition): Batch {
    const plan = this.plan(position.epoch);
    const indices = plan[position.index];
    if (!Number.isInteger(position.index) || indices === undefined) throw new RangeError(`batches: index ${position.index} is outside epoch ${position.epoch} (0..${this.length - 1})`);
    const next = position.index + 1 < this.length ? { epoch: position.epoch, index: position.index + 1 } : { epoch: position.epoch + 1, index: 0 };
    return { ...collate(this.examples, indices, this.options.padId), position: { epoch: position.epoch, index: position.index }, next };
  }

  /** The batches of `epoch` from `startIndex` on. */
  *epoch(epoch: number, startIndex = 0): Generator<Batch> {
    if (!Number.isInteger(startIndex) || startIndex < 0 || startIndex > this.length) throw new RangeError(`batches: startIndex must be in 0..${this.length}, got ${startIndex}`);
    for (let i = startIndex; i < this.length; i++) yield this.batch({ epoch, index: i });
  }

  /** Batches from `start` (default the beginning) up to the end of epoch `epochs − 1` (default: forever). */
  *from(start: BatchPosition = { epoch: 0, index: 0 }, epochs = Infinity): Generator<Batch> {
    for (let e = start.epoch; e < epochs; e++) yield* this.epoch(e, e === start.epoch ? start.index : 0);
  }
}

/**
 * Padded batches of `examples`: from `start` (default `{epoch: 0, index: 0}`) to the end of epoch
 * `epochs − 1` (default 1 epoch). Resuming at a batch's `next` position yields exactly the batches
 * that followed it.
 */
export function batches(examples: readonly ExampleTokens[], options: BatchOptions & { start?: BatchPosition; epochs?: number }): Generator<Batch> {
  const { start, epochs, ...rest } = options;
  return new BatchSource(examples, rest).from(start, epochs ?? 1);
}
