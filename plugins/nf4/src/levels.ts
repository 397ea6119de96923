// The two 4-bit level tables and the nearest-level rule shared by both.

/**
 * The 16 NormalFloat-4 levels of QLoRA (Dettmers et al., "QLoRA: Efficient Finetuning of
 * Quantized LLMs", arXiv 2305.14314, appendix E; the same f32 values as bitsandbytes' `nf4` code),
 * in code order (ascending): code q dequantizes to `absmax · NF4_LEVELS[q]`.
 *
 * By construction (QLoRA §3): 8 levels are quantiles Φ⁻¹(p) of N(0, 1) at
 * p = δ + i·(0.5 − δ)/8, i = 0…7, and 7 are −Φ⁻¹(p) at p = δ + i·(0.5 − δ)/7, i = 0…6, with
 * δ = 0.9677083 (bitsandbytes' `offset`, 1 − (1/30 + 1/32)/2 to 7 decimals: it keeps the outermost
 * quantile finite); all are divided by Φ⁻¹(δ), so ±1 are levels, and an exact 0 is added. Every
 * value is an f32.
 */
export const NF4_LEVELS: readonly number[] = Object.freeze([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/**
 * bitsandbytes' `fp4` code, in code order: the 4-bit float with 1 sign bit (bit 3), a 2-bit
 * exponent field e (bits 2–1) and 1 mantissa bit m (bit 0), whose magnitudes bitsandbytes lists
 * as 0, 0.0625, 8, 12, 4, 6, 2, 3 for bits 2–0 = 000…111 (e ≥ 1: 2^(4−e)·(1 + m/2); e = 0, m = 1:
 * the subnormal 2⁻⁴), then divides by the largest magnitude, 12, in f32 (`get_4bit_type("fp4")`).
 * Codes 8…15 are the negatives of 0…7; code 8 is −0, which the nearest-level rule never picks
 * (code 0 ties with it and wins).
 */
export const FP4_LEVELS: readonly number[] = Object.freeze(
  [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3].map((v) => Math.fround(v / 12)),
);

/** The level tables by name (the plugin's `table` option). */
export const LEVEL_TABLES = Object.freeze({ nf4: NF4_LEVELS, fp4: FP4_LEVELS });

/** A level table's name: `"nf4"` or `"fp4"`. */
export type LevelTableName = keyof typeof LEVEL_TABLES;

/**
 * A level table prepared for nearest-level search: its distinct values ascending (each with the
 * lowest code that has it), the midpoints between neighbours, and the code of the level 0.
 */
export interface LevelSearch {
  readonly values: Float64Array;
  readonly codes: Uint8Array;
  /** mids[k] = (values[k] + values[k + 1]) / 2, exact in f64 (sums of f32 values in [−1, 1]). */
  readonly mids: Float64Array;
  /** The lowest code whose level is 0 (what an all-zero block stores). */
  readonly zeroCode: number;
}

/** Prepares `levels` for {@link nearestLevelCode}. */
export function levelSearch(levels: readonly number[]): LevelSearch {
  const order = levels.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const values: number[] = [];
  const codes: number[] = [];
  for (const [v, i] of order) {
    // equal values (FP4's +0 and −0) keep the first, lowest code
    if (values.length && values[values.length - 1] === v) continue;
    values.push(v);
    codes.push(i);
  }
  const zero = levels.findIndex((v) => v === 0);
  if (zero < 0) throw new RangeError("level table: it must hold the level 0 (all-zero blocks store it)");
  return {
    values: Float64Array.from(values),
    codes: Uint8Array.from(codes),
    mids: Float64Array.from(values.slice(1), (v, k) => (values[k]! + v) / 2),
    zeroCode: zero,
  };
}

/**
 * The code of the level nearest to `x`. Ties (x exactly halfway between two levels) go to the
 * lower code. Binary search on the midpoints: 4 comparisons for 16 levels.
 */
export function nearestLevelCode(x: number, s: LevelSearch): number {
  const mids = s.mids;
  let lo = 0;
  let hi = mids.length;
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (mids[m]! < x) lo = m + 1;
    else hi = m;
  }
  // now mids[lo − 1] < x ≤ mids[lo]: values[lo] is nearest, or tied with values[lo + 1]
  if (lo < mids.length && x === mids[lo]) return Math.min(s.codes[lo]!, s.codes[lo + 1]!);
  return s.codes[lo]!;
}
