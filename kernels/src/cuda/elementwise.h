// Launchers of the element-wise, reduction, copy, cast, indexing and creation kernels of the CUDA
// backend (defined in elementwise.cu, reduce.cu and copy.cu; called by bind_elementwise.cc).
//
// Every launcher queues its kernels on the device's stream and returns (cast to an integer type
// and, under MODULORA_CUDA_SYNC=1, gather synchronize to report a bad element). Shapes and strides
// are in elements (a stride of 0 broadcasts); an output written through `*_strides` may be any
// non-overlapping view. Size-0 work launches nothing.
//
// The second half of this header (only under nvcc) holds the device-side strided iteration shared
// by the three .cu files: `Strided<K>`, K operands over one shape, coalesced on the host.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/runtime.h"

namespace modulora {
namespace cuda {

using Dims = std::vector<int64_t>;

// Op codes shared with packages/tensor/src/cuda/elementwise.ts (the CPU's numbering, never reorder).
enum class EwBinary : int { Add, Sub, Mul, Div, Maximum, Minimum, Eq, Gt, Lt, Pow, AddScaled };
enum class EwUnary : int {
  Neg, Exp, Log, Sqrt, Rsqrt, Abs, Relu, Sigmoid, Tanh, Silu, Square, Reciprocal, Sign, PowScalar
};
enum class EwReduce : int { Sum, Max, Min };
constexpr int kEwNumBinary = 11;
constexpr int kEwNumUnary = 14;
constexpr int kEwNumReduce = 3;

// --- elementwise.cu ---------------------------------------------------------------------------
// out[i] = a[i] op b[i] over `shape` (a, b, out strided; out must not overlap a or b except
// element-for-element). AddScaled: out = a + alpha·b (alpha·b rounded to the dtype first, as the
// CPU's addInPlace does; alpha = 1 adds b itself). dtype: f32, f64, bf16 (computed in f32).
void EwBinaryLaunch(Context& c, int op, int dtype, const Dims& shape, const void* a, const Dims& a_strides,
                    const void* b, const Dims& b_strides, void* out, const Dims& out_strides, double alpha);
// y = f(x) (y contiguous); `param` is the exponent of PowScalar.
void EwUnaryLaunch(Context& c, int op, int dtype, const Dims& shape, const void* x, const Dims& x_strides, void* y,
                   double param);
// dx = dy · f'(x) given y = f(x) (dx contiguous).
void EwUnaryGradLaunch(Context& c, int op, int dtype, const Dims& shape, const void* x, const Dims& x_strides,
                       const void* y, const Dims& y_strides, const void* dy, const Dims& dy_strides, void* dx,
                       double param);
// out = alpha·x + beta (alpha and beta rounded to the compute type first; no fused multiply-add).
void EwAffineLaunch(Context& c, int dtype, const Dims& shape, const void* x, const Dims& x_strides, void* out,
                    const Dims& out_strides, double alpha, double beta);
// dst[view] = value converted to the dtype (any of the 8; integer values must have been checked).
// via_f32: round to f32 first (fillInPlace of bf16, as the CPU's f32 round trip does).
void EwFillLaunch(Context& c, int dtype, const Dims& shape, void* dst, const Dims& dst_strides, double value,
                  bool via_f32);
// dst[i] = start + i·step computed in f64 (no fma), then stored in the dtype (any of the 8).
void EwArangeLaunch(Context& c, int dtype, int64_t n, void* dst, double start, double step);
// Philox fill as random.ts uniformFill / normalFill, then the affine map (uniform: a + (b − a)·u,
// normal: a + b·z, skipped for a = 0, b = 1). dtype f32 or f64; dst contiguous.
void EwRandomLaunch(Context& c, int dtype, int64_t n, void* dst, bool normal, uint32_t k0, uint32_t k1,
                    uint64_t offset, double a, double b);

// --- reduce.cu --------------------------------------------------------------------------------
// out (contiguous over the kept axes in order) = op over the axes with reduce_axis[i] set.
// Accumulates in f64 for every dtype, like the CPU; a sum of nothing is 0.
void EwReduceLaunch(Context& c, int op, int dtype, const Dims& shape, const void* x, const Dims& x_strides,
                    const std::vector<bool>& reduce_axis, void* out);

// --- copy.cu ----------------------------------------------------------------------------------
// dst[view] = src[view] for elem_size-byte elements (1, 2, 4 or 8). The views must not overlap.
void EwCopyLaunch(Context& c, size_t elem_size, const Dims& shape, const void* src, const Dims& src_strides,
                  void* dst, const Dims& dst_strides);
// dst (contiguous) = src (strided) converted from dtype code src_code to dst_code, exactly as the
// CPU's castArray. To an integer dtype it first checks every element (NaN, ±Inf and values out of
// range after truncation toward zero), synchronizes, and throws CudaError naming the first bad one.
void EwCastLaunch(Context& c, int src_code, int dst_code, const Dims& shape, const void* src,
                  const Dims& src_strides, void* dst);
// y [x.shape[:axis], idx.shape, x.shape[axis+1:]] (contiguous) = x gathered along `axis` at idx
// (i32, strided). An index outside [0, n) gives a zero row; under MODULORA_CUDA_SYNC=1 it throws.
void EwGatherLaunch(Context& c, size_t elem_size, const Dims& x_shape, const void* x, const Dims& x_strides,
                    int axis, const Dims& idx_shape, const void* idx, const Dims& idx_strides, void* y);
// y (contiguous, `shape`) = zeros with src [shape[:axis], idx.shape, shape[axis+1:]] added at the
// rows idx names, in index order (deterministic, the CPU's order: a stable sort of the indices,
// then one thread per output element). dtype f32, f64, bf16 (bf16 accumulates in f32 and rounds
// once). Bad indices are skipped (thrown under MODULORA_CUDA_SYNC=1).
void EwScatterAddLaunch(Context& c, int dtype, const Dims& shape, int axis, const void* src, const Dims& src_shape,
                        const Dims& src_strides, const Dims& idx_shape, const void* idx, const Dims& idx_strides,
                        void* y);

}  // namespace cuda
}  // namespace modulora

