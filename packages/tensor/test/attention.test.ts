// The fused attention op against an f64 TS reference and against the unfused `attentionReference`:
// GQA head configs, odd lengths, masks (incl. fully masked rows), KV-cache shapes, gradients by
// finite differences, errors, and memory: nothing left behind, and saved state O(B·H·T), not O(T²).
import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";
import { gradcheck } from "../src/testing.js";
import { rnd } from "./ref.js";

interface Cfg {
  B: number;
  T: number;
  S?: number;
  Hq: number;
  Hkv: number;
  D: number;
  causal?: boolean;
  mask?: "none" | "ts" | "b1ts" | "padding" | "fullrows";
}

/** Dense [B, Hq, T, S] f64 mask values and the mask tensor's own shape and data. */
function makeMask(c: Cfg, S: number, seed: number): { shape: number[]; data: Float64Array; dense: Float64Array } | null {
  const kind = c.mask ?? "none";
  if (kind === "none") return null;
  const dense = new Float64Array(c.B * c.Hq * c.T * S);
  let shape: number[];
  let data: Float64Array;
  const at = (b: number, h: number, t: number, j: number) => ((b * c.Hq + h) * c.T + t) * S + j;
  if (kind === "ts") {
    shape = [c.T, S];
    data = rnd(c.T * S, seed, -2, 2);
    for (let i = 0; i < dense.length; i++) dense[i] = data[i % (c.T * S)]!;
  } else if (kind === "b1ts") {
    shape = [c.B, 1, c.T, S];
    data = rnd(c.B * c.T * S, seed, -2, 2);
    for (let b = 0; b < c.B; b++) for (let h = 0; h < c.Hq; h++) for (let t = 0; t < c.T; t++) for (let j = 0; j < S; j++) dense[at(b, h, t, j)] = data[(b * c.T + t) * S + j]!;
  } else if (kind === "padding") {
    // [B, 1, 1, S]: batch entry b has its last b + 1 keys padded out.
    shape = [c.B, 1, 1, S];
    data = new Float64Array(c.B * S);
    for (let b = 0; b < c.B; b++) for (let j = 0; j < S; j++) data[b * S + j] = j >= S - 1 - b ? -Infinity : 0;
    for (let b = 0; b < c.B; b++) for (let h = 0; h < c.Hq; h++) for (let t = 0; t < c.T; t++) for (let j = 0; j < S; j++) dense[at(b, h, t, j)] = data[b * S + j]!;
  } else {
    // [B, Hq, T, S] with every third query row fully masked.
    shape = [c.B, c.Hq, c.T, S];
    data = rnd(dense.length, seed, -1, 1);
    for (let i = 0; i < data.length; i++) if (Math.floor(i / S) % c.T % 3 === 0) data[i] = -Infinity;
    dense.set(data);
  }
  return { shape, data, dense };
}

/** Plain f64 attention: scores → softmax → weighted sum. */
function refAttention(c: Cfg, q: Float64Array, k: Float64Array, v: Float64Array, mask: Float64Array | null): Float64Array {
  const S = c.S ?? c.T;
  const G = c.Hq / c.Hkv;
  const scale = 1 / Math.sqrt(c.D);
  const out = new Float64Array(c.B * c.T * c.Hq * c.D);
  const s = new Float64Array(S);
  for (let b = 0; b < c.B; b++) {
    for (let h = 0; h < c.Hq; h++) {
      const g = Math.floor(h / G);
      for (let t = 0; t < c.T; t++) {
        let mx = -Infinity;
        for (let j = 0; j < S; j++) {
          let x = -Infinity;
          if (!(c.causal ?? true) || j <= S - c.T + t) {
            let dot = 0;
            for (let d = 0; d < c.D; d++) dot += q[((b * c.T + t) * c.Hq + h) * c.D + d]! * k[((b * S + j) * c.Hkv + g) * c.D + d]!;
            x = dot * scale + (mask ? mask[((b * c.Hq + h) * c.T + t) * S + j]! : 0);
          }
          s[j] = x;
          mx = Math.max(mx, x);
        }
        if (mx === -Infinity) continue; // every key masked: output 0
        let z = 0;
        for (let j = 0; j < S; j++) z += Math.exp(s[j]! - mx);
        for (let j = 0; j < S; j++) {
          const p = Math.exp(s[j]! - mx) / z;
          for (let d = 0; d < c.D; d++) out[((b * c.T + t) * c.Hq + h) * c.D + d]! += p * v[((b * S + j) * c.Hkv + g) * c.D + d]!;
        }
      }
    }
  }
  return out;
}

