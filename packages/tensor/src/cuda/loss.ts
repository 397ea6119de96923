// CUDA kernels of the loss ops (ops/loss.ts): cross-entropy forward and backward, softmax and
// logSoftmax with their backward kernels, and embedding, on the addon's `cuda.*` exports
// (kernels/src/cuda/loss.cu). Same kernel names, inputs, attributes, outputs and bf16 policy as
// cpu/loss.ts: for bf16 logits the loss (or per-row losses) and lse are f32.
import { registerKernel } from "../backend.js";
import { dtypeInfo } from "../dtype.js";
import { OpError } from "../errors.js";
import type { GatherAttrs } from "../ops/gather.js";
import type { CrossEntropyAttrs, SoftmaxAttrs } from "../ops/loss.js";
import { shapeSize } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { accDtype, filling, withDtype } from "./nn.js";
import { code, cudaFn, deviceIndex, empty, launch, ptr, withDense } from "./util.js";

/** Row axes the native row layout takes at most (nn.h's kMaxRankRows). */
const MAX_ROW_AXES = 8;

/** Axis sizes around `axis`: [outer, n, inner]. */
function around(shape: readonly number[], axis: number): [number, number, number] {
  return [shapeSize(shape.slice(0, axis)), shape[axis]!, shapeSize(shape.slice(axis + 1))];
}

/**
 * Runs `fn` with the logits and their row layout: read through their strides when the class axis
 * is contiguous (a slice of [B, T, V] logits is not copied), else from a contiguous copy (then
 * one row axis of stride V).
 */
function withRows<R>(logits: Tensor, fn: (x: Tensor, shape: number[], strides: number[]) => R): R {
  const r = logits.rank - 1;
  const v = logits.shape[r]!;
  if (logits.isContiguous) return fn(logits, [shapeSize(logits.shape.slice(0, r))], [v]);
  if ((logits.strides[r] === 1 || v === 1) && r <= MAX_ROW_AXES) {
    return fn(logits, logits.shape.slice(0, r), logits.strides.slice(0, r));
  }
  return withDense([logits], ([d]) => fn(d!, [shapeSize(d!.shape.slice(0, r))], [v]));
}

/**
 * Rethrows the native range error of a bad target or id (`cuda <op>: <message>`) as the CPU
 * kernels do: an {@link OpError} naming `op` with the same message. Other errors pass through
 * (to {@link launch}, which passes an OpError on unchanged and wraps the rest).
 */
function rangeAsOpError<T>(op: string, inputs: readonly Tensor[], pattern: RegExp, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const m = err instanceof Error && !(err instanceof OpError) ? pattern.exec(err.message) : null;
    if (m) throw new OpError(op, m[1]!, inputs);
    throw err;
  }
}

const TARGET_MESSAGE = /(target -?\d+ at row \d+ is outside \[0, \d+\) and is not ignoreIndex \(-?\d+\))/;
const ID_MESSAGE = /(id -?\d+ at flat position \d+ of ids is outside \[0, \d+\) \(weight has \d+ rows\))/;

const REDUCTION_CODE = { none: 0, sum: 1, mean: 2 } as const;

