// Shared helpers of the kernel tests: a small seeded generator and random arrays.

/** Float typed-array constructors the kernels accept. */
export type FloatCtor = Float32ArrayConstructor | Float64ArrayConstructor;

/** A seeded generator of uniforms in [0, 1) (mulberry32-style mixing). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` uniforms in [lo, hi) from `seed`, in an array of type `C`. */
export function randArray<C extends FloatCtor>(C: C, n: number, seed: number, lo = -2, hi = 2): InstanceType<C> {
  const r = rng(seed);
  const a = new C(n) as InstanceType<C>;
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}
