/**
 * Calibration data for {@link quantizeModel}: the sources (ready-made windows of token ids, or a
 * text and a tokenizer), sampling windows from a text as GPTQ does, and encoding a long text in
 * pieces.
 * @module
 */
import { philox4x32, seedToKey } from "@modulora/tensor";

/** The tokenizer a text calibration source needs: text → ids without special tokens. */
export interface CalibrationTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[] | Int32Array;
}

/**
 * Calibration data: ready-made windows of token ids (all of one length), or a text to sample
 * `samples` windows of `seqLen` tokens from (see {@link sampleCalibrationWindows}).
 */
export type CalibrationSource =
  | { ids: readonly (readonly number[])[] }
  | { text: string; tokenizer: CalibrationTokenizer; samples?: number; seqLen?: number; seed?: number };

/**
 * Samples `samples` windows of `seqLen` consecutive tokens from `ids`, as GPTQ samples its
 * calibration set: window k starts at ⌊u_k · (n − seqLen + 1)⌋, where u_k ∈ [0, 1) is a 53-bit
 * uniform from Philox4x32-10 with key `seed` and counter (k, 0, 0, 0); windows are independent
 * (they may overlap, and repeat). Needs at least `seqLen` tokens.
 */
export function sampleCalibrationWindows(ids: ArrayLike<number>, samples: number, seqLen: number, seed = 0): number[][] {
  if (!Number.isInteger(samples) || samples < 1) throw new RangeError(`calibration: samples must be a positive integer, got ${samples}`);
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new RangeError(`calibration: seqLen must be a positive integer, got ${seqLen}`);
  const n = ids.length;
  if (n < seqLen) throw new RangeError(`calibration: the text has ${n} tokens, fewer than one window of seqLen = ${seqLen}`);
  const [k0, k1] = seedToKey(seed);
  const block = new Uint32Array(4);
  const windows: number[][] = [];
  for (let k = 0; k < samples; k++) {
    philox4x32(k, 0, 0, 0, k0, k1, block);
    const u = (block[0]! * 2 ** 21 + (block[1]! >>> 11)) / 2 ** 53;
    const start = Math.floor(u * (n - seqLen + 1));
    windows.push(Array.from({ length: seqLen }, (_, i) => ids[start + i]!));
  }
  return windows;
}

/** The calibration windows of a source, checked. */
export function calibrationWindows(source: CalibrationSource): number[][] {
  if ("ids" in source) {
    const w = source.ids;
    if (!Array.isArray(w) || w.length === 0) throw new RangeError("calibration: ids must be a non-empty list of windows");
    const len = w[0]!.length;
    if (len < 1) throw new RangeError("calibration: windows must not be empty");
    w.forEach((win, i) => {
      if (win.length !== len) throw new RangeError(`calibration: all windows must have the same length; window 0 has ${len} tokens, window ${i} has ${win.length}`);
    });
    return w.map((win) => Array.from(win));
  }
  if (typeof source.text !== "string" || !source.tokenizer) throw new TypeError("calibration: give { ids } or { text, tokenizer }");
  const ids = encodeInChunks(source.tokenizer, source.text);
  return sampleCalibrationWindows(ids, source.samples ?? 128, source.seqLen ?? 512, source.seed ?? 0);
}

/**
 * Encodes a long text piece by piece, cut after newlines about every `chunk` characters, and joins
 * the ids. The tokenizer's cost grows faster than linearly with the length of one string (42 s
 * for 2 MB of small-llama text in one piece, 6.4 s in 4 kB pieces), and for calibration windows a token boundary
 * forced at a line end changes nothing that matters.
 */
export function encodeInChunks(tokenizer: CalibrationTokenizer, text: string, chunk = 4096): number[] {
  const ids: number[] = [];
  let start = 0;
  while (start < text.length) {
    let end = Math.min(text.length, start + chunk);
    if (end < text.length) {
      const nl = text.indexOf("\n", end);
      end = nl < 0 ? text.length : nl + 1;
    }
    for (const id of tokenizer.encode(text.slice(start, end), { addSpecialTokens: false })) ids.push(id);
    start = end;
  }
  return ids;
}