function inputs(c: Cfg, dtype: "f32" | "f64", seed = 1, requiresGrad = false) {
  const S = c.S ?? c.T;
  const qd = rnd(c.B * c.T * c.Hq * c.D, seed, -1, 1);
  const kd = rnd(c.B * S * c.Hkv * c.D, seed + 1, -1, 1);
  const vd = rnd(c.B * S * c.Hkv * c.D, seed + 2, -1, 1);
  const m = makeMask(c, S, seed + 3);
  const q = T.tensor(qd, [c.B, c.T, c.Hq, c.D], { dtype, requiresGrad });
  const k = T.tensor(kd, [c.B, S, c.Hkv, c.D], { dtype, requiresGrad });
  const v = T.tensor(vd, [c.B, S, c.Hkv, c.D], { dtype, requiresGrad });
  const mask = m ? T.tensor(m.data, m.shape, { dtype }) : null;
  // The reference sees exactly the values the op sees (rounded to f32 when dtype is f32).
  const round = (t: T.Tensor) => t.toFloat64Array();
  return { q, k, v, mask, ref: () => refAttention(c, round(q), round(k), round(v), m ? m.dense : null) };
}

function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let scale = 1;
  let m = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d;
  }
  return m / scale;
}

const name = (c: Cfg) => `B${c.B} T${c.T} S${c.S ?? c.T} Hq/Hkv ${c.Hq}/${c.Hkv} D${c.D}${c.causal === false ? " full" : ""}${c.mask ? ` mask=${c.mask}` : ""}`;

const forwardCases: Cfg[] = [
  { B: 1, T: 7, Hq: 4, Hkv: 2, D: 8 },
  { B: 2, T: 33, Hq: 6, Hkv: 2, D: 8 },
  { B: 1, T: 65, Hq: 8, Hkv: 8, D: 16 },
  { B: 2, T: 33, Hq: 4, Hkv: 4, D: 8, causal: false },
  { B: 1, T: 65, Hq: 8, Hkv: 4, D: 64 },
  { B: 2, T: 7, S: 40, Hq: 4, Hkv: 2, D: 8 }, // KV cache: 7 new queries over 40 positions
  { B: 1, T: 1, S: 65, Hq: 8, Hkv: 4, D: 16 }, // one decode step
  { B: 2, T: 33, Hq: 4, Hkv: 2, D: 8, mask: "ts" },
  { B: 2, T: 33, S: 37, Hq: 6, Hkv: 2, D: 8, mask: "b1ts" },
  { B: 3, T: 65, Hq: 4, Hkv: 2, D: 8, mask: "padding", causal: false },
  { B: 2, T: 7, S: 9, Hq: 4, Hkv: 2, D: 4, mask: "fullrows", causal: false },
];

