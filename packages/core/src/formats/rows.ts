import type { QuantizedWeightBase } from "./types.js";

/** Checks `materialize`'s row range [rowStart, rowEnd) against `w` and that `out` can hold those rows. */
export function checkRows(w: QuantizedWeightBase, rowStart: number, rowEnd: number, out: Float32Array): void {
  const rows = w.outFeatures;
  if (!(Number.isInteger(rowStart) && Number.isInteger(rowEnd) && rowStart >= 0 && rowStart <= rowEnd && rowEnd <= rows)) {
    throw new RangeError(`materialize: rows [${rowStart}, ${rowEnd}) are outside [0, ${rows})`);
  }
  if (out.length < (rowEnd - rowStart) * w.inFeatures) throw new RangeError(`materialize: out holds ${out.length} values, needs ${(rowEnd - rowStart) * w.inFeatures}`);
}
