// Bindings of the element-wise, reduction, copy, cast, indexing and creation kernels:
// `cuda.<name>(device, ...)` exports that read their positional arguments and call the launchers
// of elementwise.h. The TypeScript kernels (packages/tensor/src/cuda/elementwise.ts and friends)
// have validated shapes, dtypes and attributes; these check what the kernels rely on (value ranges
// of integer fills, the seed) and pass device addresses through.
//
//   binary(dev, op, dtype, shape, a, aStrides, b, bStrides, out, outStrides, alpha)
//   unary(dev, op, dtype, shape, x, xStrides, y, param)
//   unaryGrad(dev, op, dtype, shape, x, xStrides, y, yStrides, dy, dyStrides, dx, param)
//   affine(dev, dtype, shape, x, xStrides, out, outStrides, alpha, beta)
//   fill(dev, dtype, shape, dst, dstStrides, value, viaF32)
//   arange(dev, dtype, n, dst, start, step)
//   random(dev, dtype, n, dst, normal, seed, offset, a, b)
//   reduce(dev, op, dtype, shape, x, xStrides, axes, out)
//   copyStrided(dev, elemSize, shape, src, srcStrides, dst, dstStrides)
//   cast(dev, srcDtype, dstDtype, shape, src, srcStrides, dst)
//   gather(dev, elemSize, xShape, x, xStrides, axis, idxShape, idx, idxStrides, y)
//   scatterAdd(dev, dtype, shape, axis, src, srcShape, srcStrides, idxShape, idx, idxStrides, y)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/elementwise.h"
#include "cuda/runtime.h"

