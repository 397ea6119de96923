// The declarative binding layer (src/binding.h): every export checks its argument count, kinds and
// ranges from its table entry, with the same wording in every binding file. Each case calls the
// raw addon export and checks the error class and the whole message.
import { describe, expect, it } from "vitest";
import { native } from "../ts/index.js";

type RawFn = (...args: unknown[]) => unknown;
const raw = (name: string): RawFn => {
  const fn = (native() as unknown as Record<string, RawFn>)[name];
  if (typeof fn !== "function") throw new Error(`the addon has no export '${name}'`);
  return fn;
};
const f = (n: number) => new Float32Array(n);
const d = (n: number) => new Float64Array(n);

function errorOf(call: () => unknown): Error {
  try {
    call();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected the call to throw");
}

// [file, description, call, error class, exact message]
const cases: [string, string, () => unknown, ErrorConstructor, string][] = [
  // argument counts, from the table's signature (omittable arguments end in '?')
  ["bind_gemm", "count", () => raw("gemm")(false), TypeError,
    "gemm: expected 17 arguments (transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch), got 1"],
  ["bind_gemm", "no arguments expected", () => raw("gemmInfo")(1), TypeError, "gemmInfo: expected 0 arguments (), got 1"],
  ["bind_storage", "one omittable argument", () => raw("alloc")(8, true, 3), TypeError,
    "alloc: expected 1 or 2 arguments (bytes, zeroFill?), got 3"],
  ["bind_elementwise", "one optional argument", () => raw("unary")(0, f(1)), TypeError,
    "unary: expected 3 or 4 arguments (op, x, out, param?), got 2"],
  ["bind_loss", "count under the op's own name", () => raw("crossEntropyForward")(f(1)), TypeError,
    "crossEntropy: expected 8 arguments (logits, rowShape, rowStrides, vocab, targets, ignoreIndex, lse, loss), got 1"],
  ["bind_io", "count", () => raw("mmapFile")("/dev/null"), TypeError, "mmapFile: expected 3 arguments (path, offset, length), got 1"],
  // kinds
  ["bind_nn", "float array", () => raw("swigluForward")(f(2), new Int32Array(2), f(2)), TypeError,
    "swigluForward: argument 'up' (index 1) must be a Float32Array or Float64Array, got Int32Array"],
  ["bind_nn", "float arrays share one type", () => raw("swigluForward")(f(2), f(2), d(2)), TypeError,
    "swigluForward: argument 'out' is a Float64Array but 'gate' is a Float32Array; all float arrays of one call must have the same type"],
  ["bind_gemm", "float arrays share one type", () => raw("gemm")(false, false, 1, 1, 1, 1, f(1), 1, 0, d(1), 1, 0, 0, f(1), 1, 0, 1), TypeError,
    "gemm: argument 'b' is a Float64Array but 'a' is a Float32Array; all float arrays of one call must have the same type"],
  ["bind_elementwise", "arrays of any type share one type", () => raw("copyStrided")([1], new Int8Array(1), [1], new Uint8Array(1), [1]), TypeError,
    "copyStrided: argument 'dst' is a Uint8Array but 'src' is a Int8Array; all arrays of one call must have the same type"],
  ["bind_nn", "typed array of a fixed type", () => raw("rope")(f(8), [8, 8, 8], [1, 1, 1, 8], new Uint32Array(1), d(4), false, f(8)), TypeError,
    "rope: argument 'positions' (index 3) must be a Int32Array, got Uint32Array"],
  ["bind_optq", "not a typed array", () => raw("optqQuantize")([1], d(1), 1, 1, 2, 1, false, false, false, 0, 1, new Uint8Array(1), f(1), new Uint8Array(1), new Int32Array(1)), TypeError,
    "optqQuantize: argument 'w' (index 0) must be a typed array, got Array"],
  ["bind_gemm", "boolean", () => raw("gemm")(0, false, 1, 1, 1, 1, f(1), 1, 0, f(1), 1, 0, 0, f(1), 1, 0, 1), TypeError,
    "gemm: argument 'transA' must be a boolean, got number"],
  ["bind_storage", "an omittable argument that is passed must have its kind", () => raw("alloc")(8, undefined), TypeError,
    "alloc: argument 'zeroFill' must be a boolean, got undefined"],
  ["bind_storage", "integer range", () => raw("setNumThreads")(2000), RangeError, "setNumThreads: argument 'n' = 2000 is outside [1, 1024]"],
  ["bind_loss", "integer", () => raw("softmax")(f(1), 1, 1.5, 1, f(1)), TypeError, "softmax: argument 'n' must be an integer, got 1.500000"],
  ["bind_elementwise", "number", () => raw("affine")(f(1), 1, null, f(1)), TypeError, "affine: argument 'beta' must be a number, got null"],
  ["bind_nn", "finite number in [lo, hi)", () => raw("dropout")(f(4), -0.25, 0, 0, f(4)), RangeError,
    "dropout: argument 'p' = -0.25 must be a finite number in [0, 1)"],
  ["bind_nn", "finite number >= lo", () => raw("rmsnormForward")(f(4), f(4), Infinity, f(4), f(1)), RangeError,
    "rmsnormForward: argument 'eps' = Infinity must be a finite number >= 0"],
  ["bind_attention", "finite number", () => raw("attentionForward")([1, 1, 1, 1, 1, 1], f(1), f(1), f(1), null, null, -Infinity, false, f(1), f(1)), RangeError,
    "attentionForward: argument 'scale' must be finite, got -Infinity"],
  ["bind_quant", "string enum", () => raw("affineDequantize")(new Int32Array(3), new Uint16Array(1), new Uint8Array(1), "float", null, 3, 32, 1, 1, 32, 0, 1, f(32)), RangeError,
    "affineDequantize: argument 'zeroKind' must be \"int\" (u8 zero points) or \"real\" (f16 zero points), got \"float\""],
  ["bind_storage", "string", () => raw("setIsa")(2), TypeError, "setIsa: argument 'isa' must be a string, got number"],
  ["bind_elementwise", "dtype code", () => raw("cast")(f(1), -1, f(1), 0, 1), RangeError, "cast: argument 'srcDtype' = -1 is outside [0, 7]"],
  ["bind_attention", "int list length", () => raw("attentionBackwardMode")([1, 2, 3, 4, 5, 6, 7]), RangeError,
    "attentionBackwardMode: argument 'dims' has 7 entries, at most 6 are supported"],
  ["bind_loss", "int list entries", () => raw("softmaxBackward")(f(1), f(1), 1, 1, 1, [1]), TypeError,
    "softmaxBackward: argument 'dx' (index 5) must be a typed array, got Array"],
  ["bind_elementwise", "int list of integers", () => raw("reduce")(0, [2, 0.5], f(1), [1, 1], [0], f(1)), TypeError,
    "reduce: argument 'shape' must hold integers, element 1 = 0.500000"],
  ["bind_io", "ArrayBuffer", () => raw("unmapFile")(f(1)), TypeError, "unmapFile: argument 'buffer' must be an ArrayBuffer returned by mmapFile()"],
];

describe("the binding table checks every export's arguments", () => {
  it.each(cases)("%s: %s", (_file, _what, call, cls, message) => {
    const err = errorOf(call);
    expect(err).toBeInstanceOf(cls);
    expect(err.message).toBe(message);
  });

  it("nullable arguments accept null and undefined, and still check a value that is passed", () => {
    const x = Float32Array.from([1, 2, 3, 4]), w = Float32Array.from([1, 1]);
    const y = f(4), rstd = f(2);
    raw("rmsnormForward")(x, w, 1e-6, y, rstd);
    const dx1 = f(4), dx2 = f(4), dw = f(2);
    raw("rmsnormBackward")(x, w, rstd, y, dx1, null);
    raw("rmsnormBackward")(x, w, rstd, y, dx2, undefined);
    expect(Array.from(dx2)).toEqual(Array.from(dx1));
    raw("rmsnormBackward")(x, w, rstd, y, f(4), dw);
    expect(errorOf(() => raw("rmsnormBackward")(x, w, rstd, y, f(4), d(2))).message).toBe(
      "rmsnormBackward: argument 'dweight' is a Float64Array but 'x' is a Float32Array; all float arrays of one call must have the same type",
    );
  });

  it("a left-out optional argument reads as its default", () => {
    const x = Float32Array.from([-1, 2]);
    const a = f(2), b = f(2);
    raw("unary")(0, x, a); // neg, param left out
    raw("unary")(0, x, b, undefined);
    expect(Array.from(a)).toEqual([1, -2]);
    expect(Array.from(b)).toEqual([1, -2]);
  });
});
