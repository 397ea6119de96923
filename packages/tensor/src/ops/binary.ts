// Element-wise binary ops with NumPy broadcasting. Forward kernels: ../cpu/elementwise.ts.
import { OpError } from "../errors.js";
import { checkFloat, runOp1, type OpDef } from "../op.js";
import { broadcastShapes, formatShape } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { sumToShape } from "./reduce.js";
import { log, powScalar, reciprocal, scale } from "./unary.js";
import { full } from "./creation.js";

/** Binary element-wise ops. */
export type BinaryOpName = "add" | "sub" | "mul" | "div" | "maximum" | "minimum" | "pow" | "eq" | "gt" | "lt";

/** Attributes of binary ops: the broadcast output shape. */
export interface BinaryAttrs {
  readonly shape: readonly number[];
}

const both = (dy: Tensor, ctx: { inputs: readonly { shape: readonly number[] }[] }, i: number) => sumToShape(dy, ctx.inputs[i]!.shape);

/** The binary op definitions, backward beside each. */
export const binaryDefs: Record<BinaryOpName, OpDef<BinaryAttrs>> = {
  add: {
    name: "add",
    backward: ([dy], ctx) => [ctx.needsGrad[0] ? both(dy!, ctx, 0) : null, ctx.needsGrad[1] ? both(dy!, ctx, 1) : null],
  },
  sub: {
    name: "sub",
    backward: ([dy], ctx) => [ctx.needsGrad[0] ? both(dy!, ctx, 0) : null, ctx.needsGrad[1] ? neg1(both(dy!, ctx, 1)) : null],
  },
  mul: {
    name: "mul",
    save: ([a, b]) => [a!, b!],
    backward: ([dy], ctx) => {
      const [a, b] = ctx.saved;
      return [ctx.needsGrad[0] ? reduced(mul(dy!, b!), ctx.inputs[0]!.shape) : null, ctx.needsGrad[1] ? reduced(mul(dy!, a!), ctx.inputs[1]!.shape) : null];
    },
  },
  div: {
    name: "div",
    save: ([, b], [y]) => [b!, y!],
    backward: ([dy], ctx) => {
      const [b, y] = ctx.saved;
      const ga = ctx.needsGrad[0] ? reduced(div(dy!, b!), ctx.inputs[0]!.shape) : null;
      // d(a/b)/db = -a/b^2 = -y/b
      let gb: Tensor | null = null;
      if (ctx.needsGrad[1]) {
        const t = div(mul(dy!, y!), b!);
        gb = neg1(reduced(t, ctx.inputs[1]!.shape));
      }
      return [ga, gb];
    },
  },
  maximum: {
    name: "maximum",
    save: ([a, b]) => [a!, b!],
    backward: ([dy], ctx) => minmaxGrad(dy!, ctx.saved[0]!, ctx.saved[1]!, ctx, "gt"),
  },
  minimum: {
    name: "minimum",
    save: ([a, b]) => [a!, b!],
    backward: ([dy], ctx) => minmaxGrad(dy!, ctx.saved[0]!, ctx.saved[1]!, ctx, "lt"),
  },
  pow: {
    name: "pow",
    save: ([a, b], [y]) => [a!, b!, y!],
    backward: ([dy], ctx) => {
      const [a, b, y] = ctx.saved as [Tensor, Tensor, Tensor];
      // d(a^b)/da = b * a^(b-1);  d(a^b)/db = a^b * ln a
      const ga = ctx.needsGrad[0] ? reduced(mul(dy!, mul(b, binary("pow", a, sub(b, 1)))), ctx.inputs[0]!.shape) : null;
      const gb = ctx.needsGrad[1] ? reduced(mul(dy!, mul(y, log(a))), ctx.inputs[1]!.shape) : null;
      return [ga, gb];
    },
  },
  eq: { name: "eq" },
  gt: { name: "gt" },
  lt: { name: "lt" },
};

// Temporaries of a backward are freed by the per-node tidy in backward(); `t` may be the
// incoming gradient itself, so it is never disposed here.
function neg1(t: Tensor): Tensor {
  return scale(t, -1);
}

function reduced(t: Tensor, shape: readonly number[]): Tensor {
  const r = sumToShape(t, shape);
  if (r !== t) t.dispose();
  return r;
}

