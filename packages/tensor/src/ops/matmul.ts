// Batched matrix product with optional transposes and broadcast batch dimensions.
// Forward kernel: ../cpu/matmul.ts (one strided-batched GEMM call, no copies for plain views).
import { OpError } from "../errors.js";
import { checkFloat, runOp1, type OpDef } from "../op.js";
import { broadcastShapes, formatShape } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { sumToShape } from "./reduce.js";
import { reshape } from "./shape.js";

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /** Use the transpose of the last two dimensions of `a`. */
  transA?: boolean;
  /** Use the transpose of the last two dimensions of `b`. */
  transB?: boolean;
}

/** Attributes of matmul. */
export interface MatmulAttrs {
  readonly transA: boolean;
  readonly transB: boolean;
  /** Broadcast batch shape. */
  readonly batch: readonly number[];
  readonly m: number;
  readonly n: number;
  readonly k: number;
}

function mm(a: Tensor, b: Tensor, transA: boolean, transB: boolean, shape: readonly number[]): Tensor {
  const g = matmul(a, b, { transA, transB });
  const r = sumToShape(g, shape);
  if (r !== g) g.dispose();
  return r;
}

export const matmulDef: OpDef<MatmulAttrs> = {
  name: "matmul",
  save: ([a, b]) => [a!, b!],
  backward: ([g], ctx) => {
    const [a, b] = ctx.saved as [Tensor, Tensor];
    const { transA, transB } = ctx.attrs;
    const sa = ctx.inputs[0]!.shape;
    const sb = ctx.inputs[1]!.shape;
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    // Y = op(A)·op(B):  d op(A) = G·op(B)ᵀ,  d op(B) = op(A)ᵀ·G, transposed back where op() transposed.
    if (ctx.needsGrad[0]) da = transA ? mm(b, g!, transB, true, sa) : mm(g!, b, false, !transB, sa);
    if (ctx.needsGrad[1]) {
      if (sb.length === 2 && sa.length > 2 && !transA && a.isContiguous && g!.isContiguous) {
        // B shared by every batch entry (a linear layer): dB = Σ_batch A_bᵀ·G_b is one GEMM over
        // the batch rows stacked, [batch·M, K]ᵀ·[batch·M, N], not a batched product then a sum.
        const k = sa[sa.length - 1]!;
        const n = g!.shape[g!.rank - 1]!;
        const a2 = reshape(a, [-1, k]);
        const g2 = reshape(g!, [-1, n]);
        db = transB ? matmul(g2, a2, { transA: true }) : matmul(a2, g2, { transA: true });
      } else {
        db = transB ? mm(g!, a, true, transA, sb) : mm(a, g!, !transA, false, sb);
      }
    }
    return [da, db];
  },
};

/**
 * `op(a) · op(b)` over the last two dimensions, with the leading (batch) dimensions broadcast.
 * `a` is [..., M, K] (or [..., K, M] with `transA`), `b` is [..., K, N] (or [..., N, K] with `transB`).
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  a.assertAlive("matmul");
  b.assertAlive("matmul");
  checkFloat("matmul", [a, b]);
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  if (a.rank < 2 || b.rank < 2) throw new OpError("matmul", "both inputs need at least 2 dimensions; reshape vectors to [1, K] or [K, 1]", [a, b]);
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const m = transA ? ac : ar;
  const k = transA ? ar : ac;
  const kb = transB ? bc : br;
  const n = transB ? br : bc;
  if (k !== kb) {
    throw new OpError("matmul", `inner dimensions differ: op(a) is [${m},${k}] and op(b) is [${kb},${n}] (transA=${transA}, transB=${transB})`, [a, b]);
  }
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  if (!batch) throw new OpError("matmul", `batch dimensions ${formatShape(a.shape.slice(0, -2))} and ${formatShape(b.shape.slice(0, -2))} do not broadcast`, [a, b]);
  return runOp1(matmulDef, [a, b], { transA, transB, batch, m, n, k });
}
