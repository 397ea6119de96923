// Element-wise unary ops. The forward is one kernel; the backward is one fused kernel
// (`unaryGrad`) computing dx = dy * f'(x) from the saved x and y = f(x).
import { OpError } from "../errors.js";
import { checkFloat, runOp1, type OpDef } from "../op.js";
import type { Tensor } from "../tensor.js";

/** Unary element-wise ops. */
export type UnaryOpName = "neg" | "exp" | "log" | "sqrt" | "rsqrt" | "abs" | "relu" | "sigmoid" | "tanh" | "silu" | "square" | "reciprocal" | "sign" | "powScalar";

/** Attributes of unary ops. */
export interface UnaryAttrs {
  readonly op: UnaryOpName;
  /** Exponent of `powScalar`. */
  readonly param: number;
}

/** Attributes of `scale`: y = alpha * x + beta. */
export interface ScaleAttrs {
  readonly alpha: number;
  readonly beta: number;
}

/** The generic unary op: one definition, the op name is an attribute. */
export const unaryDef: OpDef<UnaryAttrs> = {
  name: "unary",
  save: ([x], [y]) => [x!, y!],
  backward: ([dy], ctx) => {
    if (ctx.attrs.op === "sign") return [null];
    return [unaryGradOf(ctx.attrs, ctx.saved[0]!, ctx.saved[1]!, dy!)];
  },
};

/** Backward kernel as an op (not differentiable itself). */
export const unaryGradDef: OpDef<UnaryAttrs> = { name: "unaryGrad" };

function unaryGradOf(attrs: UnaryAttrs, x: Tensor, y: Tensor, dy: Tensor): Tensor {
  return runOp1(unaryGradDef, [x, y, dy], attrs);
}

/** `y = alpha * x + beta`. */
export const scaleDef: OpDef<ScaleAttrs> = {
  name: "scale",
  backward: ([dy], ctx) => [scale(dy!, ctx.attrs.alpha)],
};

/** Applies a unary op element-wise. */
export function unary(op: UnaryOpName, x: Tensor, param = 0): Tensor {
  if (!UNARY_NAMES.has(op)) throw new OpError(String(op), `unknown unary op; known: ${[...UNARY_NAMES].join(", ")}`);
  x.assertAlive(op);
  checkFloat(op, [x]);
  return runOp1(unaryDef, [x], { op, param });
}

const UNARY_NAMES = new Set<UnaryOpName>(["neg", "exp", "log", "sqrt", "rsqrt", "abs", "relu", "sigmoid", "tanh", "silu", "square", "reciprocal", "sign", "powScalar"]);

/** `alpha * x + beta` in one pass. */
export function scale(x: Tensor, alpha: number, beta = 0): Tensor {
  x.assertAlive("scale");
  checkFloat("scale", [x]);
  if (!Number.isFinite(alpha) || !Number.isFinite(beta)) throw new OpError("scale", `alpha and beta must be finite numbers, got ${alpha} and ${beta}`, [x]);
  return runOp1(scaleDef, [x], { alpha, beta });
}

/** `-x`. */
export const neg = (x: Tensor): Tensor => unary("neg", x);
/** `e^x`. */
export const exp = (x: Tensor): Tensor => unary("exp", x);
/** Natural logarithm. */
export const log = (x: Tensor): Tensor => unary("log", x);
/** Square root. */
export const sqrt = (x: Tensor): Tensor => unary("sqrt", x);
/** `1 / sqrt(x)`. */
export const rsqrt = (x: Tensor): Tensor => unary("rsqrt", x);
/** `|x|` (gradient 0 at 0). */
export const abs = (x: Tensor): Tensor => unary("abs", x);
/** `max(x, 0)` (gradient 0 at 0). */
export const relu = (x: Tensor): Tensor => unary("relu", x);
/** `1 / (1 + e^-x)`. */
export const sigmoid = (x: Tensor): Tensor => unary("sigmoid", x);
/** Hyperbolic tangent. */
export const tanh = (x: Tensor): Tensor => unary("tanh", x);
/** `x * sigmoid(x)` (SiLU / swish). */
export const silu = (x: Tensor): Tensor => unary("silu", x);
/** `x^2`. */
export const square = (x: Tensor): Tensor => unary("square", x);
/** `1 / x`. */
export const reciprocal = (x: Tensor): Tensor => unary("reciprocal", x);
/** -1, 0 or 1 (no gradient). */
export const sign = (x: Tensor): Tensor => unary("sign", x);
/** `x ** p` for a number `p`. */
export const powScalar = (x: Tensor, p: number): Tensor => unary("powScalar", x, p);
