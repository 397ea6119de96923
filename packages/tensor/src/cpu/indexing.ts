import { castArray, fillArray, gatherRows, scatterAddRows } from "@modulora/kernels";
import { registerKernel, type Device } from "../backend.js";
import { dtypeInfo } from "../dtype.js";
import type { CastAttrs } from "../ops/cast.js";
import type { GatherAttrs } from "../ops/gather.js";
import type { InPlaceAttrs } from "../ops/inplace.js";
import { affineOp, binaryOp, copyStrided } from "@modulora/kernels";
import { broadcastStrides, shapeSize } from "../shape.js";
import { copyToContiguous } from "./shape.js";
import { farr, outputOn, registerFloatKernel } from "./util.js";
import { hostArray, hostView } from "./host.js";
import { Tensor } from "../tensor.js";

function dense(t: Tensor): Tensor {
  return t.isContiguous ? t : copyToContiguous(t);
}

/**
 * Registers gather, scatterAdd, cast and the in-place update kernels. gather, cast and assign move
 * bits of any dtype; scatterAdd and the arithmetic in-place updates serve bf16 through
 * {@link registerFloatKernel}.
 */
export function registerCpuIndexing(device: Device): void {
  const out = outputOn(device);
  registerKernel<GatherAttrs>("gather", device, ([x, idx], { axis }) => {
    const xs = dense(x!);
    const is = dense(idx!);
    try {
      const shape = [...x!.shape.slice(0, axis), ...idx!.shape, ...x!.shape.slice(axis + 1)];
      const y = out(shape, x!.dtype);
      const outer = shapeSize(x!.shape.slice(0, axis));
      const inner = shapeSize(x!.shape.slice(axis + 1));
      if (y.size > 0) gatherRows(hostView(xs) as Float32Array, outer, x!.shape[axis]!, inner, hostView(is) as Int32Array, hostView(y) as Float32Array);
      return [y];
    } finally {
      if (xs !== x) xs.dispose();
      if (is !== idx) is.dispose();
    }
  });
  registerFloatKernel<GatherAttrs>("scatterAdd", device, ([src, idx], { axis, shape }) => {
    const ss = dense(src!);
    const is = dense(idx!);
    try {
      const y = out(shape!, src!.dtype);
      hostView(y).fill(0); // rows no index points at stay zero
      const outer = shapeSize(shape!.slice(0, axis));
      const inner = shapeSize(shape!.slice(axis + 1));
      if (ss.size > 0) scatterAddRows(hostView(ss) as Float32Array, outer, idx!.size, inner, hostView(is) as Int32Array, hostView(y) as Float32Array, shape![axis]!);
      return [y];
    } finally {
      if (ss !== src) ss.dispose();
      if (is !== idx) is.dispose();
    }
  }); // bf16 rows accumulate in f32, rounded once
  registerKernel<CastAttrs>("cast", device, ([x], { dtype }) => {
    const xs = dense(x!);
    try {
      const y = out(x!.shape, dtype);
      if (y.size > 0) castArray(hostView(xs), dtypeInfo(x!.dtype).code, hostView(y), dtypeInfo(dtype).code, y.size);
      return [y];
    } finally {
      if (xs !== x) xs.dispose();
    }
  });
  // In-place updates write through the destination's own strides (views included).
  registerKernel<InPlaceAttrs>("assign", device, ([dst, src]) => {
    copyStrided(dst!.shape, hostArray(src!), broadcastStrides(src!.shape, src!.strides, dst!.shape), hostArray(dst!), dst!.strides);
    return [];
  });
  registerFloatKernel<InPlaceAttrs>("addInPlace", device, ([dst, src], { alpha }) => {
    const s = alpha === 1 ? src! : scaled(src!, alpha);
    try {
      binaryOp("add", dst!.shape, farr(dst!), dst!.strides, farr(s), broadcastStrides(s.shape, s.strides, dst!.shape), farr(dst!));
    } finally {
      if (s !== src) s.dispose();
    }
    return [];
  }, { inPlace: 1 });
  registerFloatKernel<InPlaceAttrs>("scaleInPlace", device, ([dst], { alpha, beta }) => {
    affineOp(hostView(dst!) as Float32Array, alpha, beta ?? 0, hostView(dst!) as Float32Array);
    return [];
  }, { inPlace: 1 });
  registerFloatKernel<InPlaceAttrs>("fillInPlace", device, ([dst], { alpha }) => {
    fillArray(hostView(dst!), alpha);
    return [];
  }, { inPlace: 1 });
}

function scaled(t: Tensor, alpha: number): Tensor {
  const d = dense(t);
  const y = Tensor.empty(t.shape, t.dtype, t.device);
  affineOp(hostView(d) as Float32Array, alpha, 0, hostView(y) as Float32Array);
  if (d !== t) d.dispose();
  return y;
}
