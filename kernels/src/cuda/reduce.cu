// Reductions (sum, max, min) over any subset of axes of a strided tensor, for f32, f64 and bf16.
//
// As on the CPU (kernels/src/cpu/reduce.cc), the kept axes and the reduced axes become two
// iteration spaces, each coalesced (the reduced ones sorted by decreasing stride first), and every
// dtype accumulates in f64: an f32 sum of millions of elements keeps full f32 accuracy; bf16
// results are rounded to f32 first and then to bf16, as the CPU's f32 round trip does.
//
// Two kernels, both deterministic (fixed partition of the work, fixed combination tree, no
// atomics, nothing depends on the device's SM count):
//  - RowReduceKernel: one block per (output, part); its threads stride over the part's reduced
//    elements, then a warp-shuffle tree and an in-order combination of the warps. With few outputs
//    and many elements each output is cut into `parts` (from the shape alone) whose partials land in
//    an f64 scratch, combined in order by FinalizeKernel.
//  - ColReduceKernel: 32 consecutive outputs per block row (coalesced when the innermost kept axis
//    is contiguous: column sums), 8 threads per output striding the reduced elements, combined in
//    order. Also used for short reductions and for a sum of nothing (writes 0).
#include <math_constants.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "cuda/common.cuh"
#include "cuda/elementwise.h"

namespace modulora {
namespace cuda {
namespace {

struct SumR {
  static __device__ __forceinline__ double init() { return 0.0; }
  static __device__ __forceinline__ double comb(double a, double v) { return a + v; }
};
struct MaxR {
  static __device__ __forceinline__ double init() { return -CUDART_INF; }
  static __device__ __forceinline__ double comb(double a, double v) { return (a > v || a != a) ? a : v; }
};
struct MinR {
  static __device__ __forceinline__ double init() { return CUDART_INF; }
  static __device__ __forceinline__ double comb(double a, double v) { return (a < v || a != a) ? a : v; }
};

// The f64 accumulator stored in T: f32 and f64 round once; bf16 rounds to f32, then to bf16.
template <class T> __device__ __forceinline__ T StoreAcc(double v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ bf16 StoreAcc<bf16>(double v) { return __float2bfloat16_rn(static_cast<float>(v)); }

template <class T>
__device__ __forceinline__ double LoadD(const T* p) { return static_cast<double>(ld(p)); }

constexpr int kRowThreads = 256;
constexpr int kColX = 32, kColY = 8;
constexpr int64_t kTargetBlocks = 512;  // split reductions with fewer outputs than this
constexpr int64_t kPartElems = 4096;    // least reduced elements per part
constexpr int64_t kMaxParts = 1024;

template <class T, class R, class I>
__global__ void __launch_bounds__(kRowThreads) RowReduceKernel(Strided<1> kept, Strided<1> red, const T* __restrict__ x,
                                                               T* __restrict__ out, double* __restrict__ partial,
                                                               int64_t parts) {
  __shared__ double warp_acc[kRowThreads / 32];
  const int64_t num_out = kept.numel, num_red = red.numel;
  const int64_t units = num_out * parts;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
    const int64_t o = u / parts, part = u - o * parts;
    const int64_t r0 = num_red * part / parts, r1 = num_red * (part + 1) / parts;
    int64_t base[1];
    StridedOffsets<int64_t>(kept, o, base);
    const T* xb = x + base[0];
    double acc = R::init();
    for (int64_t r = r0 + threadIdx.x; r < r1; r += kRowThreads) {
      int64_t off[1];
      StridedOffsets<I>(red, r, off);
      acc = R::comb(acc, LoadD(xb + off[0]));
    }
#pragma unroll
    for (int s = 16; s >= 1; s >>= 1) acc = R::comb(acc, __shfl_down_sync(0xffffffffu, acc, s));
    if (lane == 0) warp_acc[warp] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = warp_acc[0];
      for (int w = 1; w < kRowThreads / 32; w++) total = R::comb(total, warp_acc[w]);
      if (parts > 1) partial[part * num_out + o] = total;
      else out[o] = StoreAcc<T>(total);
    }
    __syncthreads();  // warp_acc is reused by the next unit
  }
}

template <class T, class R>
__global__ void FinalizeKernel(int64_t num_out, int64_t parts, const double* __restrict__ partial, T* __restrict__ out) {
  for (int64_t o = GlobalThread(); o < num_out; o += GridThreads()) {
    double acc = partial[o];
    for (int64_t p = 1; p < parts; p++) acc = R::comb(acc, partial[p * num_out + o]);
    out[o] = StoreAcc<T>(acc);
  }
}

template <class T, class R, class I>
__global__ void __launch_bounds__(kColX * kColY) ColReduceKernel(Strided<1> kept, Strided<1> red, const T* __restrict__ x,
                                                                 T* __restrict__ out) {
  __shared__ double acc_s[kColY][kColX];
  const int64_t num_out = kept.numel, num_red = red.numel;
  const int64_t chunks = (num_out + kColX - 1) / kColX;
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    const int64_t o = chunk * kColX + tx;
    double acc = R::init();
    if (o < num_out) {
      int64_t base[1];
      StridedOffsets<int64_t>(kept, o, base);
      const T* xb = x + base[0];
      for (int64_t r = ty; r < num_red; r += kColY) {
        int64_t off[1];
        StridedOffsets<I>(red, r, off);
        acc = R::comb(acc, LoadD(xb + off[0]));
      }
    }
    acc_s[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && o < num_out) {
      double total = acc_s[0][tx];
      for (int k = 1; k < kColY; k++) total = R::comb(total, acc_s[k][tx]);
      out[o] = StoreAcc<T>(total);
    }
    __syncthreads();  // acc_s is reused by the next chunk
  }
}

template <class T, class R>
void ReduceImpl(Context& c, const Strided<1>& kept, const Strided<1>& red, const T* x, T* out) {
  const int64_t num_out = kept.numel, num_red = red.numel;
  const bool small = Small(num_red);
  const bool column = kept.rank >= 1 && kept.stride[0][kept.rank - 1] == 1 &&
                      (red.rank == 0 || red.stride[0][red.rank - 1] != 1);
  if (num_red == 0 || num_red <= 64 || (column && num_out >= 1024)) {
    const dim3 block(kColX, kColY);
    const unsigned grid = Blocks((num_out + kColX - 1) / kColX, 1);
    if (small) ColReduceKernel<T, R, uint32_t><<<grid, block, 0, c.stream()>>>(kept, red, x, out);
    else ColReduceKernel<T, R, int64_t><<<grid, block, 0, c.stream()>>>(kept, red, x, out);
    return;
  }
  int64_t parts = 1;
  if (num_out < kTargetBlocks) {
    parts = std::min<int64_t>((kTargetBlocks + num_out - 1) / num_out, std::max<int64_t>(1, num_red / kPartElems));
    parts = std::min(parts, kMaxParts);
  }
  const unsigned grid = Blocks(num_out * parts, 1);
  if (parts == 1) {
    if (small) RowReduceKernel<T, R, uint32_t><<<grid, kRowThreads, 0, c.stream()>>>(kept, red, x, out, nullptr, 1);
    else RowReduceKernel<T, R, int64_t><<<grid, kRowThreads, 0, c.stream()>>>(kept, red, x, out, nullptr, 1);
    return;
  }
  Scratch scratch(c, static_cast<size_t>(parts * num_out) * sizeof(double));
  double* partial = scratch.as<double>();
  if (small) RowReduceKernel<T, R, uint32_t><<<grid, kRowThreads, 0, c.stream()>>>(kept, red, x, out, partial, parts);
  else RowReduceKernel<T, R, int64_t><<<grid, kRowThreads, 0, c.stream()>>>(kept, red, x, out, partial, parts);
  FinalizeKernel<T, R><<<Blocks(num_out, 256), 256, 0, c.stream()>>>(num_out, parts, partial, out);
}

}  // namespace

