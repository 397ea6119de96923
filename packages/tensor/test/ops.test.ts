import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";
import { binaryRef, matmulRef, maxDiff, permuteRef, reduceRef, rnd, size } from "./ref.js";

const DTS = ["f32", "f64"] as const;
const tol = (dt: string) => (dt === "f32" ? 2e-5 : 1e-12);

function mk(shape: number[], seed: number, dtype: "f32" | "f64" = "f64", lo = -1, hi = 1) {
  return T.tensor(rnd(size(shape), seed, lo, hi), shape, { dtype });
}

describe("binary ops match the f64 reference with broadcasting", () => {
  const fns: Record<string, (x: number, y: number) => number> = {
    add: (x, y) => x + y, sub: (x, y) => x - y, mul: (x, y) => x * y, div: (x, y) => x / y,
    maximum: Math.max, minimum: Math.min, pow: (x, y) => x ** y,
    eq: (x, y) => (x === y ? 1 : 0), gt: (x, y) => (x > y ? 1 : 0), lt: (x, y) => (x < y ? 1 : 0),
  };
  const shapes: [number[], number[]][] = [
    [[3, 4], [3, 4]], [[3, 4], [4]], [[3, 1], [1, 5]], [[2, 1, 3], [4, 1]], [[], [2, 3]], [[5], []], [[2, 3, 4], [2, 1, 4]], [[0, 3], [3]],
  ];
  for (const dt of DTS)
    for (const op of Object.keys(fns))
      it(`${op} ${dt}`, () => {
        T.tidy(() => {
          for (const [as, bs] of shapes) {
            const pos = op === "pow";
            const a = mk(as, 3, dt, pos ? 0.5 : -1, pos ? 2 : 1);
            const b = mk(bs, 7, dt, pos ? -2 : 0.5, 2);
            const y = T.binary(op as T.BinaryOpName, a, b);
            const ref = binaryRef(fns[op]!, a.toFloat64Array(), as, b.toFloat64Array(), bs);
            expect(y.shape).toEqual(ref.shape);
            expect(y.dtype).toBe(dt);
            expect(maxDiff(y.toFloat64Array(), ref.data)).toBeLessThanOrEqual(tol(dt) * 10);
          }
        });
      });
  it("number operands on either side", () => {
    T.tidy(() => {
      const a = T.tensor([1, 2, 3]);
      expect(T.add(a, 1).toArray()).toEqual([2, 3, 4]);
      expect(T.add(2, a).toArray()).toEqual([3, 4, 5]);
      expect(T.sub(a, 1).toArray()).toEqual([0, 1, 2]);
      expect(T.sub(10, a).toArray()).toEqual([9, 8, 7]);
      expect(T.mul(a, 2).toArray()).toEqual([2, 4, 6]);
      expect(T.div(6, a).toArray()).toEqual([6, 3, 2]);
      expect(T.div(a, 2).toArray()).toEqual([0.5, 1, 1.5]);
      expect(T.maximum(a, 2).toArray()).toEqual([2, 2, 3]);
    });
  });
  it("strided views as inputs (transposed, sliced) give the same result as copies", () => {
    T.tidy(() => {
      const a = mk([4, 6], 1);
      const at = T.transpose(a);
      const b = mk([6, 4], 2);
      const y = T.add(at, b);
      const ref = binaryRef((x, z) => x + z, T.contiguous(at).toFloat64Array(), [6, 4], b.toFloat64Array(), [6, 4]);
      expect(maxDiff(y.toFloat64Array(), ref.data)).toBeLessThan(1e-12);
      const s = T.slice(a, [1, 2], [3, 5]);
      expect(s.shape).toEqual([2, 3]);
      const ys = T.mul(s, 2);
      const av = a.toFloat64Array();
      expect(ys.toArray()).toEqual([av[8]! * 2, av[9]! * 2, av[10]! * 2, av[14]! * 2, av[15]! * 2, av[16]! * 2]);
    });
  });
});

