// Device-side helpers shared by the CUDA kernels: dtype codes and dispatch, conversions between
// storage types and their accumulation type, strided indexing, Philox (bit-identical to the CPU's
// src/cpu/philox.h and the TypeScript src/random.ts), and launch-size helpers.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda/runtime.h"

namespace modulora {
namespace cuda {

using bf16 = __nv_bfloat16;
using f16 = __half;

// The type a storage type computes in: f64 in f64, everything else in f32.
template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <class T> using Acc = typename AccOf<T>::type;

// Loads as the accumulation type; stores round once (bf16/f16: nearest even).
template <class T> __device__ __forceinline__ Acc<T> ld(const T* p) { return static_cast<Acc<T>>(*p); }
template <> __device__ __forceinline__ float ld<bf16>(const bf16* p) { return __bfloat162float(*p); }
template <> __device__ __forceinline__ float ld<f16>(const f16* p) { return __half2float(*p); }
template <class T> __device__ __forceinline__ T cvt(Acc<T> v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ bf16 cvt<bf16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ f16 cvt<f16>(float v) { return __float2half_rn(v); }
template <class T> __device__ __forceinline__ void st(T* p, Acc<T> v) { *p = cvt<T>(v); }

// Runs `body` with `T` bound to the float type of `code` (f32, f64, bf16); other codes throw.
//   DISPATCH_FLOAT(code, "rmsnorm", T, { launch<T><<<...>>>(...); });
#define MODULORA_DISPATCH_FLOAT(code, op, T, ...)                                                        \
  switch (code) {                                                                                     \
    case ::modulora::cuda::kF32: { using T = float; __VA_ARGS__; break; }                            \
    case ::modulora::cuda::kF64: { using T = double; __VA_ARGS__; break; }                           \
    case ::modulora::cuda::kBF16: { using T = ::modulora::cuda::bf16; __VA_ARGS__; break; }          \
    default:                                                                                          \
      throw ::modulora::cuda::CudaError(std::string(op) + ": dtype " + ::modulora::cuda::CodeName(code) + \
                                        " is not computed on cuda (f32, f64 and bf16 are)");         \
  }

// Strided views of up to kMaxRank dims, passed to kernels by value.
constexpr int kMaxRank = 8;
struct Layout {
  int rank;
  int64_t shape[kMaxRank];
  int64_t strides[kMaxRank];  // in elements
};
// Element offset of flat (row-major) index `i` of `shape` under `strides`.
__device__ __forceinline__ int64_t offset_of(const Layout& l, int64_t i) {
  int64_t off = 0;
  for (int d = l.rank - 1; d >= 0; d--) {
    const int64_t s = l.shape[d];
    const int64_t q = i / s;
    off += (i - q * s) * l.strides[d];
    i = q;
  }
  return off;
}
// A Layout from host lists (throws CudaError for rank > kMaxRank or mismatched lengths).
Layout MakeLayout(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides, const char* op);

// Philox4x32-10 (as src/cpu/philox.h).
__device__ __forceinline__ void philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                           uint32_t k1, uint32_t out[4]) {
#pragma unroll
  for (int r = 0; r < 10; r++) {
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c1 = lo1;
    c3 = lo0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}
__device__ __forceinline__ float philox_unit(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }

// Blocks for `n` elements at `threads` per block, capped (kernels loop grid-stride).
inline unsigned Blocks(int64_t n, int threads = 256, int64_t cap = 65535LL * 16) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > cap) b = cap;
  return static_cast<unsigned>(b);
}


// Blocks of a grid-stride launch over `units` work items: at least 1, at most `cap`.
inline unsigned GridFor(int64_t units, int64_t cap = int64_t{1} << 20) {
  return static_cast<unsigned>(units < 1 ? 1 : (units > cap ? cap : units));
}

// exp and log in the accumulation type.
__device__ __forceinline__ float exp_a(float x) { return expf(x); }
__device__ __forceinline__ double exp_a(double x) { return exp(x); }
__device__ __forceinline__ float log_a(float x) { return logf(x); }
__device__ __forceinline__ double log_a(double x) { return log(x); }

// Sums over a warp (result in lane 0) and over a block (blockDim.x a multiple of 32; the same value
// returned to every thread), in a fixed order, so results do not depend on timing. `sh` holds 33
// values of shared memory; consecutive calls may reuse it.
template <class A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}
template <class A>
__device__ A block_sum(A v, A* sh) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // the previous call's readers of sh are done
  if (lane == 0) sh[w] = v;
  __syncthreads();
  if (w == 0) {
    A t = lane < nw ? sh[lane] : A(0);
    t = warp_sum(t);
    if (lane == 0) sh[32] = t;
  }
  __syncthreads();
  return sh[32];
}

}  // namespace cuda
}  // namespace modulora
