/** A tensor shape: sizes of each dimension, outermost first. */
export type Shape = readonly number[];

/** Number of elements of a shape (1 for a scalar `[]`). */
export function shapeSize(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major (C-order) element strides of a contiguous tensor of this shape. */
export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

/** `[2,3,4]` — shapes in error messages. */
export function formatShape(shape: Shape): string {
  return `[${shape.join(",")}]`;
}

/** Equal shapes. */
export function shapesEqual(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Throws unless `shape` is a list of non-negative safe integers. */
export function checkShape(shape: unknown, what = "shape"): asserts shape is Shape {
  if (!Array.isArray(shape)) throw new TypeError(`${what} must be an array of non-negative integers, got ${typeof shape}`);
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new TypeError(`${what} ${JSON.stringify(shape)} must hold non-negative integers`);
    }
  }
  if (shape.length > 8) throw new RangeError(`${what} ${formatShape(shape)} has rank ${shape.length}; at most 8 dimensions are supported`);
}

/**
 * NumPy broadcasting: aligns shapes on the right; each pair of sizes must be equal or one of them 1.
 * Returns null when the shapes do not broadcast.
 */
export function broadcastShapes(a: Shape, b: Shape): number[] | null {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/**
 * Strides that read a tensor of `shape`/`strides` as if broadcast to `target` (stride 0 along
 * broadcast dimensions). `shape` must broadcast to `target`.
 */
export function broadcastStrides(shape: Shape, strides: readonly number[], target: Shape): number[] {
  const out = new Array<number>(target.length).fill(0);
  const off = target.length - shape.length;
  for (let i = 0; i < shape.length; i++) {
    out[off + i] = shape[i] === 1 && target[off + i] !== 1 ? 0 : strides[i]!;
  }
  return out;
}

/** Normalises a possibly negative axis into [0, rank); throws a RangeError naming `op`. */
export function normalizeAxis(axis: number, rank: number, op: string): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= Math.max(rank, 1)) {
    throw new RangeError(`${op}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}

/** Normalises a list of axes (undefined = all), sorted and de-duplicated-checked. */
export function normalizeAxes(axes: number | readonly number[] | undefined, rank: number, op: string): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axes === "number" ? [axes] : [...axes];
  const out = list.map((a) => normalizeAxis(a, rank, op));
  const seen = new Set<number>();
  for (const a of out) {
    if (seen.has(a)) throw new RangeError(`${op}: axis ${a} is listed twice in ${JSON.stringify(list)}`);
    seen.add(a);
  }
  return out.sort((x, y) => x - y);
}