describe("unary ops match Math", () => {
  const fns: Record<string, (x: number) => number> = {
    neg: (x) => -x, exp: Math.exp, log: Math.log, sqrt: Math.sqrt, rsqrt: (x) => 1 / Math.sqrt(x), abs: Math.abs,
    relu: (x) => Math.max(x, 0), sigmoid: (x) => 1 / (1 + Math.exp(-x)), tanh: Math.tanh, silu: (x) => x / (1 + Math.exp(-x)),
    square: (x) => x * x, reciprocal: (x) => 1 / x, sign: Math.sign,
  };
  const positive = new Set(["log", "sqrt", "rsqrt", "reciprocal"]);
  for (const dt of DTS)
    for (const op of Object.keys(fns))
      it(`${op} ${dt}`, () => {
        T.tidy(() => {
          const x = mk([5, 7], 11, dt, positive.has(op) ? 0.1 : -3, 3);
          const y = T.unary(op as T.UnaryOpName, x);
          const ref = Array.from(x.toFloat64Array(), fns[op]!);
          const err = maxDiff(y.toFloat64Array(), ref);
          expect(err).toBeLessThanOrEqual((dt === "f32" ? 1e-5 : 1e-13) * 10);
        });
      });
  it("powScalar and scale", () => {
    T.tidy(() => {
      const x = mk([10], 5, "f64", 0.1, 2);
      expect(maxDiff(T.powScalar(x, 2.5).toFloat64Array(), Array.from(x.toFloat64Array(), (v) => v ** 2.5))).toBeLessThan(1e-12);
      expect(maxDiff(T.scale(x, 3, -1).toFloat64Array(), Array.from(x.toFloat64Array(), (v) => 3 * v - 1))).toBeLessThan(1e-12);
    });
  });
  it("sigmoid and silu are stable for large |x|", () => {
    T.tidy(() => {
      const x = T.tensor([-1000, -80, 80, 1000], [4], { dtype: "f32" });
      const s = T.sigmoid(x).toArray();
      expect(s.every(Number.isFinite)).toBe(true);
      expect(s[0]).toBe(0);
      expect(s[3]).toBe(1);
      expect(T.silu(x).toArray().every(Number.isFinite)).toBe(true);
    });
  });
});

describe("reductions", () => {
  const shape = [3, 4, 5];
  const axesList: (number[] | undefined)[] = [undefined, [0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]];
  for (const dt of DTS)
    for (const op of ["sum", "max", "min"] as const)
      for (const keep of [false, true])
        it(`${op} ${dt} keepDims=${keep} over every subset of axes`, () => {
          T.tidy(() => {
            const x = mk(shape, 21, dt);
            for (const axes of axesList) {
              const y = T.reduce(op, x, axes, keep);
              const ref = reduceRef(op, x.toFloat64Array(), shape, axes ?? [0, 1, 2], keep);
              expect(y.shape).toEqual(ref.shape);
              expect(maxDiff(y.toFloat64Array(), ref.data)).toBeLessThanOrEqual(tol(dt) * 10);
            }
          });
        });
  it("mean, negative axes, non-contiguous input", () => {
    T.tidy(() => {
      const x = mk([4, 6], 2);
      const m = T.mean(x, -1);
      const ref = reduceRef("sum", x.toFloat64Array(), [4, 6], [1], false).data.map((v) => v / 6);
      expect(maxDiff(m.toFloat64Array(), ref)).toBeLessThan(1e-12);
      const xt = T.transpose(x);
      const s = T.sum(xt, 0);
      expect(maxDiff(s.toFloat64Array(), reduceRef("sum", x.toFloat64Array(), [4, 6], [1], false).data)).toBeLessThan(1e-12);
    });
  });
  it("sum of an empty axis is 0, max of one is an error", () => {
    T.tidy(() => {
      const x = T.zeros([0, 3]);
      expect(T.sum(x, 0).toArray()).toEqual([0, 0, 0]);
      expect(() => T.max(x, 0)).toThrow(/max: cannot reduce over an empty axis/);
    });
  });
});

describe("matmul", () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[3, 4], [4, 5], false, false], [[4, 3], [4, 5], true, false], [[3, 4], [5, 4], false, true], [[4, 3], [5, 4], true, true],
    [[2, 3, 4], [2, 4, 5], false, false], [[2, 3, 4], [4, 5], false, false], [[3, 4], [2, 4, 5], false, false],
    [[2, 1, 3, 4], [1, 3, 4, 2], false, false], [[1, 1], [1, 1], false, false], [[7, 33], [33, 17], false, false], [[65, 1], [1, 9], false, false],
  ];
  for (const dt of DTS)
    for (const [as, bs, ta, tb] of cases)
      it(`${dt} ${JSON.stringify(as)}·${JSON.stringify(bs)} transA=${ta} transB=${tb}`, () => {
        T.tidy(() => {
          const a = mk(as, 1, dt);
          const b = mk(bs, 2, dt);
          const y = T.matmul(a, b, { transA: ta, transB: tb });
          const ref = matmulRef(a.toFloat64Array(), as, b.toFloat64Array(), bs, ta, tb);
          expect(y.shape).toEqual(ref.shape);
          expect(maxDiff(y.toFloat64Array(), ref.data)).toBeLessThanOrEqual(dt === "f32" ? 1e-4 : 1e-12);
        });
      });
  it("transposed and sliced views feed GEMM without copies and give the same answer", () => {
    T.tidy(() => {
      const a = mk([6, 4], 3);
      const b = mk([5, 6], 4);
      const y1 = T.matmul(T.transpose(a), T.transpose(b));
      const ref = matmulRef(a.toFloat64Array(), [6, 4], b.toFloat64Array(), [5, 6], true, true);
      expect(maxDiff(y1.toFloat64Array(), ref.data)).toBeLessThan(1e-12);
      const s = T.slice(b, [0, 1], [5, 5]); // [5,4] non-contiguous rows
      const y2 = T.matmul(s, a, { transB: true });
      const ref2 = matmulRef(T.contiguous(s).toFloat64Array(), [5, 4], a.toFloat64Array(), [6, 4], false, true);
      expect(maxDiff(y2.toFloat64Array(), ref2.data)).toBeLessThan(1e-12);
      const p = T.permute(mk([3, 2, 4], 5), [1, 0, 2]); // batch dims not collapsible
      const y3 = T.matmul(p, mk([4, 2], 6));
      const ref3 = matmulRef(T.contiguous(p).toFloat64Array(), [2, 3, 4], mk([4, 2], 6).toFloat64Array(), [4, 2]);
      expect(maxDiff(y3.toFloat64Array(), ref3.data)).toBeLessThan(1e-12);
    });
  });
});

