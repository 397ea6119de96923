// crossEntropy (fused) against a plain f64 reference and against crossEntropyReference; softmax,
// logSoftmax and embedding; gradient checks; the memory bound of the fused forward.
import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";
import { assertClose, gradcheck } from "../src/testing.js";
import { rnd, size } from "./ref.js";

type Reduction = "mean" | "sum" | "none";
const REDUCTIONS: Reduction[] = ["mean", "sum", "none"];

// --- references (plain f64) ----------------------------------------------------------------------

function ceRef(x: ArrayLike<number>, v: number, t: ArrayLike<number>, ignore = -100) {
  const n = t.length;
  const rows = new Float64Array(n);
  const grad = new Float64Array(n * v); // d(sum of rows)/dx
  let count = 0;
  for (let r = 0; r < n; r++) {
    if (t[r] === ignore) continue;
    count++;
    let m = -Infinity;
    for (let j = 0; j < v; j++) m = Math.max(m, x[r * v + j]!);
    let s = 0;
    for (let j = 0; j < v; j++) s += Math.exp(x[r * v + j]! - m);
    const lse = m + Math.log(s);
    rows[r] = lse - x[r * v + t[r]!]!;
    for (let j = 0; j < v; j++) grad[r * v + j] = Math.exp(x[r * v + j]! - lse) - (j === t[r] ? 1 : 0);
  }
  const total = rows.reduce((a, b) => a + b, 0);
  return { rows, grad, count, sum: total, mean: count ? total / count : 0 };
}

function softmaxRef(x: ArrayLike<number>, shape: number[], axis: number, log: boolean): Float64Array {
  const outer = size(shape.slice(0, axis)), n = shape[axis]!, inner = size(shape.slice(axis + 1));
  const y = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < inner; c++) {
      const at = (i: number) => (o * n + i) * inner + c;
      let m = -Infinity;
      for (let i = 0; i < n; i++) m = Math.max(m, x[at(i)]!);
      let s = 0;
      for (let i = 0; i < n; i++) s += Math.exp(x[at(i)]! - m);
      for (let i = 0; i < n; i++) y[at(i)] = log ? x[at(i)]! - m - Math.log(s) : Math.exp(x[at(i)]! - m) / s;
    }
  }
  return y;
}

function targetsFor(n: number, v: number, seed: number, ignore = -100, ignoreEvery = 0): Int32Array {
  return Int32Array.from(rnd(n, seed, 0, v), (u, i) => (ignoreEvery && i % ignoreEvery === 1 ? ignore : Math.min(v - 1, Math.floor(u))));
}

function logitsFor(n: number, v: number, seed: number, dtype: "f32" | "f64", requiresGrad = false): T.Tensor {
  return T.tensor(rnd(n * v, seed, -4, 4), [n, v], { dtype, requiresGrad });
}