function minmaxGrad(dy: Tensor, a: Tensor, b: Tensor, ctx: { needsGrad: readonly boolean[]; inputs: readonly { shape: readonly number[] }[] }, strict: "gt" | "lt"): (Tensor | null)[] {
  // Ties split the gradient evenly between the two inputs.
  const winA = binary(strict, a, b);
  const tie = binary("eq", a, b);
  const half = scale(tie, 0.5);
  const maskA = add(winA, half);
  const maskB = sub(1, maskA);
  const out = [ctx.needsGrad[0] ? reduced(mul(dy, maskA), ctx.inputs[0]!.shape) : null, ctx.needsGrad[1] ? reduced(mul(dy, maskB), ctx.inputs[1]!.shape) : null];
  for (const t of [winA, tie, half, maskA, maskB]) t.dispose();
  return out;
}

/** Element-wise `op(a, b)` of two tensors with broadcasting. */
export function binary(op: BinaryOpName, a: Tensor, b: Tensor): Tensor {
  const def = binaryDefs[op];
  if (!def) throw new OpError(String(op), `unknown binary op; known: ${Object.keys(binaryDefs).join(", ")}`);
  a.assertAlive(op);
  b.assertAlive(op);
  checkFloat(op, [a, b]);
  const shape = broadcastShapes(a.shape, b.shape);
  if (!shape) throw new OpError(op, `shapes ${formatShape(a.shape)} and ${formatShape(b.shape)} do not broadcast`, [a, b]);
  return runOp1(def, [a, b], { shape });
}

function scalarLike(t: Tensor, value: number): Tensor {
  return full([], value, { dtype: t.dtype, device: t.device });
}

function withScalar(op: BinaryOpName, a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof a === "number" && typeof b === "number") throw new TypeError(`${op}: at least one argument must be a tensor`);
  if (typeof a !== "number" && typeof b !== "number") return binary(op, a, b);
  const t = (typeof a === "number" ? b : a) as Tensor;
  const s = scalarLike(t, (typeof a === "number" ? a : b) as number);
  try {
    return typeof a === "number" ? binary(op, s, t) : binary(op, t, s);
  } finally {
    s.dispose();
  }
}

/** `a + b` with broadcasting; either side may be a number. */
export function add(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === "number" && typeof a !== "number") return scale(a, 1, b);
  if (typeof a === "number" && typeof b !== "number") return scale(b, 1, a);
  return withScalar("add", a, b);
}

/** `a - b` with broadcasting; either side may be a number. */
export function sub(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === "number" && typeof a !== "number") return scale(a, 1, -b);
  if (typeof a === "number" && typeof b !== "number") return scale(b, -1, a);
  return withScalar("sub", a, b);
}

/** `a * b` with broadcasting; either side may be a number. */
export function mul(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === "number" && typeof a !== "number") return scale(a, b);
  if (typeof a === "number" && typeof b !== "number") return scale(b, a);
  return withScalar("mul", a, b);
}

/** `a / b` with broadcasting; either side may be a number. */
export function div(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === "number" && typeof a !== "number") return scale(a, 1 / b);
  if (typeof a === "number" && typeof b !== "number") {
    const r = reciprocal(b);
    try {
      return scale(r, a);
    } finally {
      r.dispose();
    }
  }
  return withScalar("div", a, b);
}

/** Element-wise maximum (ties split the gradient). */
export function maximum(a: Tensor | number, b: Tensor | number): Tensor {
  return withScalar("maximum", a, b);
}

/** Element-wise minimum (ties split the gradient). */
export function minimum(a: Tensor | number, b: Tensor | number): Tensor {
  return withScalar("minimum", a, b);
}

/** `a ** b` element-wise; a number exponent uses {@link powScalar}. */
export function pow(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === "number") return powScalar(a, b);
  return binary("pow", a, b);
}

/** 1 where `a == b`, else 0 (no gradient). */
export function equal(a: Tensor | number, b: Tensor | number): Tensor {
  return withScalar("eq", a, b);
}

/** 1 where `a > b`, else 0 (no gradient). */
export function greater(a: Tensor | number, b: Tensor | number): Tensor {
  return withScalar("gt", a, b);
}

/** 1 where `a < b`, else 0 (no gradient). */
export function less(a: Tensor | number, b: Tensor | number): Tensor {
  return withScalar("lt", a, b);
}