describe("attention forward", () => {
  for (const c of forwardCases) {
    it(`${name(c)}: f32 and f64 match the f64 reference and attentionReference`, () => {
      T.tidy(() => {
        for (const dtype of ["f32", "f64"] as const) {
          const x = inputs(c, dtype);
          const want = x.ref();
          const out = T.attention(x.q, x.k, x.v, { mask: x.mask, causal: c.causal });
          const unfused = T.attentionReference(x.q, x.k, x.v, { mask: x.mask, causal: c.causal });
          expect(out.shape).toEqual([c.B, c.T, c.Hq, c.D]);
          expect(out.dtype).toBe(dtype);
          const tol = dtype === "f64" ? 1e-12 : 2e-6;
          expect(maxRel(out.toFloat64Array(), want)).toBeLessThan(tol);
          expect(maxRel(unfused.toFloat64Array(), want)).toBeLessThan(tol);
        }
      });
    });
  }

  it("non-contiguous q, k, v and mask views give the same result", () => {
    T.tidy(() => {
      const c: Cfg = { B: 2, T: 9, Hq: 4, Hkv: 2, D: 8, mask: "ts" };
      const x = inputs(c, "f32");
      // [B, H, T, D] buffers viewed as [B, T, H, D]; the mask stored transposed.
      const qv = T.permute(T.contiguous(T.permute(x.q, [0, 2, 1, 3])), [0, 2, 1, 3]);
      const kv = T.permute(T.contiguous(T.permute(x.k, [0, 2, 1, 3])), [0, 2, 1, 3]);
      const vv = T.permute(T.contiguous(T.permute(x.v, [0, 2, 1, 3])), [0, 2, 1, 3]);
      const mv = T.transpose(T.contiguous(T.transpose(x.mask!)));
      expect(qv.isContiguous || kv.isContiguous || vv.isContiguous || mv.isContiguous).toBe(false);
      const a = T.attention(x.q, x.k, x.v, { mask: x.mask }).toArray();
      const b = T.attention(qv, kv, vv, { mask: mv }).toArray();
      expect(b).toEqual(a);
    });
  });

  it("a NaN query gives NaN for its row as attentionReference does, and its gradient is NaN (f32 and f64)", () => {
    for (const dtype of ["f32", "f64"] as const) {
      T.tidy(() => {
        const c: Cfg = { B: 1, T: 70, Hq: 2, Hkv: 1, D: 4 };
        const x = inputs(c, dtype, 9, true);
        const qd = x.q.toFloat64Array();
        qd[(65 * 2 + 1) * 4 + 2] = NaN; // query t = 65, head 1
        const q = T.tensor(qd, x.q.shape, { dtype, requiresGrad: true });
        const out = T.attention(q, x.k, x.v);
        const ref = T.attentionReference(q, x.k, x.v).toFloat64Array();
        const o = out.toFloat64Array();
        T.backward(T.sum(out), {});
        const dq = q.grad!.toFloat64Array();
        for (let t = 0; t < c.T; t++) {
          for (let h = 0; h < 2; h++) {
            const i = (t * 2 + h) * 4;
            const poisoned = t === 65 && h === 1;
            expect(Number.isNaN(ref[i]!)).toBe(poisoned);
            expect(Number.isNaN(o[i]!)).toBe(poisoned);
            expect(Number.isNaN(dq[i]!)).toBe(poisoned);
          }
        }
        T.dispose([x.q, x.k, x.v, q]);
      });
    }
  });

  it("rows whose keys are all masked give 0, and the gradient there is 0, not NaN", () => {
    T.tidy(() => {
      const c: Cfg = { B: 2, T: 7, S: 9, Hq: 4, Hkv: 2, D: 4, mask: "fullrows", causal: false };
      const x = inputs(c, "f64", 5, true);
      const out = T.attention(x.q, x.k, x.v, { mask: x.mask, causal: false });
      T.backward(T.sum(T.mul(out, out)), {});
      const o = out.toFloat64Array();
      const dq = x.q.grad!.toFloat64Array();
      for (const g of [dq, x.k.grad!.toFloat64Array(), x.v.grad!.toFloat64Array()]) expect(g.every(Number.isFinite)).toBe(true);
      for (let b = 0; b < c.B; b++) {
        for (let t = 0; t < c.T; t += 3) {
          for (let h = 0; h < c.Hq; h++) {
            for (let d = 0; d < c.D; d++) {
              const i = ((b * c.T + t) * c.Hq + h) * c.D + d;
              expect(o[i]).toBe(0);
              expect(dq[i]).toBe(0);
            }
          }
        }
      }
      T.dispose([x.q, x.k, x.v]);
    });
  });

  it("scale and causal options", () => {
    T.tidy(() => {
      const x = inputs({ B: 1, T: 6, S: 8, Hq: 2, Hkv: 1, D: 4 }, "f64");
      for (const opts of [{ scale: 0.9 }, { scale: 2, causal: false }, { causal: false }]) {
        const a = T.attention(x.q, x.k, x.v, opts).toFloat64Array();
        const b = T.attentionReference(x.q, x.k, x.v, opts).toFloat64Array();
        expect(maxRel(a, b)).toBeLessThan(1e-12);
      }
    });
  });
});

