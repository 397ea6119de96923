// Plain float64 references for the conformance suite: loops over Float64Array, written
// independently of the engine's kernels (no tensor, no native call). Each takes row-major data
// and shapes and returns row-major data.

import { bitsToNumber16 } from "../dtype.js";

export { bitsToNumber16 };

/** Row-major f64 data. */
export type F64 = Float64Array;

/** Number of elements of `shape`. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of `shape`. */
export function rowStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

/** The index tuple of flat index `i` in `shape`. */
export function unravelIndex(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d]!;
    i = Math.floor(i / shape[d]!);
  }
  return idx;
}

/** NumPy broadcast of two shapes (throws when they do not broadcast). */
export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`reference: shapes [${a}] and [${b}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Flat index into `shape` of the broadcast output index `idx`. */
function broadcastOffset(shape: readonly number[], idx: readonly number[]): number {
  const off = idx.length - shape.length;
  const st = rowStrides(shape);
  let flat = 0;
  for (let d = 0; d < shape.length; d++) flat += (shape[d] === 1 ? 0 : idx[off + d]!) * st[d]!;
  return flat;
}

/** `x` broadcast to `shape`. */
export function broadcastRef(x: F64, xs: readonly number[], shape: readonly number[]): F64 {
  const out = new Float64Array(numel(shape));
  for (let i = 0; i < out.length; i++) out[i] = x[broadcastOffset(xs, unravelIndex(i, shape))]!;
  return out;
}

/** Element-wise `f(a, b)` with broadcasting. */
export function binaryRef(f: (x: number, y: number) => number, a: F64, as: readonly number[], b: F64, bs: readonly number[]): F64 {
  const shape = broadcastShape(as, bs);
  const out = new Float64Array(numel(shape));
  for (let i = 0; i < out.length; i++) {
    const idx = unravelIndex(i, shape);
    out[i] = f(a[broadcastOffset(as, idx)]!, b[broadcastOffset(bs, idx)]!);
  }
  return out;
}

/** Sums `g` (of `shape`) down to `target` (the backward of broadcasting). */
export function sumToRef(g: F64, shape: readonly number[], target: readonly number[]): F64 {
  const out = new Float64Array(numel(target));
  for (let i = 0; i < g.length; i++) out[broadcastOffset(target, unravelIndex(i, shape))]! += g[i]!;
  return out;
}

/** Reduction of `x` over `axes` (sorted, non-negative); the result is row-major over the kept axes. */
export function reduceRef(op: "sum" | "max" | "min", x: F64, shape: readonly number[], axes: readonly number[]): F64 {
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const out = new Float64Array(numel(kept)).fill(op === "sum" ? 0 : op === "max" ? -Infinity : Infinity);
  const ks = rowStrides(kept);
  for (let i = 0; i < x.length; i++) {
    const idx = unravelIndex(i, shape);
    let o = 0;
    for (let d = 0; d < idx.length; d++) if (!axes.includes(d)) o += idx[d]! * ks[d]!;
    const v = x[i]!;
    out[o] = op === "sum" ? out[o]! + v : op === "max" ? Math.max(out[o]!, v) : Math.min(out[o]!, v);
  }
  return out;
}

/** Batched `op(a)·op(b)` with broadcast batch dimensions. */
export function matmulRef(a: F64, as: readonly number[], b: F64, bs: readonly number[], transA: boolean, transB: boolean): { data: F64; shape: number[] } {
  const [ar, ac] = as.slice(-2) as [number, number];
  const [br, bc] = bs.slice(-2) as [number, number];
  const m = transA ? ac : ar;
  const k = transA ? ar : ac;
  const n = transB ? br : bc;
  const aBatch = as.slice(0, -2);
  const bBatch = bs.slice(0, -2);
  const batch = broadcastShape(aBatch, bBatch);
  const nb = numel(batch);
  const out = new Float64Array(nb * m * n);
  for (let bi = 0; bi < nb; bi++) {
    const idx = unravelIndex(bi, batch);
    const ao = broadcastOffset(aBatch, idx) * ar * ac;
    const bo = broadcastOffset(bBatch, idx) * br * bc;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = transA ? a[ao + p * ac + i]! : a[ao + i * ac + p]!;
          const bv = transB ? b[bo + j * bc + p]! : b[bo + p * bc + j]!;
          s += av * bv;
        }
        out[bi * m * n + i * n + j] = s;
      }
    }
  }
  return { data: out, shape: [...batch, m, n] };
}

/** `x` with its dimensions reordered by `perm`. */
export function permuteRef(x: F64, shape: readonly number[], perm: readonly number[]): F64 {
  const outShape = perm.map((p) => shape[p]!);
  const st = rowStrides(shape);
  const out = new Float64Array(x.length);
  for (let i = 0; i < out.length; i++) {
    const idx = unravelIndex(i, outShape);
    let src = 0;
    for (let d = 0; d < idx.length; d++) src += idx[d]! * st[perm[d]!]!;
    out[i] = x[src]!;
  }
  return out;
}

/** `x[starts:ends]` per axis. */
export function sliceRef(x: F64, shape: readonly number[], starts: readonly number[], ends: readonly number[]): F64 {
  const outShape = starts.map((s, i) => ends[i]! - s);
  const st = rowStrides(shape);
  const out = new Float64Array(numel(outShape));
  for (let i = 0; i < out.length; i++) {
    const idx = unravelIndex(i, outShape);
    let src = 0;
    for (let d = 0; d < idx.length; d++) src += (idx[d]! + starts[d]!) * st[d]!;
    out[i] = x[src]!;
  }
  return out;
}

/** Softmax (or log-softmax) along `axis`. */
export function softmaxRef(x: F64, shape: readonly number[], axis: number, log: boolean): F64 {
  const n = shape[axis]!;
  const inner = numel(shape.slice(axis + 1));
  const outer = numel(shape.slice(0, axis));
  const y = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let r = 0; r < inner; r++) {
      const base = o * n * inner + r;
      let m = -Infinity;
      for (let j = 0; j < n; j++) m = Math.max(m, x[base + j * inner]!);
      let s = 0;
      for (let j = 0; j < n; j++) s += Math.exp(x[base + j * inner]! - m);
      const lse = m + Math.log(s);
      for (let j = 0; j < n; j++) y[base + j * inner] = log ? x[base + j * inner]! - lse : Math.exp(x[base + j * inner]! - lse);
    }
  }
  return y;
}

/** LLaMA RMSNorm over the last axis: `x / sqrt(mean(x²) + eps) · w`. */
export function rmsnormRef(x: F64, w: F64, eps: number): F64 {
  const d = w.length;
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[r * d + j]! ** 2;
    const rstd = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) y[r * d + j] = x[r * d + j]! * rstd * w[j]!;
  }
  return y;
}

/** Rotate-half RoPE of `x` [B, T, H, D] at `positions` ([T] or [B, T]) with inverse frequencies `invFreq` [D/2]. */
export function ropeRef(x: F64, shape: readonly number[], positions: F64, invFreq: readonly number[]): F64 {
  const [B, T, H, D] = shape as [number, number, number, number];
  const half = D / 2;
  const y = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const pos = positions.length === T ? positions[t]! : positions[b * T + t]!;
      for (let h = 0; h < H; h++) {
        const o = ((b * T + t) * H + h) * D;
        for (let i = 0; i < half; i++) {
          const a = pos * invFreq[i]!;
          const c = Math.cos(a);
          const s = Math.sin(a);
          const x1 = x[o + i]!;
          const x2 = x[o + i + half]!;
          y[o + i] = x1 * c - x2 * s;
          y[o + i + half] = x2 * c + x1 * s;
        }
      }
    }
  }
  return y;
}

/** Inverse frequencies `theta^(−2i/D)`, optionally with Llama 3.1 scaling. */
export function ropeInvFreqRef(D: number, theta: number, llama3?: { factor: number; low: number; high: number; orig: number }): number[] {
  const inv: number[] = [];
  for (let i = 0; i < D / 2; i++) {
    const f = Math.pow(theta, (-2 * i) / D);
    if (!llama3) {
      inv.push(f);
      continue;
    }
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < llama3.orig / llama3.high) inv.push(f);
    else if (wavelen > llama3.orig / llama3.low) inv.push(f / llama3.factor);
    else {
      const smooth = (llama3.orig / wavelen - llama3.low) / (llama3.high - llama3.low);
      inv.push((1 - smooth) * (f / llama3.factor) + smooth * f);
    }
  }
  return inv;
}

/** Options of {@link attentionRef}. */
export interface AttentionRefOptions {
  causal: boolean;
  scale: number;
  /** Additive mask broadcastable to [B, Hq, T, S], with its shape. */
  mask?: { data: F64; shape: readonly number[] };
}

/**
 * Scaled dot-product attention. q [B, T, Hq, D], k and v [B, S, Hkv, D]; query head h reads kv
 * head ⌊h / (Hq/Hkv)⌋; query t sits at position S − T + t. A row with every key hidden gives 0.
 */
export function attentionRef(q: F64, k: F64, v: F64, qs: readonly number[], ks: readonly number[], o: AttentionRefOptions): F64 {
  const [B, T, Hq, D] = qs as [number, number, number, number];
  const [, S, Hkv] = ks as [number, number, number, number];
  const G = Hq / Hkv;
  const out = new Float64Array(B * T * Hq * D);
  const scores = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / G);
      for (let t = 0; t < T; t++) {
        let m = -Infinity;
        for (let j = 0; j < S; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[((b * T + t) * Hq + h) * D + d]! * k[((b * S + j) * Hkv + g) * D + d]!;
          s *= o.scale;
          if (o.mask) s += o.mask.data[broadcastOffset(o.mask.shape, [b, h, t, j])]!;
          if (o.causal && j > S - T + t) s = -Infinity;
          scores[j] = s;
          m = Math.max(m, s);
        }
        if (m === -Infinity) continue; // every key hidden: output 0
        let den = 0;
        for (let j = 0; j < S; j++) den += (scores[j] = Math.exp(scores[j]! - m));
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < S; j++) acc += scores[j]! * v[((b * S + j) * Hkv + g) * D + d]!;
          out[((b * T + t) * Hq + h) * D + d] = acc / den;
        }
      }
    }
  }
  return out;
}

/** Per-row softmax cross-entropy losses (0 for ignored rows) of logits [N, V]. */
export function crossEntropyRowsRef(logits: F64, targets: F64, V: number, ignoreIndex: number): F64 {
  const n = targets.length;
  const rows = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    const y = targets[r]!;
    if (y === ignoreIndex) continue;
    let m = -Infinity;
    for (let j = 0; j < V; j++) m = Math.max(m, logits[r * V + j]!);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(logits[r * V + j]! - m);
    rows[r] = m + Math.log(s) - logits[r * V + y]!;
  }
  return rows;
}

/** Nearest bf16 value (round to nearest even) of `x`, as a number. */
export function roundBf16(x: number): number {
  return bitsToNumber16(bf16Bits(x), "bf16");
}

/** bf16 bits of `x` (round to nearest even; NaN stays NaN). */
export function bf16Bits(x: number): number {
  const f = new Float32Array([x]); // bf16 rounds the f32 value; Math.fround first is exact enough here
  const u = new Uint32Array(f.buffer)[0]!;
  if (Number.isNaN(x)) return 0x7fc0;
  const lsb = (u >>> 16) & 1;
  return ((u + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** f16 bits of `x` (IEEE binary16, round to nearest even, overflow to ±Infinity). */
export function f16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // rounds past the largest finite f16 (65504)
  if (a < 2 ** -14) {
    // subnormal: units of 2^-24, round half to even
    const q = a / 2 ** -24;
    let r = Math.round(q);
    if (Math.abs(q - Math.trunc(q) - 0.5) === 0 && r % 2 === 1) r -= 1;
    return sign | r;
  }
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  const q = (a / 2 ** e - 1) * 1024;
  let mant = Math.floor(q);
  const rem = q - mant;
  if (rem > 0.5 || (rem === 0.5 && mant % 2 === 1)) mant += 1;
  if (mant === 1024) {
    mant = 0;
    e += 1;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | mant;
}


/**
 * Gradients of `Σ attentionRef(q, k, v) ⊙ dOut` with respect to q, k and v: per row, with
 * p = softmax(s), dv_j += p_j·dO, dp_j = dO·v_j, ds_j = p_j·(dp_j − Σ_i p_i·dp_i),
 * dq += scale·Σ_j ds_j·k_j, dk_j += scale·ds_j·q. Rows with every key hidden contribute nothing.
 */
export function attentionGradRef(q: F64, k: F64, v: F64, qs: readonly number[], ks: readonly number[], o: AttentionRefOptions, dOut: F64): [F64, F64, F64] {
  const [B, T, Hq, D] = qs as [number, number, number, number];
  const [, S, Hkv] = ks as [number, number, number, number];
  const G = Hq / Hkv;
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const p = new Float64Array(S);
  const dp = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / G);
      for (let t = 0; t < T; t++) {
        const qo = ((b * T + t) * Hq + h) * D;
        let m = -Infinity;
        for (let j = 0; j < S; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qo + d]! * k[((b * S + j) * Hkv + g) * D + d]!;
          s *= o.scale;
          if (o.mask) s += o.mask.data[broadcastOffset(o.mask.shape, [b, h, t, j])]!;
          if (o.causal && j > S - T + t) s = -Infinity;
          p[j] = s;
          m = Math.max(m, s);
        }
        if (m === -Infinity) continue;
        let den = 0;
        for (let j = 0; j < S; j++) den += (p[j] = Math.exp(p[j]! - m));
        let pdp = 0;
        for (let j = 0; j < S; j++) {
          p[j] = p[j]! / den;
          const vo = ((b * S + j) * Hkv + g) * D;
          let acc = 0;
          for (let d = 0; d < D; d++) {
            acc += dOut[qo + d]! * v[vo + d]!;
            dv[vo + d]! += p[j]! * dOut[qo + d]!;
          }
          dp[j] = acc;
          pdp += p[j]! * acc;
        }
        for (let j = 0; j < S; j++) {
          const ds = p[j]! * (dp[j]! - pdp) * o.scale;
          if (ds === 0) continue;
          const ko = ((b * S + j) * Hkv + g) * D;
          for (let d = 0; d < D; d++) {
            dq[qo + d]! += ds * k[ko + d]!;
            dk[ko + d]! += ds * q[qo + d]!;
          }
        }
      }
    }
  }
  return [dq, dk, dv];
}
