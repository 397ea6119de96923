/**
 * `@modulora/example-kmeans`, the plugin author's example: each row of W gets its own 2^bits levels
 * by k-means (Lloyd's algorithm), in core's `custom` format. See docs/writing-a-quantizer.md.
 * @packageDocumentation
 */
import { checkQuantizeInputs, packRowsBytes, QUANTIZER_SPEC_VERSION, resolveQuantizerOptions, unpackRowByteCode, type CustomWeight, type QuantizeOptions, type QuantizerPlugin } from "@modulora/core";
import { keep, tensorFrom, type Tensor } from "@modulora/tensor";

/** Index of the level nearest to `v` (the first one on a tie). */
function nearest(levels: Float32Array | Float64Array, v: number): number {
  let best = 0;
  for (let c = 1; c < levels.length; c++) if (Math.abs(v - levels[c]!) < Math.abs(v - levels[best]!)) best = c;
  return best;
}

/**
 * k-means of one row into `k` levels: start at the row's quantiles (deterministic), then `iterations`
 * Lloyd steps (assign each weight to its nearest level; move each level to the mean of its weights,
 * a level with none stays). Writes the f32 levels, then each weight's code: its nearest stored level.
 */
export function kmeansRow(row: Float32Array, k: number, iterations: number, levels: Float32Array, codes: Uint8Array): void {
  const sorted = Float32Array.from(row).sort();
  const c64 = Float64Array.from({ length: k }, (_, c) => sorted[Math.floor(((c + 0.5) * row.length) / k)]!);
  for (let it = 0; it < iterations; it++) {
    const [sum, count] = [new Float64Array(k), new Uint32Array(k)];
    for (const v of row) {
      const c = nearest(c64, v);
      sum[c]! += v;
      count[c]!++;
    }
    for (let c = 0; c < k; c++) if (count[c]! > 0) c64[c] = sum[c]! / count[c]!;
  }
  levels.set(c64);
  row.forEach((v, i) => (codes[i] = nearest(levels, v)));
}

/**
 * A k-means weight in the `custom` format, materialized on the host from the two tensors it owns:
 * `codes` u8 [out, ⌈in·bits/8⌉] (each row bit-packed by packRowsBytes) and `levels` f32 [out, 2^bits].
 */
export class KmeansWeight implements CustomWeight {
  readonly format = "custom" as const;
  readonly plugin = "example-kmeans";
  constructor(readonly outFeatures: number, readonly inFeatures: number, readonly bits: number, readonly codes: Tensor, readonly levels: Tensor) {}
  materialize(rowStart: number, rowEnd: number, out: Float32Array): void {
    const { inFeatures: n, bits } = this;
    if (out.length < (rowEnd - rowStart) * n) throw new RangeError(`materialize: out holds ${out.length} values, rows [${rowStart}, ${rowEnd}) need ${(rowEnd - rowStart) * n}`);
    // Only the rows asked for are copied out (row slices are contiguous views; slice checks the range).
    const [cv, lv] = [this.codes.slice([rowStart], [rowEnd]), this.levels.slice([rowStart], [rowEnd])];
    const [codes, levels] = [cv.dataSync() as Uint8Array, lv.dataSync() as Float32Array];
    [cv, lv].forEach((t) => t.dispose());
    for (let j = 0; j < rowEnd - rowStart; j++) for (let i = 0; i < n; i++) out[j * n + i] = levels[(j << bits) + unpackRowByteCode(codes, cv.shape[1]!, j, i, bits)]!;
  }
  storageBytes = (): number => this.codes.size + 4 * this.levels.size;
  bitsPerWeight = (): number => (this.storageBytes() * 8) / (this.outFeatures * this.inFeatures);
  dispose = (): void => [this.codes, this.levels].forEach((t) => t.dispose());
}

/** Quantizes W [out, in] (f32, any device) with per-row k-means; the weight's tensors live on the host (cpu). */
export function quantizeKmeans(weight: Tensor, options: QuantizeOptions): KmeansWeight {
  const groupSize = checkQuantizeInputs(kmeansQuantizer, weight, options);
  const [out, n] = weight.shape as [number, number];
  if (groupSize !== n) throw new RangeError(`quantizer 'example-kmeans': group size ${JSON.stringify(options.groupSize)} is not supported: the levels are per row; use groupSize "row"`);
  if (options.symmetric) throw new RangeError("quantizer 'example-kmeans': k-means levels have no symmetric mode; leave symmetric unset");
  const { iterations } = resolveQuantizerOptions(kmeansQuantizer, options) as { iterations: number };
  const [bits, w] = [options.bits, weight.dataSync() as Float32Array];
  const [codes, levels] = [new Uint8Array(out * n), new Float32Array(out << bits)];
  for (let j = 0; j < out; j++) kmeansRow(w.subarray(j * n, (j + 1) * n), 1 << bits, iterations, levels.subarray(j << bits, (j + 1) << bits), codes.subarray(j * n, (j + 1) * n));
  const packed = keep(tensorFrom(packRowsBytes(codes, out, n, bits), { shape: [out, Math.ceil((n * bits) / 8)], dtype: "u8" }));
  return new KmeansWeight(out, n, bits, packed, keep(tensorFrom(levels, { shape: [out, 1 << bits], dtype: "f32" })));
}

/** The example-kmeans plugin (spec version 1): `registerQuantizer(kmeansQuantizer)`, or `modulora --plugin`. */
export const kmeansQuantizer: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "example-kmeans",
  description: "example plugin: per-row k-means levels (Lloyd iterations), custom format",
  calibration: "none",
  supportedBits: [2, 3, 4],
  defaultGroupSize: "row",
  supportedGroupSizes: ["row"],
  options: [{ name: "iterations", type: "int", default: 10, min: 1, help: "Lloyd iterations per row" }],
  quantize: (weight, options) => quantizeKmeans(weight, options),
  serialize: (qw) => ({ tensors: { codes: (qw as KmeansWeight).codes, levels: (qw as KmeansWeight).levels }, metadata: {} }),
  deserialize: (tensors, meta) => {
    const [out, n, bits] = [meta["outFeatures"], meta["inFeatures"], meta["bits"]] as number[];
    const [codes, levels] = [tensors["codes"], tensors["levels"]];
    const is = (t: Tensor | undefined, dtype: string, rows: number, cols: number) => t?.dtype === dtype && t.rank === 2 && t.shape[0] === rows && t.shape[1] === cols;
    const stride = Math.ceil((n! * bits!) / 8);
    if (![2, 3, 4].includes(bits!) || !is(codes, "u8", out!, stride) || !is(levels, "f32", out!, 1 << bits!)) throw new RangeError(`example-kmeans: a saved [${out}, ${n}] ${bits}-bit weight needs tensors codes u8 [${out}, ${stride}] and levels f32 [${out}, ${1 << bits!}]`);
    return new KmeansWeight(out!, n!, bits!, codes!, levels!);
  },
};

export default kmeansQuantizer;