describe("attention gradients", () => {
  const gradCases: Cfg[] = [
    { B: 1, T: 5, Hq: 4, Hkv: 2, D: 4 },
    { B: 2, T: 4, S: 7, Hq: 6, Hkv: 2, D: 3 },
    { B: 1, T: 6, Hq: 2, Hkv: 2, D: 4, mask: "ts", causal: false },
    { B: 2, T: 5, Hq: 4, Hkv: 1, D: 2, mask: "padding" },
    { B: 1, T: 5, S: 6, Hq: 2, Hkv: 2, D: 3, mask: "fullrows", causal: false },
  ];
  for (const c of gradCases) {
    it(`gradcheck through q, k and v: ${name(c)}`, () => {
      const x = inputs(c, "f64", 11, true);
      const before = T.memory().tensors;
      const r = gradcheck((q, k, v) => T.attention(q!, k!, v!, { mask: x.mask, causal: c.causal }), [x.q, x.k, x.v]);
      expect(r.checked).toBe(x.q.size + x.k.size + x.v.size);
      expect(r.worstRatio).toBeLessThanOrEqual(1);
      expect(T.memory().tensors).toBe(before);
      T.dispose([x.q, x.k, x.v, x.mask]);
    });
  }

  it("gradients match attentionReference's autograd (f32 and f64, GQA 8/4, T = 65, masked)", () => {
    for (const dtype of ["f32", "f64"] as const) {
      const c: Cfg = { B: 2, T: 65, S: 70, Hq: 8, Hkv: 4, D: 16, mask: "b1ts" };
      const grads = (fn: typeof T.attention) => {
        const x = inputs(c, dtype, 3, true);
        T.tidy(() => {
          const out = fn(x.q, x.k, x.v, { mask: x.mask });
          const w = T.randn(out.shape, { seed: 9, dtype });
          T.backward(T.sum(T.mul(out, w)));
        });
        const g = [x.q.grad!, x.k.grad!, x.v.grad!].map((t) => t.toFloat64Array());
        T.dispose([x.q, x.k, x.v, x.mask]);
        return g;
      };
      const fused = grads(T.attention);
      const unfused = grads(T.attentionReference);
      for (let i = 0; i < 3; i++) expect(maxRel(fused[i]!, unfused[i]!)).toBeLessThan(dtype === "f64" ? 1e-12 : 1e-5);
    }
  });

  it("only the inputs that require grad get one; the mask gets none", () => {
    const x = inputs({ B: 1, T: 5, Hq: 2, Hkv: 1, D: 4, mask: "ts" }, "f64");
    x.k.requiresGrad = true;
    x.mask!.requiresGrad = true;
    T.tidy(() => T.backward(T.sum(T.attention(x.q, x.k, x.v, { mask: x.mask }))));
    expect(x.q.grad).toBeNull();
    expect(x.v.grad).toBeNull();
    expect(x.mask!.grad).toBeNull();
    expect(x.k.grad!.shape).toEqual([1, 5, 1, 4]);
    T.dispose([x.q, x.k, x.v, x.mask]);
  });
});

