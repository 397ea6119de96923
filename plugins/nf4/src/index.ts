/**
 * `@modulora/quantizer-nf4`: QLoRA's NormalFloat-4 (and bitsandbytes' FP4) block quantizer,
 * producing core's `codebook` format.
 *
 * Per block of `groupSize` consecutive weights of a row (default 64):
 * `absmax = max |w|` over the block, `x = f32(w / absmax)`, and the code is the index of the
 * level of the table ({@link NF4_LEVELS} or {@link FP4_LEVELS}) nearest to x; a tie (x exactly
 * halfway between two levels) goes to the lower code. An all-zero block has absmax 0 and stores
 * the code of the level 0, so it dequantizes to exactly 0. `ŵ = absmax · level[code]`.
 *
 * The codes are chosen against the block's exact absmax (as QLoRA does). With double
 * quantization (on by default) the absmax values themselves are stored in 8 bits, one f32 scale
 * and offset per 256 blocks (core's `createCodebookWeight({ doubleQuant: true })`), so a block is
 * dequantized with the reconstructed absmax.
 * @packageDocumentation
 */
import {
  checkQuantizeInputs, createCodebookWeight, resolveQuantizerOptions, QUANTIZER_SPEC_VERSION,
  type CodebookWeight, type QuantizeOptions, type QuantizerPlugin,
} from "@modulora/core";
import type { Tensor } from "@modulora/tensor";
import { LEVEL_TABLES, levelSearch, nearestLevelCode, type LevelSearch, type LevelTableName } from "./levels.js";

export { NF4_LEVELS, FP4_LEVELS, LEVEL_TABLES, levelSearch, nearestLevelCode, type LevelSearch, type LevelTableName } from "./levels.js";

/** The options of {@link quantizeNf4} beyond bits and group size, after defaults. */
export interface Nf4Options {
  /** The level table: `"nf4"` (default) or `"fp4"`. */
  table: LevelTableName;
  /** Store the per-block absmax in 8 bits per block plus an f32 scale and offset per 256 blocks (default true). */
  doubleQuant: boolean;
}

const searches: Record<LevelTableName, LevelSearch> = {
  nf4: levelSearch(LEVEL_TABLES.nf4),
  fp4: levelSearch(LEVEL_TABLES.fp4),
};

/**
 * The codes and per-block absmax of W (f32 [out, in] as a host array) for `table`: the plain
 * rule of the module comment, before packing. `codes` is [out · in], `absmax` [out · in / blockSize].
 */
export function nf4Codes(w: Float32Array, out: number, inF: number, blockSize: number, table: LevelTableName): { codes: Uint8Array; absmax: Float32Array } {
  const s = searches[table];
  const codes = new Uint8Array(out * inF);
  const absmax = new Float32Array((out * inF) / blockSize);
  // Blocks never cross a row (blockSize divides in), so block b covers [b · blockSize, (b + 1) · blockSize).
  for (let b = 0; b < absmax.length; b++) {
    const a = b * blockSize;
    const e = a + blockSize;
    let m = 0;
    for (let i = a; i < e; i++) m = Math.max(m, Math.abs(w[i]!));
    absmax[b] = m;
    if (m === 0) {
      codes.fill(s.zeroCode, a, e);
      continue;
    }
    for (let i = a; i < e; i++) codes[i] = nearestLevelCode(Math.fround(w[i]! / m), s);
  }
  return { codes, absmax };
}

/**
 * Quantizes W [out, in] (f32, on any device) to a 4-bit `codebook` weight on the same device:
 * NF4 (or FP4 with `table: "fp4"`) levels per block of `groupSize` weights of a row, with the
 * block absmax double-quantized unless `doubleQuant: false`. The weight is read once.
 * Throws a RangeError naming the option on bad options (bits other than 4, a group size that
 * does not divide `in`, an unknown table, a non-boolean doubleQuant, `symmetric: true`).
 */
export function quantizeNf4(weight: Tensor, options: QuantizeOptions): CodebookWeight {
  const blockSize = checkQuantizeInputs(nf4Quantizer, weight, options);
  const own = resolveQuantizerOptions(nf4Quantizer, options) as unknown as Nf4Options;
  if (options.symmetric === true) {
    throw new RangeError(`quantizer 'nf4': symmetric = true has no meaning here (the levels are a fixed table scaled by each block's absmax); leave symmetric out`);
  }
  const [out, inF] = weight.shape as [number, number];
  // One copy out of the weight (from whatever device it is on); the codes are computed on the
  // host and the packed tensors uploaded to the weight's device.
  const w = weight.dataSync() as Float32Array;
  const { codes, absmax } = nf4Codes(w, out, inF, blockSize, own.table);
  return createCodebookWeight({
    outFeatures: out, inFeatures: inF, bits: 4, blockSize, codes, absmax,
    levels: Float32Array.from(LEVEL_TABLES[own.table]), doubleQuant: own.doubleQuant, device: weight.device,
  });
}

/** The NF4 plugin (spec version 1). Register it with `registerQuantizer(nf4Quantizer)`. */
export const nf4Quantizer: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "nf4",
  description: "QLoRA NormalFloat-4 (or bitsandbytes FP4) levels per absmax block, double-quantized absmax, codebook format",
  calibration: "none",
  supportedBits: [4],
  defaultGroupSize: 64,
  supportsSymmetric: false,
  options: [
    { name: "table", type: "string", choices: ["nf4", "fp4"], default: "nf4", help: "level table: QLoRA's NormalFloat-4 (nf4) or bitsandbytes' 4-bit float (fp4)" },
    { name: "doubleQuant", type: "boolean", default: true, help: "store each block's absmax in 8 bits (f32 scale and offset per 256 blocks) instead of f32" },
  ],
  quantize: (weight, options) => quantizeNf4(weight, options),
};
