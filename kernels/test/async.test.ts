// The async OPTQ binding (an AsyncWorker): bit-identical to the sync call, the same errors as
// rejections, an event loop that keeps running meanwhile, and a thread pool that serves the
// worker thread and the JS thread at once (a sync GEMM during the quantization gives the same
// result as alone, and so does the quantization).
import { describe, expect, it } from "vitest";
import { gemm, getNumThreads, native, optqQuantize, optqQuantizeAsync, setNumThreads, type OptqOptions, type OptqResult } from "../ts/index.js";
import { randArray } from "./helpers.js";

// H = (2/m) XᵀX of m random inputs (a DGEMM), W random: a layer of [out, n].
function layer(out: number, n: number, seed: number): { w: Float32Array; h: Float64Array } {
  const m = 2 * n;
  const x = randArray(Float64Array, m * n, seed, -0.5, 0.5);
  const h = new Float64Array(n * n);
  gemm(true, false, n, n, m, 2 / m, x, n, 0, x, n, 0, 0, h, n, 0);
  return { w: randArray(Float32Array, out * n, seed + 1, -0.1, 0.1), h };
}

function expectSame(got: OptqResult, want: OptqResult): void {
  // Buffer.compare is exact (bytewise) and fast on large arrays.
  expect(Buffer.compare(Buffer.from(got.codes.buffer), Buffer.from(want.codes.buffer))).toBe(0);
  expect(Buffer.compare(Buffer.from(got.scales.buffer), Buffer.from(want.scales.buffer))).toBe(0);
  expect(Buffer.compare(Buffer.from(got.zeros.buffer), Buffer.from(want.zeros.buffer))).toBe(0);
  expect(Array.from(got.gIdx)).toEqual(Array.from(want.gIdx));
}

// The error a call throws (sync) or rejects with (async).
function thrown(call: () => unknown): Error {
  try {
    call();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected the call to throw");
}
async function rejected(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected the promise to reject");
}

describe("optqQuantizeAsync equals optqQuantize", () => {
  const configs: [number, number, OptqOptions][] = [
    [6, 64, { bits: 3, groupSize: 16, blockSize: 24 }],
    [6, 64, { bits: 4, groupSize: 16, actOrder: true, staticGroups: true }],
    [40, 256, { bits: 2, groupSize: 64, symmetric: true, percdamp: 0.05 }],
    [96, 384, { bits: 8, groupSize: 128, actOrder: true, blockSize: 64 }],
  ];
  for (const [out, n, o] of configs) {
    it(`out ${out}, in ${n}, ${JSON.stringify(o)}: bit-identical`, async () => {
      const { w, h } = layer(out, n, out + n);
      const hBefore = Float64Array.from(h);
      const want = optqQuantize(w, h, out, n, o);
      const got = await optqQuantizeAsync(w, h, out, n, o);
      expectSame(got, want);
      expect(Array.from(h)).toEqual(Array.from(hBefore)); // the caller's H stays intact
    });
  }
});

describe("optqQuantizeAsync rejects with the error optqQuantize throws", () => {
  const { w, h } = layer(2, 8, 3);
  // A Hessian that stays indefinite after damping (found by the worker, not by the argument checks).
  const indefinite = new Float64Array(64);
  for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) indefinite[i * 8 + j] = i === j ? 1 : -0.9;
  const nanW = Float32Array.from(w, (v, i) => (i === 5 ? NaN : v));
  const cases: [string, Float32Array, Float64Array, OptqOptions, ErrorConstructor, RegExp][] = [
    ["w of the wrong type", new Float64Array(16) as never, h, { bits: 3, groupSize: 4 }, TypeError, /^optqQuantize: argument 'w' \(index 0\) must be a Float32Array, got Float64Array$/],
    ["bits 5", w, h, { bits: 5, groupSize: 4 }, RangeError, /^optqQuantize: argument 'bits' must be 2, 3, 4 or 8, got 5$/],
    ["negative percdamp", w, h, { bits: 3, groupSize: 4, percdamp: -1 }, RangeError, /^optqQuantize: argument 'percdamp' = -1 must be a finite number >= 0$/],
    ["a NaN weight", nanW, h, { bits: 3, groupSize: 4 }, RangeError, /^optqQuantize: w\[5\] is not finite$/],
    ["an indefinite Hessian", w, indefinite, { bits: 3, groupSize: 4, percdamp: 0 }, RangeError, /^optqQuantize: the Hessian is not positive definite after damping with percdamp = 0; pass a larger percdamp/],
  ];
  for (const [name, wi, hi, o, cls, re] of cases) {
    it(name, async () => {
      const sync = thrown(() => optqQuantize(wi, hi, 2, 8, o));
      expect(sync).toBeInstanceOf(cls);
      expect(sync.message).toMatch(re);
      const async = await rejected(optqQuantizeAsync(wi, hi, 2, 8, o));
      expect(async).toBeInstanceOf(cls);
      expect(async.message).toBe(sync.message);
    });
  }
  it("the raw binding checks its arguments before it queues the work (a sync throw)", () => {
    const raw = native().optqQuantizeAsync as unknown as (...a: unknown[]) => unknown;
    expect(() => raw(w)).toThrow(/^optqQuantize: expected 15 arguments \(w, h, outFeatures, inFeatures, bits, groupSize, symmetric, actOrder, staticGroups, percdamp, blockSize, codes, scales, zeros, gIdx\), got 1$/);
  });
});

