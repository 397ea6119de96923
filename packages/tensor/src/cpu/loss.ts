// CPU kernels of the loss ops (ops/loss.ts): cross-entropy on the native chunked kernels
// (kernels/src/cpu/loss.cc), softmax / logSoftmax, and embedding over the gather kernel.
import { crossEntropyBackward, crossEntropyForward, softmaxBackward, softmaxForward, type FloatArray, type RowLayout } from "@modulora/kernels";
import { getKernel, registerKernel, type Device } from "../backend.js";
import { noGrad } from "../engine.js";
import { OpError } from "../errors.js";
import type { GatherAttrs } from "../ops/gather.js";
import type { CrossEntropyAttrs, SoftmaxAttrs } from "../ops/loss.js";
import { contiguous } from "../ops/shape.js";
import { shapeSize } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { outputOn, registerFloatKernel } from "./util.js";
import { hostArray, hostView } from "./host.js";

/** Runs `fn` on contiguous versions of `inputs` (copies only the non-contiguous ones). */
function withDense<T>(inputs: readonly Tensor[], fn: (ts: Tensor[]) => T): T {
  const ds = inputs.map((t) => (t.isContiguous ? t : noGrad(() => contiguous(t))));
  try {
    return fn(ds);
  } finally {
    ds.forEach((d, i) => {
      if (d !== inputs[i]) d.dispose();
    });
  }
}

const f = (t: Tensor): FloatArray => hostView(t) as FloatArray;

/**
 * Runs `fn` with the logits as rows: read through their strides when the class axis is
 * contiguous (so a slice of [B, T, V] logits is not copied), else from a contiguous copy.
 */
function withRows<T>(logits: Tensor, fn: (data: FloatArray, rows: RowLayout) => T): T {
  const r = logits.rank - 1;
  if (logits.strides[r] === 1 || logits.shape[r] === 1) {
    return fn(hostArray(logits) as FloatArray, { shape: logits.shape.slice(0, r), strides: logits.strides.slice(0, r) });
  }
  return withDense([logits], ([d]) => fn(f(d!), { shape: d!.shape.slice(0, r), strides: d!.strides.slice(0, r) }));
}

/** The native kernels report bad targets as "<op>: ..." RangeErrors; the engine reports OpErrors. */
function asOpError<T>(op: string, inputs: readonly Tensor[], fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof RangeError && err.message.startsWith(`${op}: `)) throw new OpError(op, err.message.slice(op.length + 2), inputs);
    throw err;
  }
}

/** Axis sizes around `axis`: [outer, n, inner]. */
function around(shape: readonly number[], axis: number): [number, number, number] {
  return [shapeSize(shape.slice(0, axis)), shape[axis]!, shapeSize(shape.slice(axis + 1))];
}

/** Registers the cross-entropy, softmax, logSoftmax and embedding CPU kernels. */
export function registerCpuLoss(device: Device): void {
  const out = outputOn(device);
  registerFloatKernel<CrossEntropyAttrs>("crossEntropy", device, (inputs, { ignoreIndex, reduction }) => {
    const [logits, targets] = inputs as [Tensor, Tensor];
    const v = logits.shape[logits.rank - 1]!;
    const n = targets.size;
    const lse = out([n], logits.dtype);
    const rows = out(reduction === "none" ? targets.shape : [n], logits.dtype);
    const counted = withDense([targets], ([t]) =>
      withRows(logits, (data, layout) =>
        asOpError("crossEntropy", inputs, () => crossEntropyForward(data, layout, v, hostView(t!) as Int32Array, ignoreIndex, f(lse), f(rows))),
      ),
    );
    if (reduction === "none") return [rows, lse]; // f32Outputs: bf16 logits give f32 per-row losses too
    // Ignored rows hold 0; the sum runs in double, in row order.
    const r = f(rows);
    let total = 0;
    for (let i = 0; i < n; i++) total += r[i]!;
    rows.dispose();
    const loss = out([], logits.dtype);
    f(loss)[0] = reduction === "sum" ? total : counted ? total / counted : 0;
    return [loss, lse];
  }, { f32Outputs: [0, 1] }); // the loss is f32 for bf16 logits, and so is lse (the backward's statistics)

  registerFloatKernel<CrossEntropyAttrs>("crossEntropyGrad", device, (inputs, { ignoreIndex, reduction }) => {
    const [dy, logits, targets, lse] = inputs as [Tensor, Tensor, Tensor, Tensor];
    const v = logits.shape[logits.rank - 1]!;
    const dlogits = out(logits.shape, logits.dtype);
    if (dlogits.size === 0) return [dlogits];
    // One upstream value per row ("none", read through its strides when they are uniform) or one for all.
    const uniform = reduction !== "none" || dy.isContiguous || dy.strides.every((s) => s === 0);
    const gStride = reduction === "none" && dy.isContiguous ? 1 : 0;
    withDense(uniform ? [targets, lse] : [targets, lse, dy], ([t, l, g]) =>
      withRows(logits, (data, layout) =>
        asOpError("crossEntropyBackward", inputs, () =>
          crossEntropyBackward(
            data, layout, v, hostView(t!) as Int32Array, ignoreIndex, f(l!),
            g ? f(g) : (hostArray(dy) as FloatArray), g ? 1 : gStride, reduction === "mean", f(dlogits),
          ),
        ),
      ),
    );
    return [dlogits];
  });

  for (const [name, log] of [["softmax", false], ["logSoftmax", true]] as const) {
    registerFloatKernel<SoftmaxAttrs>(name, device, (inputs, { axis }) =>
      withDense(inputs, ([x]) => {
        const y = out(x!.shape, x!.dtype);
        if (y.size > 0) softmaxForward(f(x!), ...around(x!.shape, axis), f(y), log);
        return [y];
      }),
    );
    registerFloatKernel<SoftmaxAttrs>(`${name}Grad`, device, (inputs, { axis }) =>
      withDense(inputs, ([y, dy]) => {
        const dx = out(y!.shape, y!.dtype);
        if (dx.size > 0) softmaxBackward(f(y!), f(dy!), ...around(y!.shape, axis), f(dx), log);
        return [dx];
      }),
    );
  }

  // The gather kernel, after a range check that names the op.
  registerKernel<GatherAttrs>("embedding", device, (inputs, attrs) => {
    const [weight, ids] = inputs as [Tensor, Tensor];
    const rows = weight.shape[0]!;
    withDense([ids], ([d]) => {
      const idx = hostView(d!) as Int32Array;
      for (let i = 0; i < idx.length; i++) {
        const id = idx[i]!;
        if (id < 0 || id >= rows) {
          throw new OpError("embedding", `id ${id} at flat position ${i} of ids is outside [0, ${rows}) (weight has ${rows} rows)`, inputs);
        }
      }
    });
    return getKernel<GatherAttrs>("gather", device)(inputs, attrs);
  });
}
