import { isGradEnabled, keep, noGrad, tidy } from "./engine.js";
import { OpError } from "./errors.js";
import { formatShape, shapesEqual, type Shape } from "./shape.js";
import type { DType } from "./dtype.js";
import type { Tensor } from "./tensor.js";
import * as ops from "./ops/index.js";

/** What the backward of an op gets: the tensors it saved, its attributes, and input/output metadata. */
export interface GradContext<A> {
  readonly saved: readonly Tensor[];
  readonly attrs: A;
  readonly inputs: readonly { shape: Shape; dtype: DType }[];
  readonly outputs: readonly { shape: Shape; dtype: DType }[];
  /** Which inputs need a gradient; backward may return null for the others. */
  readonly needsGrad: readonly boolean[];
}

/** An op's backward: output gradients (null where an output got none) in, input gradients out. */
export type BackwardFn<A> = (dys: readonly (Tensor | null)[], ctx: GradContext<A>) => (Tensor | null)[];


/** Where an input gradient goes (internal to the tape). */
export interface Edge {
  node: Node | null;
  output: number;
  leaf: Tensor | null;
}

/**
 * One recorded op on the tape. A node lives while a tensor it produced, or a node downstream of it,
 * is alive (reference counted); when the last one goes, its saved tensors are released.
 */
export class Node {
  readonly op: string;
  private refs = 0;
  private savedTensors: Tensor[];
  private readonly savedVersions: number[];
  private readonly edges: (Edge | null)[];
  private readonly backwardFn: BackwardFn<any>;
  private readonly ctxBase: Omit<GradContext<any>, "saved">;
  private savedFreed = false;

  constructor(op: string, inputs: readonly Tensor[], outputs: readonly Tensor[], saved: readonly Tensor[], attrs: unknown, backward: BackwardFn<any>) {
    this.op = op;
    this.backwardFn = backward;
    // Saved tensors become internal handles outside every scope: tidy() cannot free them.
    this.savedTensors = saved.map((t) => t.viewAs(t.shape, t.strides, t.offset, false));
    this.savedVersions = saved.map((t) => t.storage.version);
    this.edges = inputs.map((t) => {
      if (!t.requiresGrad) return null;
      if (t.gradFn) {
        t.gradFn.ref();
        return { node: t.gradFn, output: t.gradOutput, leaf: null };
      }
      return { node: null, output: 0, leaf: t };
    });
    this.ctxBase = {
      attrs,
      inputs: inputs.map((t) => ({ shape: t.shape, dtype: t.dtype })),
      outputs: outputs.map((t) => ({ shape: t.shape, dtype: t.dtype })),
      needsGrad: inputs.map((t) => t.requiresGrad),
    };
  }

  /** @internal */
  ref(): void {
    this.refs++;
  }

  /** @internal Drops a reference; at zero, frees saved tensors and lets go of upstream nodes. */
  unref(): void {
    if (--this.refs > 0) return;
    this.freeSaved();
    for (const e of this.edges) e?.node?.unref();
    this.edges.length = 0;
  }

  /** @internal */
  freeSaved(): void {
    for (const t of this.savedTensors) t.dispose();
    this.savedTensors = [];
    this.savedFreed = true;
  }

  /** @internal */
  get inputEdges(): readonly (Edge | null)[] {
    return this.edges;
  }

  /** @internal */
  get numOutputs(): number {
    return this.ctxBase.outputs.length;
  }

  /** @internal */
  runBackward(dys: readonly (Tensor | null)[]): (Tensor | null)[] {
    if (this.savedFreed && this.savedVersions.length > 0) {
      throw new Error(`backward: the saved tensors of '${this.op}' were already freed by an earlier backward(); pass { retainGraph: true } to the first backward() to run it twice`);
    }
    for (let i = 0; i < this.savedTensors.length; i++) {
      const t = this.savedTensors[i]!;
      if (t.storage.version !== this.savedVersions[i]) {
        throw new Error(`backward: a tensor ${formatShape(t.shape)} ${t.dtype} saved by '${this.op}' was modified in place after it was saved; gradients would be wrong`);
      }
    }
    return this.backwardFn(dys, { ...this.ctxBase, saved: this.savedTensors });
  }
}