void EwReduceLaunch(Context& c, int op, int dtype, const Dims& shape, const void* x, const Dims& x_strides,
                    const std::vector<bool>& reduce_axis, void* out) {
  if (op < 0 || op >= kEwNumReduce) throw CudaError("reduce: unknown op code " + std::to_string(op));
  if (reduce_axis.size() != shape.size() || x_strides.size() != shape.size()) {
    throw CudaError("reduce: the axes mask and the strides must have one entry per dim of the shape");
  }
  Dims ks, kst, rs, rst;
  for (size_t i = 0; i < shape.size(); i++) {
    if (reduce_axis[i]) continue;
    if (shape[i] == 0) return;  // no outputs
    ks.push_back(shape[i]);
    kst.push_back(x_strides[i]);
  }
  // Reduced axes by decreasing stride (stable): the set reduced is the same, more of them coalesce.
  std::vector<size_t> order;
  for (size_t i = 0; i < shape.size(); i++) {
    if (!reduce_axis[i]) continue;
    size_t j = order.size();
    order.push_back(i);
    while (j > 0 && x_strides[order[j - 1]] < x_strides[i]) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = i;
  }
  for (size_t i : order) {
    rs.push_back(shape[i]);
    rst.push_back(x_strides[i]);
  }
  const Strided<1> kept = MakeStrided<1>(ks, {&kst}, "reduce");
  const Strided<1> red = MakeStrided<1>(rs, {&rst}, "reduce");  // numel 0: a sum of nothing
  if (kept.numel == 0) return;
  MODULORA_DISPATCH_FLOAT(dtype, "reduce", T, {
    const auto* px = static_cast<const T*>(x);
    auto* po = static_cast<T*>(out);
    switch (static_cast<EwReduce>(op)) {
      case EwReduce::Sum: ReduceImpl<T, SumR>(c, kept, red, px, po); break;
      case EwReduce::Max: ReduceImpl<T, MaxR>(c, kept, red, px, po); break;
      case EwReduce::Min: ReduceImpl<T, MinR>(c, kept, red, px, po); break;
    }
  });
}

}  // namespace cuda
}  // namespace modulora