describe("shape ops", () => {
  it("reshape is a view of contiguous data, a copy otherwise; -1 is inferred", () => {
    T.tidy(() => {
      const x = mk([2, 3, 4], 1);
      const r = T.reshape(x, [6, -1]);
      expect(r.shape).toEqual([6, 4]);
      expect(r.storage).toBe(x.storage);
      const t = T.transpose(x, 0, 2);
      const r2 = T.reshape(t, [-1]);
      expect(r2.storage).not.toBe(x.storage);
      expect(maxDiff(r2.toFloat64Array(), permuteRef(x.toFloat64Array(), [2, 3, 4], [2, 1, 0]).data)).toBe(0);
      expect(() => T.reshape(x, [5, -1])).toThrow(/reshape: cannot infer -1/);
      expect(() => T.reshape(x, [-1, -1])).toThrow(/at most one dimension/);
      expect(() => T.reshape(x, [4, 5])).toThrow(/cannot reshape 24 elements into \[4,5\]/);
    });
  });
  it("permute, transpose, unsqueeze, squeeze", () => {
    T.tidy(() => {
      const x = mk([2, 3, 4], 2);
      for (const perm of [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]]) {
        const y = T.permute(x, perm);
        const ref = permuteRef(x.toFloat64Array(), [2, 3, 4], perm);
        expect(y.shape).toEqual(ref.shape);
        expect(maxDiff(y.toFloat64Array(), ref.data)).toBe(0);
      }
      expect(T.unsqueeze(x, 1).shape).toEqual([2, 1, 3, 4]);
      expect(T.squeeze(T.unsqueeze(x, -1)).shape).toEqual([2, 3, 4]);
      expect(() => T.permute(x, [0, 0, 1])).toThrow(/repeats a dimension/);
    });
  });
  it("slice with negative bounds and views of views", () => {
    T.tidy(() => {
      const x = T.arange(24, undefined, 1, { dtype: "f64" }).reshape([4, 6]);
      const s = T.slice(x, [1, -3], [3]);
      expect(s.shape).toEqual([2, 3]);
      expect(s.toArray()).toEqual([9, 10, 11, 15, 16, 17]);
      const ss = T.slice(T.transpose(s), [1], [3]);
      expect(ss.toArray()).toEqual([10, 16, 11, 17]);
      expect(() => T.slice(x, [5])).toThrow(/slice: range 5: is out of bounds for axis 0 of size 4/);
    });
  });
  it("concat along each axis", () => {
    T.tidy(() => {
      const a = T.arange(6, undefined, 1, { dtype: "f64" }).reshape([2, 3]);
      const b = T.arange(6, 12, 1, { dtype: "f64" }).reshape([2, 3]);
      expect(T.concat([a, b], 0).toArray()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      expect(T.concat([a, b], 1).toArray()).toEqual([0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]);
      expect(T.concat([T.transpose(a), T.transpose(b)], -1).shape).toEqual([3, 4]);
      expect(() => T.concat([a, T.zeros([3, 3], { dtype: "f64" })], 1)).toThrow(/concat: shapes must match except along axis 1/);
    });
  });
  it("broadcastTo copies with NumPy rules", () => {
    T.tidy(() => {
      const a = T.tensor([1, 2, 3], [3, 1]);
      expect(T.broadcastTo(a, [2, 3, 2]).toArray()).toEqual([1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]);
      expect(() => T.broadcastTo(a, [2, 2])).toThrow(/broadcastTo: cannot broadcast to \[2,2\]/);
    });
  });
});

