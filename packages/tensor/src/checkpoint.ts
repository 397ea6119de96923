// Activation checkpointing: keep only a block's inputs, re-run the block in backward.
import { backward, Node } from "./autograd.js";
import { enableGrad, isGradEnabled, noGrad, tidy } from "./engine.js";
import { OpError } from "./errors.js";
import type { Tensor } from "./tensor.js";

/**
 * Runs `fn(...inputs)` without recording its intermediate tensors, and records one tape node that
 * keeps only `inputs`. In backward, the node re-runs `fn` with recording on (on detached copies
 * of the inputs) and back-propagates the incoming gradients through that fresh graph: gradients
 * reach the inputs and every parameter `fn` uses (closures included), exactly as without
 * checkpointing, at the cost of a second forward. `fn` must be deterministic (seeded dropout is).
 *
 * Unlike a plain op, the node is recorded whenever grad mode is on, even if no input requires
 * grad, so that parameters used inside `fn` still get gradients (the first block of a model whose
 * embeddings are frozen).
 */
export function checkpoint<R extends Tensor | Tensor[]>(fn: (...xs: Tensor[]) => R, inputs: readonly Tensor[]): R {
  for (const t of inputs) t.assertAlive("checkpoint");
  if (!isGradEnabled()) return fn(...inputs);
  // Intermediates of this forward are freed right away; only the outputs survive.
  const result = noGrad(() => tidy("checkpoint", () => fn(...inputs)));
  const outputs = (Array.isArray(result) ? result : [result]) as Tensor[];
  for (const o of outputs) {
    if (inputs.includes(o)) throw new OpError("checkpoint", "fn returned one of its inputs unchanged; checkpoint a function that computes something");
  }
  const node = new Node("checkpoint", inputs, outputs, inputs, {}, (dys, ctx) =>
    enableGrad(() =>
      tidy("checkpoint", () => {
        const leaves = ctx.saved.map((t, i) => {
          const d = t.detach();
          if (ctx.needsGrad[i]) d.requiresGrad = true;
          return d;
        });
        const again = fn(...leaves);
        const outs = (Array.isArray(again) ? again : [again]) as Tensor[];
        const roots: Tensor[] = [];
        const grads: Tensor[] = [];
        outs.forEach((o, i) => {
          const g = dys[i];
          if (g && o.requiresGrad) {
            roots.push(o);
            grads.push(g);
          }
        });
        if (roots.length > 0) backward(roots, { grad: grads });
        // Hand the input gradients out of the leaves before tidy disposes the leaves.
        return leaves.map((l) => {
          const g = l.grad;
          l.grad = null;
          return g;
        });
      }),
    ),
  );
  let held = false;
  outputs.forEach((o, i) => {
    if (o.dtype === "f32" || o.dtype === "f64" || o.dtype === "bf16") {
      o.setGradFn(node, i);
      held = true;
    }
  });
  if (!held) node.unref(); // no float output: nothing can carry a gradient, free the inputs now
  return result;
}
