// Which examples of each global batch a rank reads. Every rank walks the same seeded order as one
// process would; the global batch of B examples is cut into worldSize contiguous shares of
// B / worldSize, and rank r takes share r. Averaging the ranks' mean-loss gradients then equals
// the gradient of the mean loss over the whole batch, as on one process.

/** The half-open range `[start, end)` of a global batch of `n` examples that `rank` reads. */
export interface ShardRange {
  /** First index of this rank's share. */
  start: number;
  /** One past the last index. */
  end: number;
}

/**
 * Rank `rank`'s contiguous share of `n` examples: `[rank·n/worldSize, (rank+1)·n/worldSize)`.
 *
 * @throws RangeError when `n` is not divisible by `worldSize`: unequal shares would weigh the
 * ranks' examples unequally in the averaged gradient; pick a global batch that is a multiple of
 * the world size (or drop the last, short batch).
 */
export function shardIndices(n: number, rank: number, worldSize: number): ShardRange {
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`shardIndices: worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new RangeError(`shardIndices: rank must be an integer in [0, ${worldSize - 1}], got ${rank}`);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`shardIndices: the batch size must be a non-negative integer, got ${n}`);
  if (n % worldSize !== 0) {
    throw new RangeError(`shardIndices: a global batch of ${n} examples does not split evenly over ${worldSize} ranks; use a global batch size that is a multiple of ${worldSize} (e.g. ${Math.max(worldSize, n - (n % worldSize))}), or drop the last short batch`);
  }
  const per = n / worldSize;
  return { start: rank * per, end: (rank + 1) * per };
}

/** Rank `rank`'s contiguous share of one global batch (see {@link shardIndices} for the rule and its error). */
export function shardBatch<T>(examples: readonly T[], rank: number, worldSize: number): T[] {
  const { start, end } = shardIndices(examples.length, rank, worldSize);
  return examples.slice(start, end);
}
