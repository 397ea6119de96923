import { castArray, fillArray, gatherRows, scatterAddRows } from "@modulora/kernels";
import { registerKernel } from "../backend.js";
import { dtypeInfo } from "../dtype.js";
import type { CastAttrs } from "../ops/cast.js";
import type { GatherAttrs } from "../ops/gather.js";
import type { InPlaceAttrs } from "../ops/inplace.js";
import { affineOp, binaryOp, copyStrided } from "@modulora/kernels";
import { broadcastStrides, shapeSize } from "../shape.js";
import { copyToContiguous } from "./shape.js";
import { farr, out } from "./util.js";
import type { Tensor } from "../tensor.js";

function dense(t: Tensor): Tensor {
  return t.isContiguous ? t : copyToContiguous(t);
}

/** Registers gather, scatterAdd, cast and the in-place update kernels. */
export function registerCpuIndexing(): void {
  registerKernel<GatherAttrs>("gather", "cpu", ([x, idx], { axis }) => {
    const xs = dense(x!);
    const is = dense(idx!);
    try {
      const shape = [...x!.shape.slice(0, axis), ...idx!.shape, ...x!.shape.slice(axis + 1)];
      const y = out(shape, x!.dtype);
      const outer = shapeSize(x!.shape.slice(0, axis));
      const inner = shapeSize(x!.shape.slice(axis + 1));
      if (y.size > 0) gatherRows(xs.view() as Float32Array, outer, x!.shape[axis]!, inner, is.view() as Int32Array, y.view() as Float32Array);
      return [y];
    } finally {
      if (xs !== x) xs.dispose();
      if (is !== idx) is.dispose();
    }
  });
  registerKernel<GatherAttrs>("scatterAdd", "cpu", ([src, idx], { axis, shape }) => {
    const ss = dense(src!);
    const is = dense(idx!);
    try {
      const y = out(shape!, src!.dtype);
      const outer = shapeSize(shape!.slice(0, axis));
      const inner = shapeSize(shape!.slice(axis + 1));
      if (ss.size > 0) scatterAddRows(ss.view() as Float32Array, outer, idx!.size, inner, is.view() as Int32Array, y.view() as Float32Array, shape![axis]!);
      return [y];
    } finally {
      if (ss !== src) ss.dispose();
      if (is !== idx) is.dispose();
    }
  });
  registerKernel<CastAttrs>("cast", "cpu", ([x], { dtype }) => {
    const xs = dense(x!);
    try {
      const y = out(x!.shape, dtype);
      if (y.size > 0) castArray(xs.view(), dtypeInfo(x!.dtype).code, y.view(), dtypeInfo(dtype).code, y.size);
      return [y];
    } finally {
      if (xs !== x) xs.dispose();
    }
  });
  // In-place updates write through the destination's own strides (views included).
  registerKernel<InPlaceAttrs>("assign", "cpu", ([dst, src]) => {
    copyStrided(dst!.shape, src!.storageArray(), broadcastStrides(src!.shape, src!.strides, dst!.shape), dst!.storageArray(), dst!.strides);
    return [];
  });
  registerKernel<InPlaceAttrs>("addInPlace", "cpu", ([dst, src], { alpha }) => {
    const s = alpha === 1 ? src! : scaled(src!, alpha);
    try {
      binaryOp("add", dst!.shape, farr(dst!), dst!.strides, farr(s), broadcastStrides(s.shape, s.strides, dst!.shape), farr(dst!));
    } finally {
      if (s !== src) s.dispose();
    }
    return [];
  });
  registerKernel<InPlaceAttrs>("scaleInPlace", "cpu", ([dst], { alpha, beta }) => {
    affineOp(dst!.view() as Float32Array, alpha, beta ?? 0, dst!.view() as Float32Array);
    return [];
  });
  registerKernel<InPlaceAttrs>("fillInPlace", "cpu", ([dst], { alpha }) => {
    fillArray(dst!.view(), alpha);
    return [];
  });
}

function scaled(t: Tensor, alpha: number): Tensor {
  const d = dense(t);
  const y = out(t.shape, t.dtype);
  affineOp(d.view() as Float32Array, alpha, 0, y.view() as Float32Array);
  if (d !== t) d.dispose();
  return y;
}