/** Registers the cross-entropy, softmax, logSoftmax and embedding kernels of the CUDA backend for `family`. */
export function registerCudaLoss(family: string): void {
  // [logits, targets] → [loss (or per-row losses), lse]. A bad target is found on the device and
  // read back (the call waits for the stream), then thrown as the CPU's OpError.
  registerKernel<CrossEntropyAttrs>("crossEntropy", family, (inputs, { ignoreIndex, reduction }) =>
    launch("crossEntropy", inputs, () =>
      rangeAsOpError("crossEntropy", inputs, TARGET_MESSAGE, () => {
        const [logits, targets] = inputs as [Tensor, Tensor];
        const v = logits.shape[logits.rank - 1]!;
        const n = targets.size;
        const acc = accDtype(logits.dtype);
        const lse = empty([n], acc, logits.device);
        const loss = empty(reduction === "none" ? targets.shape : [], acc, logits.device);
        return filling([loss, lse], () =>
          withDense([targets], ([t]) =>
            withRows(logits, (x, rowShape, rowStrides) => {
              cudaFn("crossEntropy")(
                deviceIndex(logits.device), code(logits.dtype), ptr(x), rowShape, rowStrides, v, ptr(t!), ignoreIndex,
                REDUCTION_CODE[reduction], ptr(lse), ptr(loss),
              );
            }),
          ),
        );
      }),
    ),
  );

  // [dy, logits, targets, lse] → [dlogits]: one upstream value per row ("none", read through its
  // stride when uniform) or one for all ("sum", "mean").
  registerKernel<CrossEntropyAttrs>("crossEntropyGrad", family, (inputs, { ignoreIndex, reduction }) =>
    launch("crossEntropyGrad", inputs, () => {
      const [dy, logits, targets, lse] = inputs as [Tensor, Tensor, Tensor, Tensor];
      const v = logits.shape[logits.rank - 1]!;
      const dlogits = empty(logits.shape, logits.dtype, logits.device);
      if (dlogits.size === 0) return [dlogits];
      const acc = accDtype(logits.dtype);
      return filling([dlogits], () =>
        withDtype(dy, acc, (g0) => {
          // "sum"/"mean": one value for all rows; "none": per row, through a uniform stride or a copy.
          const perRow = reduction === "none";
          const strided = perRow && !g0.isContiguous && !g0.strides.every((s) => s === 0);
          const gStride = perRow && (strided || g0.isContiguous) ? 1 : 0;
          withDense(strided ? [targets, lse, g0] : [targets, lse], ([t, l0, gd]) =>
            withDtype(l0!, acc, (l) =>
              withRows(logits, (x, rowShape, rowStrides) => {
                cudaFn("crossEntropyGrad")(
                  deviceIndex(logits.device), code(logits.dtype), ptr(x), rowShape, rowStrides, v, ptr(t!), ignoreIndex,
                  ptr(l), ptr(gd ?? g0), gStride, reduction === "mean", ptr(dlogits),
                );
              }),
            ),
          );
        }),
      );
    }),
  );

  for (const [name, log] of [["softmax", false], ["logSoftmax", true]] as const) {
    registerKernel<SoftmaxAttrs>(name, family, (inputs, { axis }) =>
      launch(name, inputs, () =>
        withDense(inputs, ([x]) => {
          const y = empty(x!.shape, x!.dtype, x!.device);
          return filling([y], () => {
            if (y.size > 0) cudaFn("softmax")(deviceIndex(x!.device), code(x!.dtype), ptr(x!), ...around(x!.shape, axis), log, ptr(y));
          });
        }),
      ),
    );
    registerKernel<SoftmaxAttrs>(`${name}Grad`, family, (inputs, { axis }) =>
      launch(`${name}Grad`, inputs, () =>
        withDense(inputs, ([y, dy]) => {
          const dx = empty(y!.shape, y!.dtype, y!.device);
          return filling([dx], () => {
            if (dx.size > 0) {
              cudaFn("softmaxGrad")(deviceIndex(y!.device), code(y!.dtype), ptr(y!), ptr(dy!), ...around(y!.shape, axis), log, ptr(dx));
            }
          });
        }),
      ),
    );
  }

  // Rows of weight [V, D] (read through its strides) picked by i32 ids; the range check runs on
  // the device and an id outside [0, V) is the CPU's OpError.
  registerKernel<GatherAttrs>("embedding", family, (inputs) =>
    launch("embedding", inputs, () =>
      rangeAsOpError("embedding", inputs, ID_MESSAGE, () => {
        const [weight, ids] = inputs as [Tensor, Tensor];
        const [rows, d] = weight.shape as [number, number];
        const y = empty([...ids.shape, d], weight.dtype, weight.device);
        return filling([y], () =>
          withDense([ids], ([idx]) => {
            if (idx!.size === 0) return;
            cudaFn("embedding")(
              deviceIndex(weight.device), dtypeInfo(weight.dtype).size, ptr(weight), rows, d, weight.strides[0]!, weight.strides[1]!,
              ptr(idx!), idx!.size, ptr(y),
            );
          }),
        );
      }),
    ),
  );
}