/**
 * @internal Records `outputs` of an op on the tape if grad mode is on and some input requires
 * grad. Float outputs of a compute dtype (f32, f64, bf16) get the node as their `gradFn`; f16 is
 * storage-only and carries no gradient.
 */
export function recordOp<A>(op: string, inputs: readonly Tensor[], outputs: readonly Tensor[], attrs: A, backward: BackwardFn<A> | undefined, save: (() => readonly Tensor[]) | undefined): void {
  if (!backward || !isGradEnabled() || !inputs.some((t) => t.requiresGrad)) return;
  const node = new Node(op, inputs, outputs, save ? save() : [], attrs, backward);
  outputs.forEach((t, i) => {
    if (t.dtype === "f32" || t.dtype === "f64" || t.dtype === "bf16") t.setGradFn(node, i);
  });
}

/** Options of {@link backward}. */
export interface BackwardOptions {
  /** Gradient of the output (default: ones; required unless the output has one element). With several outputs, one per output. */
  grad?: Tensor | readonly Tensor[];
  /** Keep saved tensors so that backward can run through the same graph again. */
  retainGraph?: boolean;
  /**
   * Called once for each leaf that this backward gives a gradient, as soon as that gradient is
   * final (no node still to run feeds it), while the rest of the backward has yet to run: data-parallel
   * training starts the all-reduce of a bucket of gradients here, so that it overlaps the backward of
   * the earlier layers. Runs inside the backward's `noGrad`/`tidy` scope: a tensor the callback makes
   * and must outlive the backward has to be `keep()`-ed.
   */
  onLeafReady?: (leaf: Tensor) => void;
}

/**
 * Reverse-mode autodiff: accumulates d(loss)/d(leaf) into `.grad` of every leaf tensor that
 * requires grad and that `loss` depends on. Intermediate gradients are freed as they are used.
 * `loss` may be a list of outputs, each with its own gradient in `options.grad`.
 */