describe("attention errors", () => {
  const t = (shape: number[], dtype: "f32" | "f64" = "f32") => T.zeros(shape, { dtype });
  const cases: [string, () => unknown, RegExp][] = [
    ["rank", () => T.attention(t([2, 3, 4]), t([2, 3, 2, 4]), t([2, 3, 2, 4])), /^attention: q must be \[B, T, Hq, D\] and k, v \[B, S, Hkv, D\] \(rank 4 each\) \(inputs: \[2,3,4\] f32, \[2,3,2,4\] f32, \[2,3,2,4\] f32\)/],
    ["k vs v", () => T.attention(t([1, 3, 2, 4]), t([1, 3, 2, 4]), t([1, 4, 2, 4])), /^attention: k \[1,3,2,4\] and v \[1,4,2,4\] must have the same shape/],
    ["batch", () => T.attention(t([1, 3, 2, 4]), t([2, 3, 2, 4]), t([2, 3, 2, 4])), /^attention: batch sizes differ: q has 1, k and v have 2/],
    ["head dim", () => T.attention(t([1, 3, 2, 4]), t([1, 3, 2, 5]), t([1, 3, 2, 5])), /^attention: head dims differ: q has D = 4, k and v have D = 5/],
    ["GQA", () => T.attention(t([1, 3, 6, 4]), t([1, 3, 4, 4]), t([1, 3, 4, 4])), /^attention: Hq = 6 query heads is not a multiple of Hkv = 4 kv heads/],
    ["causal S < T", () => T.attention(t([1, 5, 2, 4]), t([1, 3, 2, 4]), t([1, 3, 2, 4])), /^attention: causal attention needs S >= T .* got S = 3 < T = 5 \(inputs: \[1,5,2,4\] f32/],
    ["mask", () => T.attention(t([1, 3, 2, 4]), t([1, 3, 2, 4]), t([1, 3, 2, 4]), { mask: t([3, 4]) }), /^attention: mask \[3,4\] does not broadcast to \[B, Hq, T, S\] = \[1,2,3,3\]/],
    ["mask rank", () => T.attention(t([1, 3, 2, 4]), t([1, 3, 2, 4]), t([1, 3, 2, 4]), { mask: t([1, 1, 1, 3, 3]) }), /^attention: mask \[1,1,1,3,3\] does not broadcast/],
    ["dtype mix", () => T.attention(t([1, 3, 2, 4]), t([1, 3, 2, 4], "f64"), t([1, 3, 2, 4])), /^attention: inputs have different dtypes \(f32, f64, f32\)/],
    ["mask dtype", () => T.attention(t([1, 3, 2, 4]), t([1, 3, 2, 4]), t([1, 3, 2, 4]), { mask: t([3, 3], "f64") }), /^attention: inputs have different dtypes \(f32, f32, f32, f64\)/],
    ["scale", () => T.attention(t([1, 3, 2, 4]), t([1, 3, 2, 4]), t([1, 3, 2, 4]), { scale: NaN }), /^attention: scale must be a finite number/],
    ["reference too", () => T.attentionReference(t([1, 3, 6, 4]), t([1, 3, 4, 4]), t([1, 3, 4, 4])), /^attentionReference: Hq = 6/],
  ];
  for (const [what, fn, re] of cases) {
    it(what, () => {
      T.tidy(() => {
        let err: unknown;
        try {
          fn();
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(T.OpError);
        expect((err as Error).message).toMatch(re);
      });
    });
  }
});

describe("attention memory", () => {
  it("forward + backward inside tidy leave memory where it started", () => {
    const x = inputs({ B: 2, T: 65, Hq: 8, Hkv: 4, D: 16, mask: "b1ts" }, "f32", 1, true);
    const run = () =>
      T.tidy(() => {
        const out = T.attention(x.q, x.k, x.v, { mask: x.mask });
        T.backward(T.mean(T.square(out)));
        for (const p of [x.q, x.k, x.v]) p.zeroGrad();
      });
    run(); // kernel scratch held per thread by GEMM may be allocated by the first run
    const before = T.memory();
    run();
    const after = T.memory();
    expect(after.tensors).toBe(before.tensors);
    expect(after.storages).toBe(before.storages);
    expect(after.bytes).toBe(before.bytes);
    expect(after.nativeBytes).toBe(before.nativeBytes);
    T.dispose([x.q, x.k, x.v, x.mask]);
  });

  it("saved state is the output and lse [B, Hq, T]: O(B·H·T), not O(T²)", () => {
    const c: Cfg = { B: 2, T: 256, Hq: 4, Hkv: 4, D: 16 };
    const x = inputs(c, "f32", 1, true);
    const outBytes = c.B * c.T * c.Hq * c.D * 4;
    const lseBytes = c.B * c.Hq * c.T * 4;
    const scoreBytes = c.B * c.Hq * c.T * c.T * 4; // one [B, H, T, T] f32 matrix: 2 MiB here
    T.tidy(() => T.attention(x.q, x.k, x.v)); // warm up kernel scratch caches
    const before = T.memory();
    T.resetPeakMemory();
    const out = T.attention(x.q, x.k, x.v);
    const mid = T.memory();
    // Alive after the forward: the output and the node's lse, nothing else.
    expect(mid.bytes - before.bytes).toBe(outBytes + lseBytes);
    // Peak during the forward: output, lse and bounded per-thread scratch, far below one score matrix.
    expect(mid.nativePeakBytes - before.nativeBytes).toBeLessThan(outBytes + lseBytes + scoreBytes / 8);
    T.resetPeakMemory();
    T.tidy(() => T.backward(T.sum(out)));
    const grads = 3 * outBytes;
    expect(T.memory().nativePeakBytes - mid.nativeBytes).toBeLessThan(grads + outBytes + scoreBytes / 8);
    out.dispose();
    expect(T.memory().bytes).toBe(before.bytes + grads);
    // The unfused reference materialises several [B, H, T, T] tensors.
    T.resetPeakMemory();
    const base = T.memory().nativeBytes;
    T.dispose(T.tidy(() => T.attentionReference(x.q, x.k, x.v)));
    expect(T.memory().nativePeakBytes - base).toBeGreaterThan(2 * scoreBytes);
    T.dispose([x.q, x.k, x.v]);
  });

  it("without grad the lse is freed at once", () => {
    const x = inputs({ B: 1, T: 16, Hq: 2, Hkv: 2, D: 8 }, "f32");
    const before = T.memory();
    const out = T.noGrad(() => T.attention(x.q, x.k, x.v));
    expect(T.memory().bytes - before.bytes).toBe(out.size * 4);
    expect(T.memory().tensors).toBe(before.tensors + 1);
    out.dispose();
    T.dispose([x.q, x.k, x.v]);
  });
});