describe("gather and cast", () => {
  it("gather along axis 0 (embedding lookup) and axis 1", () => {
    T.tidy(() => {
      const table = T.arange(12, undefined, 1, { dtype: "f64" }).reshape([4, 3]);
      const idx = T.tensor(new Int32Array([3, 0, 3]), [3]);
      expect(T.gather(table, idx, 0).toArray()).toEqual([9, 10, 11, 0, 1, 2, 9, 10, 11]);
      const idx2 = T.tensor(new Int32Array([2, 0, 1, 1]), [2, 2]);
      const g = T.gather(table, idx2, 1);
      expect(g.shape).toEqual([4, 2, 2]);
      expect(g.toArray().slice(0, 4)).toEqual([2, 0, 1, 1]);
      expect(() => T.gather(table, T.tensor(new Int32Array([4]), [1]), 0)).toThrow(/gather/);
      expect(() => T.gather(table, T.tensor([1], [1]), 0)).toThrow(/gather: indices must be i32, got f32/);
    });
  });
  it("casts between every pair of dtypes keep representable values", () => {
    T.tidy(() => {
      const values = [0, 1, -2, 3, 100, -128, 127, 42];
      for (const from of T.DTYPES)
        for (const to of T.DTYPES) {
          const vals = values.filter((v) => !((from === "u8" || from === "u32" || to === "u8" || to === "u32") && v < 0));
          const x = T.tensor(vals, [vals.length], { dtype: from });
          expect(T.cast(x, to).toArray()).toEqual(vals);
        }
    });
  });
  it("bf16 and f16 round to nearest even", () => {
    T.tidy(() => {
      const x = T.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -9, 65504, 1e-8], [4], { dtype: "f64" });
      expect(T.cast(x, "bf16").toArray().slice(0, 2)).toEqual([1, 1 + 2 ** -7]);
      expect(T.cast(x, "f16").toArray()[2]).toBe(65504);
    });
  });
});

describe("creation and random", () => {
  it("tensor from nested arrays and typed arrays; full, zeros, ones, arange", () => {
    T.tidy(() => {
      const t = T.tensor([[1, 2], [3, 4]]);
      expect(t.shape).toEqual([2, 2]);
      expect(t.dtype).toBe("f32");
      expect(T.tensor(new Float64Array([1, 2])).dtype).toBe("f64");
      expect(T.full([2], 7, { dtype: "i32" }).toArray()).toEqual([7, 7]);
      expect(T.ones([2, 2], { dtype: "bf16" }).toArray()).toEqual([1, 1, 1, 1]);
      expect(T.arange(1, 2, 0.25).toArray()).toEqual([1, 1.25, 1.5, 1.75]);
      expect(() => T.tensor([[1, 2], [3]])).toThrow(/ragged/);
      expect(() => T.tensor([1.5], [1], { dtype: "i32" })).toThrow(/not an integer/);
      expect(() => T.tensor([1, 2, 3], [2, 2])).toThrow(/3 values do not fill shape \[2,2\]/);
    });
  });
  it("Philox4x32-10 matches the Random123 known-answer vectors", () => {
    const out = new Uint32Array(4);
    const hex = (a: Uint32Array) => Array.from(a, (v) => v.toString(16).padStart(8, "0")).join(" ");
    T.philox4x32(0, 0, 0, 0, 0, 0, out);
    expect(hex(out)).toBe("6627e8d5 e169c58d bc57ac4c 9b00dbd8");
    const f = 0xffffffff;
    T.philox4x32(f, f, f, f, f, f, out);
    expect(hex(out)).toBe("408f276d 41c83b0e a20bc7c6 6d5451fd");
    T.philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, out);
    expect(hex(out)).toBe("d16cfe09 94fdcceb 5001e420 24126ea1");
  });
  it("rand and randn are reproducible per seed and have the right moments", () => {
    T.tidy(() => {
      const a = T.randn([20000], { seed: 5 });
      const b = T.randn([20000], { seed: 5 });
      const c = T.randn([20000], { seed: 6 });
      expect(maxDiff(a.toFloat64Array(), b.toFloat64Array())).toBe(0);
      expect(maxDiff(a.toFloat64Array(), c.toFloat64Array())).toBeGreaterThan(0);
      const v = a.toFloat64Array();
      const mean = v.reduce((s, x) => s + x, 0) / v.length;
      const varr = v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length;
      expect(Math.abs(mean)).toBeLessThan(0.03);
      expect(Math.abs(varr - 1)).toBeLessThan(0.04);
      const u = T.rand([10000], { seed: 1, low: 2, high: 4 }).toFloat64Array();
      expect(Math.min(...u)).toBeGreaterThanOrEqual(2);
      expect(Math.max(...u)).toBeLessThan(4);
    });
  });
});