export function backward(loss: Tensor | readonly Tensor[], options: BackwardOptions = {}): void {
  const roots = Array.isArray(loss) ? (loss as readonly Tensor[]) : [loss as Tensor];
  const given = options.grad === undefined ? undefined : Array.isArray(options.grad) ? (options.grad as readonly Tensor[]) : [options.grad as Tensor];
  if (given && given.length !== roots.length) throw new Error(`backward: ${roots.length} outputs but ${given.length} gradients`);
  roots.forEach((root, i) => {
    root.assertAlive("backward");
    if (!root.requiresGrad) {
      throw new OpError("backward", "this tensor does not require grad: no input of the ops that made it has requiresGrad = true", [root]);
    }
    const g = given?.[i];
    if (!g && root.size !== 1) throw new OpError("backward", `loss has ${root.size} elements; pass { grad } for a non-scalar output`, [root]);
    if (g && !shapesEqual(g.shape, root.shape)) {
      throw new OpError("backward", `grad shape ${formatShape(g.shape)} does not match the output shape`, [root, g]);
    }
  });
  noGrad(() =>
    tidy("backward", () => {
      const grads = new Map<Node, (Tensor | null)[]>();
      const starts: Node[] = [];
      const rootLeaves: Tensor[] = [];
      roots.forEach((root, i) => {
        const g = given?.[i];
        const seed = g ? ops.clone(g) : ops.onesLike(root);
        if (!root.gradFn) {
          accumulateLeaf(root, seed);
          rootLeaves.push(root);
          return;
        }
        let slot = grads.get(root.gradFn);
        if (!slot) {
          slot = new Array(root.gradFn.numOutputs).fill(null);
          grads.set(root.gradFn, slot);
          starts.push(root.gradFn);
        }
        const prev = slot[root.gradOutput];
        slot[root.gradOutput] = prev ? ops.add(prev, seed) : seed;
      });
      // Topological order by DFS post-order over the nodes reachable from the outputs.
      const order: Node[] = [];
      const seen = new Set<Node>();
      for (const start of starts) {
        if (seen.has(start)) continue;
        seen.add(start);
        const stack: [Node, number][] = [[start, 0]];
        while (stack.length) {
          const top = stack[stack.length - 1]!;
          const edges = top[0].inputEdges;
          if (top[1] < edges.length) {
            const e = edges[top[1]++];
            if (e?.node && !seen.has(e.node)) {
              seen.add(e.node);
              stack.push([e.node, 0]);
            }
          } else {
            order.push(top[0]);
            stack.pop();
          }
        }
      }
      // For onLeafReady: how many nodes still to run have an edge to each leaf.
      const onLeafReady = options.onLeafReady;
      const pendingEdges = new Map<Tensor, number>();
      if (onLeafReady) {
        for (const node of order) for (const e of node.inputEdges) if (e?.leaf) pendingEdges.set(e.leaf, (pendingEdges.get(e.leaf) ?? 0) + 1);
      }
      const touched = new Set<Tensor>(rootLeaves);
      const fired = new Set<Tensor>();
      const fire = (leaf: Tensor): void => {
        if (fired.has(leaf) || leaf.isDisposed) return;
        fired.add(leaf);
        onLeafReady!(leaf);
      };
      const settle = (node: Node): void => {
        if (!onLeafReady) return;
        for (const e of node.inputEdges) {
          if (!e?.leaf) continue;
          const left = pendingEdges.get(e.leaf)! - 1;
          pendingEdges.set(e.leaf, left);
          if (left === 0 && touched.has(e.leaf)) fire(e.leaf);
        }
      };
      for (let i = order.length - 1; i >= 0; i--) {
        const node = order[i]!;
        const dys = grads.get(node);
        grads.delete(node);
        if (!dys || dys.every((g) => g === null)) {
          settle(node);
          continue;
        }
        // Temporaries of this node's backward are freed as soon as it returns.
        const dxs = tidy(node.op, () => node.runBackward(dys));
        // Backward functions may hand back an incoming gradient, or one tensor for two inputs:
        // give each input its own handle so that freeing one never frees another.
        const owned = new Set<Tensor>();
        for (let k = 0; k < dxs.length; k++) {
          const dx = dxs[k];
          if (!dx) continue;
          if (owned.has(dx)) dxs[k] = dx.detach();
          owned.add(dxs[k]!);
        }
        for (const g of dys) if (g && !owned.has(g)) g.dispose();
        const edges = node.inputEdges;
        for (let k = 0; k < edges.length; k++) {
          const e = edges[k];
          const dx = dxs[k] ?? null;
          if (!dx) continue;
          if (!e) {
            dx.dispose();
            continue;
          }
          if (e.leaf) {
            accumulateLeaf(e.leaf, dx);
            touched.add(e.leaf);
          } else if (e.node) {
            let slot = grads.get(e.node);
            if (!slot) {
              slot = new Array(e.node.numOutputs).fill(null);
              grads.set(e.node, slot);
            }
            const prev = slot[e.output];
            if (prev) {
              slot[e.output] = ops.add(prev, dx);
              prev.dispose();
              dx.dispose();
            } else {
              slot[e.output] = dx;
            }
          }
        }
        if (!options.retainGraph) node.freeSaved();
        settle(node);
      }
      // Leaves that are outputs themselves (no node feeds them) are final now.
      if (onLeafReady) for (const leaf of touched) if ((pendingEdges.get(leaf) ?? 0) === 0) fire(leaf);
    }),
  );
}

function accumulateLeaf(leaf: Tensor, dx: Tensor): void {
  if (leaf.isDisposed) {
    dx.dispose();
    return;
  }
  if (!shapesEqual(dx.shape, leaf.shape)) {
    throw new Error(`backward: internal error, gradient ${formatShape(dx.shape)} for a leaf of shape ${formatShape(leaf.shape)}`);
  }
  const g = dx.dtype === leaf.dtype ? dx : ops.cast(dx, leaf.dtype);
  if (g !== dx) dx.dispose();
  if (leaf.grad) {
    const sum = ops.add(leaf.grad, g);
    leaf.grad.dispose();
    g.dispose();
    leaf.grad = keep(sum);
  } else {
    leaf.grad = keep(g.isContiguous ? g : ops.contiguous(g));
    if (leaf.grad !== g) g.dispose();
  }
}