#ifdef __CUDACC__
#include <string>

#include "cuda/common.cuh"

namespace modulora {
namespace cuda {

// K strided operands over one shape (rank <= kMaxRank), passed to kernels by value.
template <int K>
struct Strided {
  int rank = 0;
  int64_t numel = 1;
  int64_t shape[kMaxRank] = {};
  int64_t stride[K][kMaxRank] = {};
};

// Builds the iteration space of K operands: drops size-1 dims and merges neighbours that are
// contiguous for every operand (the row-major order of the elements is unchanged). numel is 0 when
// some dim is 0. Throws CudaError for a rank above kMaxRank or a strides list of the wrong length.
template <int K>
Strided<K> MakeStrided(const Dims& shape, const Dims* const (&strides)[K], const char* op) {
  Strided<K> d;
  for (int k = 0; k < K; k++) {
    if (strides[k]->size() != shape.size()) {
      throw CudaError(std::string(op) + ": a strides list has " + std::to_string(strides[k]->size()) +
                      " entries for a shape of rank " + std::to_string(shape.size()));
    }
  }
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); i++) n *= shape[i];
  d.numel = n;
  if (n == 0) return d;
  int r = 0;
  for (size_t i = 0; i < shape.size(); i++) {
    if (shape[i] == 1) continue;
    if (r > 0) {
      bool merge = true;
      for (int k = 0; k < K; k++) merge = merge && d.stride[k][r - 1] == (*strides[k])[i] * shape[i];
      if (merge) {
        d.shape[r - 1] *= shape[i];
        for (int k = 0; k < K; k++) d.stride[k][r - 1] = (*strides[k])[i];
        continue;
      }
    }
    if (r == kMaxRank) {
      throw CudaError(std::string(op) + ": more than " + std::to_string(kMaxRank) +
                      " non-mergeable dims (rank " + std::to_string(shape.size()) + ")");
    }
    d.shape[r] = shape[i];
    for (int k = 0; k < K; k++) d.stride[k][r] = (*strides[k])[i];
    r++;
  }
  d.rank = r;
  return d;
}

// Element offsets of the K operands at row-major flat index i. I: the index type of the division
// loop (uint32_t when numel < 2^31, a 3-4x cheaper divide, else int64_t).
template <class I, int K>
__device__ __forceinline__ void StridedOffsets(const Strided<K>& d, int64_t i, int64_t (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; k++) off[k] = 0;
  if (d.rank == 1) {
#pragma unroll
    for (int k = 0; k < K; k++) off[k] = i * d.stride[k][0];
    return;
  }
  I rest = static_cast<I>(i);
  for (int r = d.rank - 1; r >= 0; r--) {
    const I s = static_cast<I>(d.shape[r]);
    const I q = rest / s;
    const int64_t c = static_cast<int64_t>(rest - q * s);
#pragma unroll
    for (int k = 0; k < K; k++) off[k] += c * d.stride[k][r];
    rest = q;
  }
}

// Whether flat indices of `n` elements fit the 32-bit division loop.
inline bool Small(int64_t n) { return n < (int64_t{1} << 31); }

// Grid-stride loop bounds.
__device__ __forceinline__ int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t GridThreads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// Rounded-once arithmetic (never contracted into a fused multiply-add), for results the CPU
// computes as a separate multiply and add.
__device__ __forceinline__ float MulRn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double MulRn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float AddRn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double AddRn(double a, double b) { return __dadd_rn(a, b); }

}  // namespace cuda
}  // namespace modulora
#endif  // __CUDACC__
