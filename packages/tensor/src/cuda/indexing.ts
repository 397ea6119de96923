// Indexing and in-place kernels of the CUDA backend: gather (any dtype, any axis, x and indices
// read through their strides), scatterAdd (f32/f64/bf16, accumulated in index order without
// atomics; bf16 in an f32 scratch rounded once), cast (every pair of the 8 dtypes, the CPU's
// rounding and truncation; a cast to an integer dtype checks every element and throws before
// writing), and the in-place updates assign, addInPlace, scaleInPlace and fillInPlace, which write
// through the destination's strides.
import { registerKernel } from "../backend.js";
import { dtypeInfo } from "../dtype.js";
import { OpError } from "../errors.js";
import type { CastAttrs } from "../ops/cast.js";
import type { GatherAttrs } from "../ops/gather.js";
import type { InPlaceAttrs } from "../ops/inplace.js";
import { broadcastStrides } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { CUDA_ADD_SCALED, cudaAffine, cudaBinary } from "./elementwise.js";
import { checkFloatInputs, cudaCopy } from "./shape.js";
import { code, cudaFn, deviceIndex, empty, launch, ptr } from "./util.js";

function checkIndices(op: string, inputs: readonly Tensor[], idx: Tensor): void {
  if (idx.dtype !== "i32") throw new OpError(op, `indices must be i32, got ${idx.dtype}`, inputs);
}

/** Registers gather, scatterAdd, cast and the in-place update kernels for `family`. */
export function registerCudaIndexing(family: string): void {
  registerKernel<GatherAttrs>("gather", family, (inputs, { axis }) => {
    const [x, idx] = inputs as [Tensor, Tensor];
    checkIndices("gather", inputs, idx);
    const shape = [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)];
    const y = empty(shape, x.dtype, x.device);
    if (y.size > 0) {
      launch("gather", inputs, () =>
        cudaFn("gather")(deviceIndex(x.device), dtypeInfo(x.dtype).size, [...x.shape], ptr(x), [...x.strides], axis, [...idx.shape], ptr(idx), [...idx.strides], ptr(y)),
      );
    }
    return [y];
  });
  registerKernel<GatherAttrs>("scatterAdd", family, (inputs, { axis, shape }) => {
    const [src, idx] = inputs as [Tensor, Tensor];
    checkFloatInputs("scatterAdd", [src]);
    checkIndices("scatterAdd", inputs, idx);
    if (!shape) throw new OpError("scatterAdd", "the shape attribute (of the gathered tensor) is required", inputs);
    const y = empty(shape, src.dtype, src.device);
    if (y.size > 0) {
      launch("scatterAdd", inputs, () =>
        cudaFn("scatterAdd")(deviceIndex(src.device), code(src.dtype), [...shape], axis, ptr(src), [...src.shape], [...src.strides], [...idx.shape], ptr(idx), [...idx.strides], ptr(y)),
      );
    }
    return [y];
  });
  registerKernel<CastAttrs>("cast", family, (inputs, { dtype }) => {
    const x = inputs[0]!;
    const y = empty(x.shape, dtype, x.device);
    if (y.size > 0) {
      try {
        launch("cast", inputs, () => cudaFn("cast")(deviceIndex(x.device), code(x.dtype), code(dtype), [...x.shape], ptr(x), [...x.strides], ptr(y)));
      } catch (err) {
        y.dispose();
        throw err;
      }
    }
    return [y];
  });
  registerKernel<InPlaceAttrs>("assign", family, (inputs) => {
    const [dst, src] = inputs as [Tensor, Tensor];
    if (dst.size > 0) launch("assign", inputs, () => cudaCopy(src, dst, dst.shape, broadcastStrides(src.shape, src.strides, dst.shape), dst.strides));
    return [];
  });
  registerKernel<InPlaceAttrs>("addInPlace", family, (inputs, { alpha }) => {
    const [dst, src] = inputs as [Tensor, Tensor];
    checkFloatInputs("addInPlace", inputs);
    if (dst.dtype !== src.dtype) throw new OpError("addInPlace", `source and destination dtypes differ (${src.dtype}, ${dst.dtype}); cast first`, inputs);
    if (dst.size > 0) launch("addInPlace", inputs, () => cudaBinary(CUDA_ADD_SCALED, dst.shape, dst, src, dst, alpha));
    return [];
  });
  registerKernel<InPlaceAttrs>("scaleInPlace", family, (inputs, { alpha, beta }) => {
    const dst = inputs[0]!;
    checkFloatInputs("scaleInPlace", inputs);
    if (dst.size > 0) launch("scaleInPlace", inputs, () => cudaAffine(dst, dst, alpha, beta ?? 0));
    return [];
  });
  registerKernel<InPlaceAttrs>("fillInPlace", family, (inputs, { alpha }) => {
    const dst = inputs[0]!;
    checkFloatInputs("fillInPlace", inputs);
    // bf16 takes the CPU's route: the value rounded to f32, then to bf16.
    if (dst.size > 0) launch("fillInPlace", inputs, () => cudaFn("fill")(deviceIndex(dst.device), code(dst.dtype), [...dst.shape], ptr(dst), [...dst.strides], alpha, dst.dtype === "bf16"));
    return [];
  });
}
