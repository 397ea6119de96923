// Keys and values of past positions, so that generating one more token costs one token's compute.
// Per layer, one preallocated buffer for K and one for V, [B, maxLength, Hkv, D] (keys already
// rotated by RoPE). Each forward writes its T new positions in place and attends over the views
// [B, length + T, Hkv, D]; nothing is copied for batch 1 (the view is contiguous), larger batches
// are packed by the attention kernel.
import { assign, keep, slice, Tensor, type Device, type DType } from "@modulora/tensor";
import type { LlamaConfig } from "./types.js";

/** Options of {@link KVCache}. */
export interface KVCacheOptions {
  /** Sequences decoded together (default 1). */
  batchSize?: number;
  /** Positions the cache holds; appending past it is an error. */
  maxLength: number;
  /** Storage dtype of the buffers: the dtype the model computes in (default f32; `model.dtype`). */
  dtype?: Extract<DType, "f32" | "f64" | "bf16">;
  /** Where the buffers live: the model's device (default `cpu`). */
  device?: Device;
}

/** The keys and values of one layer over every cached position. */
export interface KVCacheEntry {
  /** `[B, S, Hkv, D]` views on the cache (dispose them, or let a tidy do it). */
  keys: Tensor;
  values: Tensor;
}

/**
 * A key/value cache for {@link LlamaModel.forward}. Inference only: the cache is written in
 * place, so gradients do not flow through cached positions (a backward through a view the cache
 * has since overwritten fails, rather than returning a wrong gradient).
 */
export class KVCache {
  readonly batchSize: number;
  readonly maxLength: number;
  readonly numLayers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  private readonly keys: Tensor[];
  private readonly values: Tensor[];
  /** Positions stored per layer (they are equal between forwards). */
  private readonly lengths: number[];
  private disposed = false;

  constructor(config: Pick<LlamaConfig, "numLayers" | "numKvHeads" | "headDim">, options: KVCacheOptions) {
    const batchSize = options.batchSize ?? 1;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`KVCache: batchSize must be an integer ≥ 1, got ${batchSize}`);
    if (!Number.isInteger(options.maxLength) || options.maxLength < 1) throw new RangeError(`KVCache: maxLength must be an integer ≥ 1, got ${options.maxLength}`);
    this.batchSize = batchSize;
    this.maxLength = options.maxLength;
    this.numLayers = config.numLayers;
    this.kvHeads = config.numKvHeads;
    this.headDim = config.headDim;
    const shape = [batchSize, this.maxLength, this.kvHeads, this.headDim];
    const dtype = options.dtype ?? "f32";
    const device = options.device ?? "cpu";
    // keep(): the cache outlives the tidy scope it may be created in; dispose() frees it.
    // Uninitialized on purpose: a position is only ever read (through the views append returns)
    // after append wrote it.
    this.keys = Array.from({ length: this.numLayers }, () => keep(Tensor.empty(shape, dtype, device)));
    this.values = Array.from({ length: this.numLayers }, () => keep(Tensor.empty(shape, dtype, device)));
    this.lengths = new Array<number>(this.numLayers).fill(0);
  }

  /** Positions held by every layer: where the next forward's positions start. */
  get length(): number {
    return Math.min(...this.lengths);
  }

  /**
   * Writes `k`, `v` `[B, T, Hkv, D]` after the positions layer `layer` holds, and returns that
   * layer's keys and values over all its positions, `[B, length + T, Hkv, D]`.
   */
  append(layer: number, k: Tensor, v: Tensor): KVCacheEntry {
    this.assertAlive();
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.numLayers) throw new RangeError(`KVCache.append: layer ${layer} out of range [0, ${this.numLayers})`);
    const [b, t, h, d] = k.shape as [number, number, number, number];
    const expected = [this.batchSize, t, this.kvHeads, this.headDim];
    for (const [name, x] of [["k", k], ["v", v]] as const) {
      if (x.rank !== 4 || x.shape.some((n, i) => n !== expected[i])) {
        throw new RangeError(`KVCache.append: ${name} must be [B, T, Hkv, D] = [${expected}], got [${x.shape}]`);
      }
      if (x.requiresGrad) {
        throw new Error("KVCache.append: the keys/values require grad, but gradients do not flow through the cache; run cached forwards under noGrad()");
      }
    }
    const start = this.lengths[layer]!;
    const end = start + t;
    if (end > this.maxLength) throw new RangeError(`KVCache.append: layer ${layer} holds ${start} positions, ${t} more exceed maxLength ${this.maxLength}`);
    const kBuf = this.keys[layer]!;
    const vBuf = this.values[layer]!;
    // One sequence's positions start..end are contiguous in the buffer; assign writes contiguous views.
    for (let i = 0; i < b; i++) {
      for (const [buf, src] of [[kBuf, k], [vBuf, v]] as const) {
        const dst = slice(buf, [i, start, 0, 0], [i + 1, end, h, d]);
        const row = b === 1 ? src : slice(src, [i], [i + 1]);
        assign(dst, row);
        dst.dispose();
        if (row !== src) row.dispose();
      }
    }
    this.lengths[layer] = end;
    return { keys: slice(kBuf, [0, 0], [b, end]), values: slice(vBuf, [0, 0], [b, end]) };
  }

  /** Forgets every position (the buffers are kept for reuse). */
  reset(): void {
    this.assertAlive();
    this.lengths.fill(0);
  }

  /** Bytes held by the buffers. */
  storageBytes(): number {
    const per = this.keys[0] ? this.keys[0].size * ({ f64: 8, f32: 4, bf16: 2 } as Record<string, number>)[this.keys[0].dtype]! : 0;
    return 2 * this.numLayers * per;
  }

  /** Frees the buffers. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }

  private assertAlive(): void {
    if (this.disposed) throw new Error("KVCache: used after dispose()");
  }
}