/** Expects `fn` to throw an OpError naming `op` whose message matches `pattern`. */
function expectOpError(fn: () => unknown, op: string, pattern: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${op} to throw`).toBeInstanceOf(T.OpError);
  expect((err as T.OpError).op).toBe(op);
  expect((err as Error).message).toMatch(new RegExp(`^${op}: `));
  expect((err as Error).message).toMatch(pattern);
}

function checkGrad(fn: (...xs: T.Tensor[]) => T.Tensor, inputs: T.Tensor[], opts?: Parameters<typeof gradcheck>[2]): void {
  const before = T.memory().tensors;
  const r = gradcheck(fn, inputs, opts);
  expect(r.checked).toBeGreaterThan(0);
  expect(T.memory().tensors).toBe(before);
  T.dispose(inputs);
}

// --- crossEntropy: values -------------------------------------------------------------------------

describe("crossEntropy forward and backward", () => {
  const cases: [number, number][] = [[6, 5], [5, 4096], [3, 32000]];
  for (const dtype of ["f32", "f64"] as const) {
    const tol = dtype === "f32" ? 2e-5 : 1e-12;
    for (const [n, v] of cases) {
      it(`${dtype} [${n}, ${v}]: every reduction matches the f64 reference and crossEntropyReference`, () => {
        const before = T.memory();
        T.tidy(() => {
          const x = logitsFor(n, v, n + v, dtype, true);
          const t = targetsFor(n, v, 7, -100, 3);
          const targets = T.tensor(t);
          const ref = ceRef(x.toFloat64Array(), v, t);
          for (const reduction of REDUCTIONS) {
            const fused = T.crossEntropy(x, targets, { reduction });
            const plain = T.crossEntropyReference(x, targets, { reduction });
            const expected = reduction === "none" ? ref.rows : [reduction === "sum" ? ref.sum : ref.mean];
            expect(fused.shape).toEqual(reduction === "none" ? [n] : []);
            assertClose(fused.toFloat64Array(), expected, tol, tol, `${reduction} loss`);
            assertClose(plain.toFloat64Array(), expected, tol * 10, tol * 10, `${reduction} reference loss`);
            // gradients: weights w per row (none) or a scalar (sum, mean)
            const w = reduction === "none" ? T.tensor(rnd(n, 3), [n], { dtype }) : T.full([], 0.75, { dtype });
            T.backward(fused, { grad: w });
            const gFused = x.grad!.toFloat64Array();
            x.zeroGrad();
            T.backward(plain, { grad: w });
            const gPlain = x.grad!.toFloat64Array();
            x.zeroGrad();
            const wv = w.toFloat64Array();
            const expectedGrad = ref.grad.map((g, i) => {
              const r = Math.floor(i / v);
              return reduction === "none" ? g * wv[r]! : reduction === "sum" ? g * wv[0]! : (g * wv[0]!) / ref.count;
            });
            assertClose(gFused, expectedGrad, tol, tol, `${reduction} dlogits`);
            assertClose(gPlain, expectedGrad, tol * 10, tol * 10, `${reduction} reference dlogits`);
          }
        });
        const after = T.memory();
        expect(after.tensors).toBe(before.tensors);
        expect(after.bytes).toBe(before.bytes);
      });
    }
  }

  it("takes [B, T, V] logits with [B, T] or flat [N] targets, and reads a sliced view without copying", () => {
    const before = T.memory().tensors;
    T.tidy(() => {
      const b = 2, s = 5, v = 11;
      const full = T.tensor(rnd(b * (s + 1) * v, 4, -3, 3), [b, s + 1, v], { dtype: "f64" });
      const logits = T.slice(full, [0, 0, 0], [b, s, v]); // [2, 5, 11], not contiguous
      expect(logits.isContiguous).toBe(false);
      const ids = T.tensor(targetsFor(b * (s + 1), v, 5), [b, s + 1]);
      const targets = T.slice(ids, [0, 1], [b, s + 1]); // shifted labels, not contiguous
      const dense = T.contiguous(logits);
      const flatTargets = T.tensor(T.contiguous(targets).dataSync() as Int32Array);
      const ref = ceRef(dense.toFloat64Array(), v, flatTargets.dataSync() as Int32Array);
      const none = T.crossEntropy(logits, targets, { reduction: "none" });
      expect(none.shape).toEqual([b, s]);
      assertClose(none.toFloat64Array(), ref.rows, 1e-12, 1e-12, "none");
      assertClose([T.crossEntropy(logits, flatTargets).item()], [ref.mean], 1e-12, 1e-12, "mean, flat targets");
      expect(T.crossEntropy(dense, targets, { reduction: "none" }).shape).toEqual([b, s]);
      expect(T.crossEntropy(dense, flatTargets, { reduction: "none" }).shape).toEqual([b * s]);
    });
    expect(T.memory().tensors).toBe(before);
  });

  it("ignoreIndex: default -100 and custom values; ignored rows give 0 and no gradient, and are not read", () => {
    T.tidy(() => {
      const n = 8, v = 6;
      for (const ignore of [-100, 2, -1]) {
        const x = logitsFor(n, v, 8, "f64", true);
        const t = targetsFor(n, v, 9, ignore, 3);
        const ref = ceRef(x.toFloat64Array(), v, t, ignore);
        expect(ref.count).toBeLessThan(n);
        const opts = ignore === -100 ? {} : { ignoreIndex: ignore };
        const none = T.crossEntropy(x, T.tensor(t), { ...opts, reduction: "none" });
        assertClose(none.toFloat64Array(), ref.rows, 1e-12, 1e-12, `none, ignoreIndex ${ignore}`);
        for (let r = 0; r < n; r++) if (t[r] === ignore) expect(none.toArray()[r]).toBe(0);
        const mean = T.crossEntropy(x, T.tensor(t), opts);
        assertClose([mean.item()], [ref.mean], 1e-12, 1e-12, "mean");
        T.backward(mean);
        const g = x.grad!.toFloat64Array();
        for (let r = 0; r < n; r++) if (t[r] === ignore) expect(Array.from(g.subarray(r * v, (r + 1) * v))).toEqual(new Array(v).fill(0));
        assertClose(g, ref.grad.map((d) => d / ref.count), 1e-12, 1e-12, "mean dlogits");
      }
      // NaN logits in an ignored row do not reach the fused loss.
      const x = T.tensor([NaN, NaN, NaN, 1, 2, 3], [2, 3]);
      expect(T.crossEntropy(x, T.tensor(new Int32Array([-100, 2]))).item()).toBeCloseTo(ceRef([1, 2, 3], 3, [2]).mean, 6);
    });
  });

  it("all rows ignored: the mean is 0 (not NaN, unlike PyTorch) and so are the gradients", () => {
    T.tidy(() => {
      const x = logitsFor(4, 7, 10, "f32", true);
      const t = T.tensor(new Int32Array(4).fill(-100));
      for (const reduction of REDUCTIONS) {
        const loss = T.crossEntropy(x, t, { reduction });
        expect(Array.from(loss.toFloat64Array())).toEqual(reduction === "none" ? [0, 0, 0, 0] : [0]);
        T.backward(reduction === "none" ? T.sum(loss) : loss);
        expect(Array.from(x.grad!.toFloat64Array()).every((g) => g === 0)).toBe(true);
        x.zeroGrad();
      }
      expect(T.crossEntropyReference(x, t).item()).toBe(0);
    });
  });

  it("huge logits stay finite", () => {
    T.tidy(() => {
      const x = T.tensor([1e4, -1e4, 0, 3e4, -1e4, -1e4, 2e4, 2e4], [2, 4], { requiresGrad: true });
      const loss = T.crossEntropy(x, T.tensor(new Int32Array([3, 1])), { reduction: "none" });
      const v = loss.toArray();
      expect(v[0]).toBeCloseTo(0, 5);
      expect(v[1]).toBeCloseTo(2e4 + 1e4 + Math.log(2), 0);
      T.backward(T.sum(loss));
      expect(x.grad!.toArray().every(Number.isFinite)).toBe(true);
    });
  });
});

// --- crossEntropy: gradients and errors ---------------------------------------------------------------

describe("crossEntropy gradcheck (f64)", () => {
  for (const reduction of REDUCTIONS) {
    it(`through the logits, reduction ${reduction}, with ignored rows`, () => {
      const x = logitsFor(5, 7, 11, "f64", true);
      const t = T.tensor(targetsFor(5, 7, 12, -100, 3));
      checkGrad((l) => T.crossEntropy(l!, t, { reduction }), [x]);
      t.dispose();
    });
  }
  it("through a sliced [B, T, V] view, and the reference through the same", () => {
    const x = T.tensor(rnd(2 * 4 * 9, 13, -2, 2), [2, 4, 9], { dtype: "f64", requiresGrad: true });
    const t = T.tensor(targetsFor(6, 9, 14), [2, 3]);
    checkGrad((l) => T.crossEntropy(T.slice(l!, [0, 1, 0], [2, 4, 9]), t, { reduction: "sum" }), [x]);
    const y = T.tensor(rnd(6 * 9, 15, -2, 2), [6, 9], { dtype: "f64", requiresGrad: true });
    const flat = T.reshape(t, [6]);
    checkGrad((l) => T.crossEntropyReference(l!, flat), [y]);
    T.dispose([t, flat]);
  });
});

describe("crossEntropy refuses bad input with an OpError naming crossEntropy", () => {
  it("targets out of range name the row and the value; ignoreIndex is not out of range", () => {
    T.tidy(() => {
      const x = T.zeros([3, 5]);
      expectOpError(() => T.crossEntropy(x, T.tensor(new Int32Array([0, 5, 1]))), "crossEntropy", /target 5 at row 1 is outside \[0, 5\)/);
      expectOpError(() => T.crossEntropy(x, T.tensor(new Int32Array([0, 1, -1]))), "crossEntropy", /target -1 at row 2/);
      expectOpError(() => T.crossEntropy(x, T.tensor(new Int32Array([0, 1, -100])), { ignoreIndex: 4 }), "crossEntropy", /target -100 at row 2 .*ignoreIndex \(4\)/);
      expectOpError(() => T.crossEntropyReference(x, T.tensor(new Int32Array([0, 7, 1]))), "crossEntropy", /target 7 at row 1/);
      expect(T.crossEntropy(x, T.tensor(new Int32Array([0, 4, 4])), { ignoreIndex: 4 }).item()).toBeCloseTo(Math.log(5), 6);
    });
  });
  it("shapes, dtypes and options", () => {
    T.tidy(() => {
      const x = T.zeros([3, 5]);
      const t = T.tensor(new Int32Array([0, 1, 2]));
      expectOpError(() => T.crossEntropy(x, T.tensor(new Int32Array([0, 1]))), "crossEntropy", /targets \[2\] must have the logits' shape without the class axis, \[3\], or be \[3\]/);
      expectOpError(() => T.crossEntropy(T.zeros([2, 3, 5]), T.tensor(new Int32Array(6), [3, 2])), "crossEntropy", /targets \[3,2\]/);
      expectOpError(() => T.crossEntropy(x, T.zeros([3])), "crossEntropy", /targets must be i32, got f32/);
      expectOpError(() => T.crossEntropy(T.zeros([3, 5], { dtype: "f16" }), t), "crossEntropy", /f16 is a storage type only, cast it with/);
      expectOpError(() => T.crossEntropy(T.zeros([]), T.tensor(new Int32Array([0]), [])), "crossEntropy", /class axis/);
      expectOpError(() => T.crossEntropy(T.zeros([3, 0]), t), "crossEntropy", /V = 0/);
      expectOpError(() => T.crossEntropy(x, t, { reduction: "avg" as Reduction }), "crossEntropy", /reduction must be one of mean, sum, none/);
      expectOpError(() => T.crossEntropy(x, t, { ignoreIndex: 0.5 }), "crossEntropy", /ignoreIndex must be a 32-bit integer/);
      const gone = T.zeros([3, 5]);
      gone.dispose();
      expect(() => T.crossEntropy(gone, t)).toThrow(/crossEntropy/);
    });
  });
});

// --- memory ----------------------------------------------------------------------------------------

describe("crossEntropy memory", () => {
  it("the forward at N=512, V=32000 grows peak memory by O(N), not N×V; backward by one gradient", () => {
    const n = 512, v = 32000, nv4 = n * v * 4;
    const before = T.memory();
    T.tidy(() => {
      const x = T.randn([n, v], { seed: 3, requiresGrad: true });
      const t = T.tensor(targetsFor(n, v, 4, -100, 7));
      T.resetPeakMemory();
      const base = T.memory();
      const loss = T.crossEntropy(x, t);
      const fwd = T.memory();
      const growth = fwd.peakBytes - base.bytes;
      const nativeGrowth = fwd.nativePeakBytes - base.nativeBytes;
      expect(growth).toBeLessThan(64 * n); // lse [N] and the per-row losses [N] (4 bytes each) and a scalar
      expect(nativeGrowth).toBeLessThan(64 * n + 4096);
      T.resetPeakMemory();
      const base2 = T.memory();
      T.backward(loss);
      const bwd = T.memory();
      expect(bwd.peakBytes - base2.bytes).toBeLessThan(nv4 + 64 * n);
      expect(bwd.nativePeakBytes - base2.nativeBytes).toBeLessThan(nv4 + 64 * n + 4096);
      expect(x.grad!.shape).toEqual([n, v]);

      // The composed reference, for contrast, holds several N×V tensors.
      T.resetPeakMemory();
      const base3 = T.memory();
      T.crossEntropyReference(x, t);
      expect(T.memory().peakBytes - base3.bytes).toBeGreaterThan(2 * nv4);
    });
    const after = T.memory();
    expect(after.tensors).toBe(before.tensors);
    expect(after.bytes).toBe(before.bytes);
    expect(after.nativeBytes - after.scratchBytes).toBe(before.nativeBytes - before.scratchBytes);
  });
});

// --- softmax / logSoftmax --------------------------------------------------------------------------

describe("softmax and logSoftmax", () => {
  const shape = [3, 4, 5];
  for (const [name, fn, log] of [["softmax", T.softmax, false], ["logSoftmax", T.logSoftmax, true]] as const) {
    for (const axis of [-1, 0, 1, 2]) {
      it(`${name} forward (f32 and f64) and gradcheck on axis ${axis}`, () => {
        const before = T.memory();
        const ax = (axis + shape.length) % shape.length;
        const data = rnd(size(shape), 20 + ax, -5, 5);
        T.tidy(() => {
          for (const dtype of ["f32", "f64"] as const) {
            const y = fn(T.tensor(data, shape, { dtype }), axis);
            assertClose(y.toFloat64Array(), softmaxRef(data, shape, ax, log), dtype === "f32" ? 1e-6 : 1e-14, dtype === "f32" ? 1e-5 : 1e-12, name);
          }
        });
        checkGrad((x) => fn(x!, axis), [T.tensor(data, shape, { dtype: "f64", requiresGrad: true })]);
        expect(T.memory().bytes).toBe(before.bytes);
      });
    }
    it(`${name} of a non-contiguous view, of a vocabulary-sized row, and of huge values`, () => {
      T.tidy(() => {
        const x = T.transpose(T.tensor(rnd(24, 30, -3, 3), [4, 6], { dtype: "f64" })); // [6, 4]
        assertClose(fn(x, 1).toFloat64Array(), softmaxRef(T.contiguous(x).toFloat64Array(), [6, 4], 1, log), 1e-14, 1e-14, "transposed");
        const wide = rnd(2 * 9000, 31, -8, 8);
        assertClose(fn(T.tensor(wide, [2, 9000])).toFloat64Array(), softmaxRef(wide, [2, 9000], 1, log), 1e-5, 1e-6, "wide");
        const huge = fn(T.tensor([1e4, -1e4, 3e4, 0], [1, 4]));
        expect(huge.toArray().every(Number.isFinite)).toBe(true);
      });
      const w = T.tensor(rnd(2 * 4 * 3, 32, -2, 2), [2, 4, 3], { dtype: "f64", requiresGrad: true });
      checkGrad((x) => fn(T.permute(x!, [2, 0, 1]), 2), [w]);
    });
  }
  it("refuses scalars, integer tensors and bad axes, naming the op", () => {
    T.tidy(() => {
      expectOpError(() => T.softmax(T.zeros([])), "softmax", /scalar/);
      expectOpError(() => T.logSoftmax(T.tensor(new Int32Array(3))), "logSoftmax", /i32/);
      expect(() => T.softmax(T.zeros([2, 3]), 2)).toThrow(/softmax: axis 2 is out of range/);
    });
  });
});

// --- embedding ------------------------------------------------------------------------------------------

describe("embedding", () => {
  it("forward picks rows; gradcheck with repeated ids accumulates", () => {
    const before = T.memory();
    T.tidy(() => {
      const w = T.tensor(rnd(5 * 3, 40), [5, 3]);
      const ids = T.tensor(new Int32Array([4, 0, 4, 2, 2, 2]), [2, 3]);
      const y = T.embedding(w, ids);
      expect(y.shape).toEqual([2, 3, 3]);
      const wv = w.toFloat64Array();
      const expected = Array.from(ids.dataSync() as Int32Array).flatMap((id) => Array.from(wv.subarray(id * 3, id * 3 + 3)));
      assertClose(y.toFloat64Array(), expected, 1e-7, 1e-7, "rows");
      // backward: row k of dW is the sum of dy over the positions holding id k
      const wg = T.tensor(rnd(5 * 3, 41), [5, 3], { dtype: "f64", requiresGrad: true });
      T.backward(T.sum(T.embedding(wg, ids)));
      expect(wg.grad!.toArray()).toEqual([1, 1, 1, 0, 0, 0, 3, 3, 3, 0, 0, 0, 2, 2, 2]);
    });
    const ids = T.tensor(new Int32Array([1, 1, 3, 0, 1]));
    checkGrad((w) => T.embedding(w!, ids), [T.tensor(rnd(4 * 2, 42), [4, 2], { dtype: "f64", requiresGrad: true })]);
    ids.dispose();
    expect(T.memory().tensors).toBe(before.tensors);
  });
  it("ids out of range and bad shapes are OpErrors naming embedding", () => {
    T.tidy(() => {
      const w = T.zeros([5, 3]);
      expectOpError(() => T.embedding(w, T.tensor(new Int32Array([0, 5]))), "embedding", /id 5 at flat position 1 of ids is outside \[0, 5\)/);
      expectOpError(() => T.embedding(w, T.tensor(new Int32Array([-1]))), "embedding", /id -1 at flat position 0/);
      expectOpError(() => T.embedding(w, T.zeros([2])), "embedding", /ids must be i32/);
      expectOpError(() => T.embedding(T.zeros([5]), T.tensor(new Int32Array([0]))), "embedding", /weight must be \[V, D\]/);
    });
  });
});