namespace modulora {
namespace cuda {
namespace {

// Dtype codes (common.cuh's Code, repeated here: this file is compiled by the host compiler).
constexpr int kCodeI32 = 4, kCodeI8 = 5, kCodeU8 = 6, kCodeU32 = 7;

Napi::Value Binary(CudaCall& a) {
  EwBinaryLaunch(a.ctx(), static_cast<int>(a.i(1)), static_cast<int>(a.i(2)), a.list(3), a.ptr(4), a.list(5), a.ptr(6),
                 a.list(7), a.ptr(8), a.list(9), a.num(10));
  return a.env().Undefined();
}

Napi::Value Unary(CudaCall& a) {
  EwUnaryLaunch(a.ctx(), static_cast<int>(a.i(1)), static_cast<int>(a.i(2)), a.list(3), a.ptr(4), a.list(5), a.ptr(6),
                a.num(7));
  return a.env().Undefined();
}

Napi::Value UnaryGrad(CudaCall& a) {
  EwUnaryGradLaunch(a.ctx(), static_cast<int>(a.i(1)), static_cast<int>(a.i(2)), a.list(3), a.ptr(4), a.list(5),
                    a.ptr(6), a.list(7), a.ptr(8), a.list(9), a.ptr(10), a.num(11));
  return a.env().Undefined();
}

Napi::Value Affine(CudaCall& a) {
  EwAffineLaunch(a.ctx(), static_cast<int>(a.i(1)), a.list(2), a.ptr(3), a.list(4), a.ptr(5), a.list(6), a.num(7),
                 a.num(8));
  return a.env().Undefined();
}

Napi::Value Fill(CudaCall& a) {
  const int dtype = static_cast<int>(a.i(1));
  const double v = a.num(5);
  double lo = 0, hi = 0;
  bool integral = true;
  switch (dtype) {
    case kCodeI32: lo = -2147483648.0; hi = 2147483647.0; break;
    case kCodeI8: lo = -128; hi = 127; break;
    case kCodeU8: lo = 0; hi = 255; break;
    case kCodeU32: lo = 0; hi = 4294967295.0; break;
    default: integral = false;
  }
  if (integral && !(std::floor(v) == v && v >= lo && v <= hi)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    throw CudaError(std::string("value ") + buf + " cannot be stored in dtype code " + std::to_string(dtype) +
                    " (integers in [" + std::to_string(static_cast<int64_t>(lo)) + ", " +
                    std::to_string(static_cast<int64_t>(hi)) + "])");
  }
  EwFillLaunch(a.ctx(), dtype, a.list(2), a.ptr(3), a.list(4), v, a.flag(6));
  return a.env().Undefined();
}

Napi::Value Arange(CudaCall& a) {
  EwArangeLaunch(a.ctx(), static_cast<int>(a.i(1)), a.i(2), a.ptr(3), a.num(4), a.num(5));
  return a.env().Undefined();
}

// The Philox key of a JS seed, as seedToKey() in random.ts: |seed| split into two u32 words, the
// sign in the top bit of the high word.
void SeedToKey(double seed, uint32_t* k0, uint32_t* k1) {
  if (!(std::floor(seed) == seed) || std::fabs(seed) > 9007199254740991.0) {
    throw CudaError("random: the seed must be a safe integer");
  }
  const uint64_t s = static_cast<uint64_t>(seed < 0 ? -seed : seed);
  *k0 = static_cast<uint32_t>(s & 0xFFFFFFFFu);
  *k1 = static_cast<uint32_t>(s >> 32) ^ (seed < 0 ? 0x80000000u : 0u);
}

Napi::Value Random(CudaCall& a) {
  uint32_t k0 = 0, k1 = 0;
  SeedToKey(a.num(5), &k0, &k1);
  const double offset = a.num(6);
  if (!(std::floor(offset) == offset) || offset < 0 || offset > 9007199254740991.0) {
    throw CudaError("random: the offset must be a non-negative safe integer");
  }
  EwRandomLaunch(a.ctx(), static_cast<int>(a.i(1)), a.i(2), a.ptr(3), a.flag(4), k0, k1, static_cast<uint64_t>(offset),
                 a.num(7), a.num(8));
  return a.env().Undefined();
}

Napi::Value Reduce(CudaCall& a) {
  const Dims shape = a.list(3);
  const Dims axes = a.list(6);
  std::vector<bool> mask(shape.size(), false);
  for (int64_t ax : axes) {
    if (ax < 0 || ax >= static_cast<int64_t>(shape.size())) {
      throw CudaError("reduce: axis " + std::to_string(ax) + " is out of range for rank " + std::to_string(shape.size()));
    }
    mask[static_cast<size_t>(ax)] = true;
  }
  EwReduceLaunch(a.ctx(), static_cast<int>(a.i(1)), static_cast<int>(a.i(2)), shape, a.ptr(4), a.list(5), mask,
                 a.ptr(7));
  return a.env().Undefined();
}

Napi::Value CopyStrided(CudaCall& a) {
  EwCopyLaunch(a.ctx(), static_cast<size_t>(a.i(1)), a.list(2), a.ptr(3), a.list(4), a.ptr(5), a.list(6));
  return a.env().Undefined();
}

Napi::Value Cast(CudaCall& a) {
  EwCastLaunch(a.ctx(), static_cast<int>(a.i(1)), static_cast<int>(a.i(2)), a.list(3), a.ptr(4), a.list(5), a.ptr(6));
  return a.env().Undefined();
}

Napi::Value Gather(CudaCall& a) {
  EwGatherLaunch(a.ctx(), static_cast<size_t>(a.i(1)), a.list(2), a.ptr(3), a.list(4), static_cast<int>(a.i(5)),
                 a.list(6), a.ptr(7), a.list(8), a.ptr(9));
  return a.env().Undefined();
}

Napi::Value ScatterAdd(CudaCall& a) {
  EwScatterAddLaunch(a.ctx(), static_cast<int>(a.i(1)), a.list(2), static_cast<int>(a.i(3)), a.ptr(4), a.list(5),
                     a.list(6), a.list(7), a.ptr(8), a.list(9), a.ptr(10));
  return a.env().Undefined();
}

}  // namespace

void RegisterCudaElementwise(Napi::Env env, Napi::Object cuda) {
  DefineCudaOps(env, cuda,
                {
                    {"binary", Binary},
                    {"unary", Unary},
                    {"unaryGrad", UnaryGrad},
                    {"affine", Affine},
                    {"fill", Fill},
                    {"arange", Arange},
                    {"random", Random},
                    {"reduce", Reduce},
                    {"copyStrided", CopyStrided},
                    {"cast", Cast},
                    {"gather", Gather},
                    {"scatterAdd", ScatterAdd},
                });
}

}  // namespace cuda
}  // namespace modulora
