// A small seeded PRNG for shuffling: sfc32 (Doty-Humphrey's Small Fast Counter, PractRand-clean)
// seeded through splitmix32 from (seed, stream). Deterministic across platforms: 32-bit integer
// arithmetic only.

/** splitmix32's output function: a 32-bit integer hash with good avalanche. */
export function splitmix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** A seeded generator of 32-bit integers; `stream` gives independent sequences for one seed (e.g. one per epoch). */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** @throws RangeError unless `seed` and `stream` are non-negative safe integers. */
  constructor(seed: number, stream = 0) {
    for (const [name, v] of [["seed", seed], ["stream", stream]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`Rng: ${name} must be a non-negative safe integer, got ${v}`);
    }
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 2 ** 32) >>> 0;
    const s = splitmix32(lo ^ splitmix32(hi ^ splitmix32(stream)));
    this.a = splitmix32(s);
    this.b = splitmix32(s + 1);
    this.c = splitmix32(s + 2);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.nextUint32(); // warm up, as sfc32's reference does
  }

  /** The next 32-bit unsigned integer. */
  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  nextFloat(): number {
    return this.nextUint32() / 2 ** 32;
  }

  /** Uniform integer in [0, n), by rejection (no modulo bias); n ≤ 2^32. */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) throw new RangeError(`Rng.nextInt: n must be an integer in [1, 2^32], got ${n}`);
    const limit = 2 ** 32 - (2 ** 32 % n);
    let x = this.nextUint32();
    while (x >= limit) x = this.nextUint32();
    return x % n;
  }
}

/** Fisher–Yates shuffle of `items` in place with `rng`; returns `items`. */
export function shuffleInPlace<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = items[i]!;
    items[i] = items[j]!;
    items[j] = t;
  }
  return items;
}
