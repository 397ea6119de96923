// Cross-entropy and softmax kernels against plain TS f64 references, on every ISA path.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  LOSS_CHUNK, cpuInfo, crossEntropyBackward, crossEntropyForward, getNumThreads, native, setIsa, setNumThreads,
  softmaxBackward, softmaxForward, type FloatArrayLike, type Isa, type RowLayout,
} from "../ts/index.js";
import { rng } from "./helpers.js";

// --- helpers ------------------------------------------------------------------------------------

type FloatCtor = Float32ArrayConstructor | Float64ArrayConstructor;
// [name, constructor, relative tolerance against the f64 reference, absolute tolerance]
const FLOATS: [string, FloatCtor, number, number][] = [
  ["f32", Float32Array, 2e-5, 2e-6],
  ["f64", Float64Array, 1e-12, 1e-14],
];


function randArray<C extends FloatCtor>(C: C, n: number, seed: number, lo = -4, hi = 4): InstanceType<C> {
  const r = rng(seed);
  const a = new C(n) as InstanceType<C>;
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

function randTargets(n: number, v: number, seed: number, ignore = -100, ignoreEvery = 0): Int32Array {
  const r = rng(seed);
  const t = new Int32Array(n);
  for (let i = 0; i < n; i++) t[i] = ignoreEvery && i % ignoreEvery === 1 ? ignore : Math.floor(r() * v);
  return t;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number, what = ""): void {
  expect(actual.length, `${what} length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (Number.isNaN(e)) {
      if (!Number.isNaN(a)) expect.fail(`${what}[${i}]: expected NaN, got ${a}`);
    } else if (a !== e && !(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      expect.fail(`${what}[${i}]: expected ${e}, got ${a} (diff ${Math.abs(a - e)})`);
    }
  }
}

function bitsEqual(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) expect.fail(`${what}[${i}]: ${a[i]} !== ${b[i]}`);
}

const contiguousRows = (n: number, v: number): RowLayout => ({ shape: [n], strides: [v] });

// Row offsets of a layout, in row-major order of its leading multi-index.
function rowOffsets(rows: RowLayout): number[] {
  const n = rows.shape.reduce((p, d) => p * d, 1);
  const out: number[] = [];
  for (let r = 0; r < n; r++) {
    let rem = r, off = 0;
    for (let i = rows.shape.length - 1; i >= 0; i--) {
      off += (rem % rows.shape[i]!) * rows.strides[i]!;
      rem = Math.floor(rem / rows.shape[i]!);
    }
    out.push(off);
  }
  return out;
}

// --- references (f64) --------------------------------------------------------------------------

function lseRef(x: ArrayLike<number>, off: number, v: number): number {
  let m = -Infinity;
  for (let j = 0; j < v; j++) m = Math.max(m, x[off + j]!);
  let s = 0;
  for (let j = 0; j < v; j++) s += Math.exp(x[off + j]! - m);
  return m + Math.log(s);
}

function ceForwardRef(x: ArrayLike<number>, rows: RowLayout, v: number, t: Int32Array, ignore: number) {
  const offs = rowOffsets(rows);
  const lse = new Float64Array(offs.length), loss = new Float64Array(offs.length);
  let count = 0;
  offs.forEach((off, r) => {
    if (t[r] === ignore) return;
    count++;
    lse[r] = lseRef(x, off, v);
    loss[r] = lse[r]! - x[off + t[r]!]!;
  });
  return { lse, loss, count };
}

function ceBackwardRef(x: ArrayLike<number>, rows: RowLayout, v: number, t: Int32Array, ignore: number, g: ArrayLike<number>, gStride: number, mean: boolean) {
  const offs = rowOffsets(rows);
  const count = Array.from(t).filter((y) => y !== ignore).length;
  const scale = mean ? (count ? 1 / count : 0) : 1;
  const dx = new Float64Array(offs.length * v);
  offs.forEach((off, r) => {
    if (t[r] === ignore) return;
    const lse = lseRef(x, off, v);
    const gr = g[r * gStride]! * scale;
    for (let j = 0; j < v; j++) dx[r * v + j] = (Math.exp(x[off + j]! - lse) - (j === t[r] ? 1 : 0)) * gr;
  });
  return dx;
}

function softmaxRef(x: ArrayLike<number>, outer: number, n: number, inner: number, log: boolean): Float64Array {
  const y = new Float64Array(outer * n * inner);
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

function softmaxGradRef(y: ArrayLike<number>, dy: ArrayLike<number>, outer: number, n: number, inner: number, log: boolean): Float64Array {
  const dx = new Float64Array(outer * n * inner);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < inner; c++) {
      const at = (i: number) => (o * n + i) * inner + c;
      let s = 0;
      for (let i = 0; i < n; i++) s += log ? dy[at(i)]! : dy[at(i)]! * y[at(i)]!;
      for (let i = 0; i < n; i++) dx[at(i)] = log ? dy[at(i)]! - Math.exp(y[at(i)]!) * s : y[at(i)]! * (dy[at(i)]! - s);
    }
  }
  return dx;
}

// --- setup ---------------------------------------------------------------------------------------

function supportedIsas(): Isa[] {
  const info = cpuInfo();
  const isas: Isa[] = ["generic"];
  if (info.avx2) isas.push("avx2");
  if (info.avx512) isas.push("avx512");
  return isas;
}
const initialIsa = cpuInfo().active;
const initialThreads = getNumThreads();
afterAll(() => {
  setIsa(initialIsa);
  setNumThreads(initialThreads);
});

function withThreads<T>(n: number, fn: () => T): T {
  const before = getNumThreads();
  setNumThreads(n);
  try {
    return fn();
  } finally {
    setNumThreads(before);
  }
}

// [rows, vocab]: tiny, one chunk, a chunk boundary, not a multiple of the chunk, a real vocabulary.
const CE_SHAPES: [number, number][] = [[3, 1], [4, 5], [5, LOSS_CHUNK], [3, LOSS_CHUNK + 1], [2, 3 * LOSS_CHUNK - 7], [3, 32000]];

// --- cross-entropy -------------------------------------------------------------------------------

describe.each(supportedIsas())("crossEntropy kernels on the %s path", (isa) => {
  beforeAll(() => setIsa(isa));
  afterAll(() => setIsa(initialIsa));

  describe.each(FLOATS)("%s", (_name, C, rtol, atol) => {
    it.each(CE_SHAPES)("forward and backward match the f64 reference for [%i, %i]", (n, v) => {
      const x = randArray(C, n * v, n * 31 + v);
      const t = randTargets(n, v, v);
      const rows = contiguousRows(n, v);
      const lse = new C(n), loss = new C(n);
      expect(crossEntropyForward(x, rows, v, t, -100, lse, loss)).toBe(n);
      const ref = ceForwardRef(x, rows, v, t, -100);
      expectClose(lse, ref.lse, rtol, atol, "lse");
      expectClose(loss, ref.loss, rtol, atol * 10, "loss");
      for (const [g, gStride, mean] of [[new C([0.7]), 0, true], [new C([1.5]), 0, false], [randArray(C, 2 * n, 3), 2, false]] as const) {
        const dx = new C(n * v);
        crossEntropyBackward(x, rows, v, t, -100, lse, g, gStride, mean, dx);
        expectClose(dx, ceBackwardRef(x, rows, v, t, -100, g, gStride, mean), rtol, atol, `dlogits (gStride ${gStride}, mean ${mean})`);
      }
    });

    it("reads rows through strides (a [2, 3, V] slice dropping the last position)", () => {
      const v = LOSS_CHUNK + 3;
      const x = randArray(C, 2 * 3 * v + 5, 11);
      const rows: RowLayout = { shape: [2, 2], strides: [3 * v, v] };
      const t = randTargets(4, v, 12);
      const lse = new C(4), loss = new C(4);
      crossEntropyForward(x, rows, v, t, -100, lse, loss);
      const ref = ceForwardRef(x, rows, v, t, -100);
      expectClose(lse, ref.lse, rtol, atol, "lse");
      expectClose(loss, ref.loss, rtol, atol * 10, "loss");
      const dx = new C(4 * v);
      crossEntropyBackward(x, rows, v, t, -100, lse, new C([1]), 0, true, dx);
      expectClose(dx, ceBackwardRef(x, rows, v, t, -100, [1], 0, true), rtol, atol, "dlogits");
    });

    it("skips ignored rows (default and custom ignoreIndex) and counts the rest", () => {
      const n = 7, v = 50;
      const x = randArray(C, n * v, 5);
      for (const ignore of [-100, 3, -1]) {
        const t = randTargets(n, v, 6, ignore, 3);
        const lse = new C(n).fill(9), loss = new C(n).fill(9);
        const counted = crossEntropyForward(x, contiguousRows(n, v), v, t, ignore, lse, loss);
        const ref = ceForwardRef(x, contiguousRows(n, v), v, t, ignore);
        expect(counted).toBe(ref.count);
        expect(counted).toBeLessThan(n);
        expectClose(loss, ref.loss, rtol, atol * 10, "loss");
        for (let r = 0; r < n; r++) if (t[r] === ignore) expect([lse[r], loss[r]]).toEqual([0, 0]);
        const dx = new C(n * v).fill(9);
        crossEntropyBackward(x, contiguousRows(n, v), v, t, ignore, lse, new C([1]), 0, true, dx);
        expectClose(dx, ceBackwardRef(x, contiguousRows(n, v), v, t, ignore, [1], 0, true), rtol, atol, "dlogits");
      }
    });

    it("all rows ignored: count 0, zero losses, zero gradients (also with mean)", () => {
      const n = 4, v = 9;
      const x = randArray(C, n * v, 8);
      const t = new Int32Array(n).fill(-100);
      const lse = new C(n).fill(5), loss = new C(n).fill(5);
      expect(crossEntropyForward(x, contiguousRows(n, v), v, t, -100, lse, loss)).toBe(0);
      expect(Array.from(loss)).toEqual([0, 0, 0, 0]);
      const dx = new C(n * v).fill(5);
      crossEntropyBackward(x, contiguousRows(n, v), v, t, -100, lse, new C([1]), 0, true, dx);
      expect(dx.every((d) => d === 0)).toBe(true);
    });

    it("huge logits (±1e4) stay finite and match the reference", () => {
      const n = 4, v = LOSS_CHUNK + 100;
      const x = randArray(C, n * v, 9);
      // Row 0: one +1e4 spike; row 1: all around -1e4; row 2: ±1e4 alternating; row 3: the spike in the second chunk.
      x[17] = 1e4;
      for (let j = 0; j < v; j++) x[v + j] = -1e4 + x[v + j]!;
      for (let j = 0; j < v; j++) x[2 * v + j] = j % 2 ? 1e4 : -1e4;
      x[3 * v + LOSS_CHUNK + 50] = 1e4;
      const t = new Int32Array([17, 3, 5, 0]);
      const lse = new C(n), loss = new C(n);
      crossEntropyForward(x, contiguousRows(n, v), v, t, -100, lse, loss);
      expect(Array.from(lse).every(Number.isFinite)).toBe(true);
      expect(Array.from(loss).every(Number.isFinite)).toBe(true);
      const ref = ceForwardRef(x, contiguousRows(n, v), v, t, -100);
      // ~1e4-sized values: f32 keeps ~1e-3 absolute there
      expectClose(lse, ref.lse, rtol, C === Float32Array ? 2e-3 : 1e-9, "lse");
      expectClose(loss, ref.loss, rtol, C === Float32Array ? 2e-3 : 1e-9, "loss");
      expect(loss[0]).toBeCloseTo(0, 5);
      const dx = new C(n * v);
      crossEntropyBackward(x, contiguousRows(n, v), v, t, -100, lse, new C([1]), 0, false, dx);
      expect(dx.every(Number.isFinite)).toBe(true);
      expectClose(dx, ceBackwardRef(x, contiguousRows(n, v), v, t, -100, [1], 0, false), C === Float32Array ? 2e-3 : 1e-9, 1e-6, "dlogits");
    });

    it("-inf logits are masked out; NaN logits poison only their row", () => {
      const n = 3, v = 2 * LOSS_CHUNK + 10;
      const x = randArray(C, n * v, 10);
      for (let j = 0; j < LOSS_CHUNK + 5; j++) x[j] = -Infinity; // a whole first chunk of row 0
      x[v + 2 * LOSS_CHUNK + 3] = NaN; // row 1, last chunk
      const t = new Int32Array([LOSS_CHUNK + 7, 0, 1]);
      const lse = new C(n), loss = new C(n);
      crossEntropyForward(x, contiguousRows(n, v), v, t, -100, lse, loss);
      const ref = ceForwardRef(x, contiguousRows(n, v), v, t, -100);
      expectClose([lse[0]!, loss[0]!, lse[2]!, loss[2]!], [ref.lse[0]!, ref.loss[0]!, ref.lse[2]!, ref.loss[2]!], rtol, atol * 10, "finite rows");
      expect(Number.isNaN(lse[1])).toBe(true);
      expect(Number.isNaN(loss[1])).toBe(true);
      // A row that is NaN only inside an all -inf chunk still reports NaN.
      const y = new C(v).fill(-Infinity);
      y[3] = NaN;
      y[v - 1] = 0;
      const l1 = new C(1), s1 = new C(1);
      crossEntropyForward(y, contiguousRows(1, v), v, new Int32Array([v - 1]), -100, s1, l1);
      expect(Number.isNaN(s1[0])).toBe(true);
    });

    it("does not depend on the number of threads (bitwise)", () => {
      const n = 37, v = LOSS_CHUNK + 333;
      const x = randArray(C, n * v, 13);
      const t = randTargets(n, v, 14, -100, 5);
      const run = () => {
        const lse = new C(n), loss = new C(n), dx = new C(n * v);
        crossEntropyForward(x, contiguousRows(n, v), v, t, -100, lse, loss);
        crossEntropyBackward(x, contiguousRows(n, v), v, t, -100, lse, new C([1]), 0, true, dx);
        return { lse, loss, dx };
      };
      const one = withThreads(1, run);
      for (const k of [2, 3, 8]) {
        const many = withThreads(k, run);
        bitsEqual(many.lse, one.lse, `lse (${k} threads)`);
        bitsEqual(many.loss, one.loss, `loss (${k} threads)`);
        bitsEqual(many.dx, one.dx, `dlogits (${k} threads)`);
      }
    });
  });
});

// --- softmax / logSoftmax ------------------------------------------------------------------------

// [outer, n, inner]: last-axis rows (inner 1, n across chunk boundaries) and strided axes with
// partial column blocks.
const SM_SHAPES: [number, number, number][] = [[3, 1, 1], [4, 7, 1], [2, LOSS_CHUNK + 9, 1], [1, 3 * LOSS_CHUNK, 1], [2, 5, 3], [3, 7, 70], [2, 33, 129], [1, 300, 1]];

describe.each(supportedIsas())("softmax kernels on the %s path", (isa) => {
  beforeAll(() => setIsa(isa));
  afterAll(() => setIsa(initialIsa));

  describe.each(FLOATS)("%s", (_name, C, rtol, atol) => {
    it.each(SM_SHAPES)("softmax and logSoftmax forward/backward match the f64 reference for [%i, %i, %i]", (outer, n, inner) => {
      const size = outer * n * inner;
      const x = randArray(C, size, size + 1, -6, 6);
      const dy = randArray(C, size, size + 2);
      for (const log of [false, true]) {
        const y = new C(size);
        softmaxForward(x, outer, n, inner, y, log);
        expectClose(y, softmaxRef(x, outer, n, inner, log), rtol, atol, log ? "logSoftmax" : "softmax");
        const dx = new C(size);
        softmaxBackward(y, dy, outer, n, inner, dx, log);
        expectClose(dx, softmaxGradRef(y, dy, outer, n, inner, log), rtol * 5, atol * 10, log ? "logSoftmax grad" : "softmax grad");
      }
    });

    it("stays finite for huge inputs and does not depend on the number of threads", () => {
      for (const [outer, n, inner] of [[9, LOSS_CHUNK + 1, 1], [5, 40, 130]] as const) {
        const size = outer * n * inner;
        const x = randArray(C, size, 21, -1e4, 1e4);
        const dy = randArray(C, size, 22);
        const run = (log: boolean) => {
          const y = new C(size), dx = new C(size);
          softmaxForward(x, outer, n, inner, y, log);
          softmaxBackward(y, dy, outer, n, inner, dx, log);
          return [y, dx] as const;
        };
        for (const log of [false, true]) {
          const [y1, dx1] = withThreads(1, () => run(log));
          expect(y1.every(Number.isFinite) && dx1.every(Number.isFinite)).toBe(true);
          const [y4, dx4] = withThreads(4, () => run(log));
          bitsEqual(y4, y1, "y");
          bitsEqual(dx4, dx1, "dx");
        }
      }
    });
  });
});

// --- argument checking -----------------------------------------------------------------------------

describe("loss kernels refuse bad arguments, naming the op", () => {
  const n = 3, v = 5;
  const x = new Float32Array(n * v);
  const rows = contiguousRows(n, v);
  const ok = () => ({ lse: new Float32Array(n), loss: new Float32Array(n), t: new Int32Array([0, 4, -100]) });

  it("targets out of range name crossEntropy, the row and the value", () => {
    const { lse, loss } = ok();
    expect(() => crossEntropyForward(x, rows, v, new Int32Array([0, 5, 1]), -100, lse, loss)).toThrow(
      new RangeError("crossEntropy: target 5 at row 1 is outside [0, 5) and is not ignoreIndex (-100)"),
    );
    expect(() => crossEntropyForward(x, rows, v, new Int32Array([0, 1, -1]), -100, lse, loss)).toThrow(/crossEntropy: target -1 at row 2/);
    expect(() => crossEntropyForward(x, rows, v, new Int32Array([0, 1, -100]), 7, lse, loss)).toThrow(/target -100 at row 2 .* ignoreIndex \(7\)/);
    const dx = new Float32Array(n * v);
    expect(() => crossEntropyBackward(x, rows, v, new Int32Array([9, 0, 0]), -100, lse, new Float32Array(1), 0, false, dx)).toThrow(/crossEntropyBackward: target 9 at row 0/);
  });

  it("wrong types, mixed float types, short arrays and bad layouts", () => {
    const { lse, loss, t } = ok();
    const ce = native().crossEntropyForward as (...args: unknown[]) => number;
    expect(() => ce(x, [n], [v], v, t, -100, lse)).toThrow(/crossEntropy: expected 8 arguments/);
    expect(() => ce(new Int32Array(15), [n], [v], v, t, -100, lse, loss)).toThrow(new TypeError("crossEntropy: argument 'logits' (index 0) must be a Float32Array or Float64Array, got Int32Array"));
    expect(() => ce(x, [n], [v], v, t, -100, new Float64Array(n), loss)).toThrow(/crossEntropy: argument 'lse' is a Float64Array but 'logits' is a Float32Array/);
    expect(() => ce(x, [n], [v], v, new Float32Array(3), -100, lse, loss)).toThrow(/crossEntropy: argument 'targets' .* must be a Int32Array/);
    expect(() => ce(x, [n], [v], v, new Int32Array(2), -100, lse, loss)).toThrow(/crossEntropy: argument 'targets' holds 2 elements/);
    expect(() => ce(x.subarray(1), [n], [v], v, t, -100, lse, loss)).toThrow(/crossEntropy: argument 'logits' needs 15 elements .* holds 14/);
    expect(() => ce(x, [n], [v + 1], v, t, -100, lse, loss)).toThrow(/argument 'logits' needs 17 elements/);
    expect(() => ce(x, [n], [v, 1], v, t, -100, lse, loss)).toThrow(/crossEntropy: argument 'rowStrides' = \[5,1\] has 2 entries/);
    expect(() => ce(x, [n], [-v], v, t, -100, lse, loss)).toThrow(/crossEntropy: argument 'rowStrides'/);
    expect(() => ce(x, [n], [v], v, t, -100, lse, new Float32Array(2))).toThrow(/crossEntropy: argument 'loss' needs 3 elements/);
    expect(() => ce(x, [n], [v], v, t, 1.5, lse, loss)).toThrow(/crossEntropy: argument 'ignoreIndex' must be an integer/);
    expect(() => ce(x, [n], [v], -1, t, -100, lse, loss)).toThrow(/crossEntropy: argument 'vocab'/);
    const dx = new Float32Array(n * v);
    expect(() => crossEntropyBackward(x, rows, v, t, -100, lse, new Float32Array(1), 1, false, dx)).toThrow(/crossEntropyBackward: argument 'g' needs 3 elements/);
    expect(() => crossEntropyBackward(x, rows, v, t, -100, lse, new Float32Array(1), 0, false, dx.subarray(1))).toThrow(/crossEntropyBackward: argument 'dlogits' needs 15 elements/);
    expect(() => crossEntropyBackward(x, rows, v, t, -100, lse, new Float64Array(1), 0, false, dx)).toThrow(/crossEntropyBackward: argument 'g' is a Float64Array/);
    const sm = native().softmax as (...args: unknown[]) => void;
    expect(() => sm(x, 3, 5, 1)).toThrow(/softmax: expected 5 arguments/);
    expect(() => softmaxForward(x, 3, 6, 1, new Float32Array(18))).toThrow(/softmax: argument 'x' needs 18 elements/);
    expect(() => softmaxForward(x, 3, 5, 1, new Float32Array(15), true)).not.toThrow();
    expect(() => softmaxForward(x, 3, 5, 1, new Float64Array(15), true)).toThrow(/logSoftmax: argument 'y' is a Float64Array/);
    expect(() => softmaxBackward(x, x, 3, 5, 1, new Float32Array(14))).toThrow(/softmaxBackward: argument 'dx' needs 15 elements/);
    expect(() => softmaxBackward(x, x, -3, 5, 1, new Float32Array(15), true)).toThrow(/logSoftmaxBackward: argument 'outer'/);
  });

  it("empty inputs are fine", () => {
    expect(crossEntropyForward(new Float32Array(0), contiguousRows(0, 5), 5, new Int32Array(0), -100, new Float32Array(0), new Float32Array(0))).toBe(0);
    crossEntropyBackward(new Float32Array(0), contiguousRows(0, 5), 5, new Int32Array(0), -100, new Float32Array(0), new Float32Array(0), 0, true, new Float32Array(0));
    softmaxForward(new Float32Array(0), 0, 5, 1, new Float32Array(0));
    softmaxBackward(new Float32Array(0), new Float32Array(0), 2, 0, 3, new Float32Array(0));
  });
});