describe("the event loop stays free while a layer is quantized", () => {
  it("setImmediate callbacks run before the promise settles", async () => {
    const out = 256, n = 768;
    const { w, h } = layer(out, n, 11);
    let turns = 0;
    let settled = false;
    const tick = (): void => {
      if (settled) return;
      turns++;
      setImmediate(tick);
    };
    const p = optqQuantizeAsync(w, h, out, n, { bits: 4, groupSize: 128 }).then((r) => {
      settled = true;
      return r;
    });
    setImmediate(tick);
    const got = await p;
    // The quantization (tens of milliseconds at least) left the loop turning; a sync call would
    // have run to completion before the first setImmediate.
    expect(turns).toBeGreaterThan(0);
    expectSame(got, optqQuantize(w, h, out, n, { bits: 4, groupSize: 128 }));
  });
});

describe("the thread pool serves the worker thread and the JS thread at once", () => {
  const M = 192, N = 160, K = 224;
  const a = randArray(Float32Array, M * K, 21), b = randArray(Float32Array, K * N, 22);
  const product = (): Float32Array => {
    const c = new Float32Array(M * N);
    gemm(false, false, M, N, K, 1, a, K, 0, b, N, 0, 0, c, N, 0);
    return c;
  };
  const wantC = product();
  const out = 256, n = 768;
  const { w, h } = layer(out, n, 31);
  const opts: OptqOptions = { bits: 3, groupSize: 128, actOrder: true };
  const wantQ = optqQuantize(w, h, out, n, opts);

  it("sync GEMMs during an async quantization: both results equal the results run alone", async () => {
    let settled = false;
    const p = optqQuantizeAsync(w, h, out, n, opts).then((r) => {
      settled = true;
      return r;
    });
    let products = 0;
    do {
      const c = product();
      expect(Buffer.compare(Buffer.from(c.buffer), Buffer.from(wantC.buffer))).toBe(0);
      products++;
      await new Promise((r) => setImmediate(r));
    } while (!settled);
    expect(products).toBeGreaterThan(0);
    expectSame(await p, wantQ);
  });

  it("two async quantizations at once, and setNumThreads while they run", async () => {
    const n0 = getNumThreads();
    try {
      const p1 = optqQuantizeAsync(w, h, out, n, opts);
      const p2 = optqQuantizeAsync(w, h, out, n, { ...opts, bits: 4 });
      // A new pool is swapped in while the workers may be inside a region of the old one.
      setNumThreads(n0 === 1 ? 2 : 1);
      const c = product();
      setNumThreads(n0 + 1);
      const [q1, q2] = await Promise.all([p1, p2]);
      expect(Buffer.compare(Buffer.from(c.buffer), Buffer.from(wantC.buffer))).toBe(0);
      expectSame(q1, wantQ);
      expectSame(q2, optqQuantize(w, h, out, n, { ...opts, bits: 4 }));
    } finally {
      setNumThreads(n0);
    }
  });
});
