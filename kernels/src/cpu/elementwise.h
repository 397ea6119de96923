// Element-wise, reduction, copy, cast and gather kernels (CPU, portable C++).
//
// The kernels trust their arguments: bind_elementwise.cc checks types, shapes, strides and
// lengths at the JS boundary first. Shapes and strides are in elements; rank <= kMaxRank; a
// stride of 0 broadcasts. Float kernels are instantiated for float and double.
//
//   elementwise.cc  binary, unary, affine, unaryGrad, fill, countNonFinite
//   reduce.cc       reduce (sum, max, min over any subset of axes)
//   copy.cc         copyStrided, cast, gather, scatterAdd
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace modulora {

constexpr int kMaxRank = 8;
// Elements per parallel chunk for cheap element-wise work (about 64 KiB of f32).
constexpr int64_t kElementwiseGrain = 16384;

// Op codes shared with ts/elementwise.ts (BINARY_OPS, UNARY_OPS, REDUCE_OPS). Never reorder.
enum class BinaryOp : int { Add, Sub, Mul, Div, Maximum, Minimum, Eq, Gt, Lt, Pow };
constexpr int kNumBinaryOps = 10;
enum class UnaryOp : int {
  Neg, Exp, Log, Sqrt, Rsqrt, Abs, Relu, Sigmoid, Tanh, Silu, Square, Reciprocal, Sign, PowScalar
};
constexpr int kNumUnaryOps = 14;
enum class ReduceOp : int { Sum, Max, Min };
constexpr int kNumReduceOps = 3;

// NaN-propagating maximum/minimum (as torch.maximum and JS Math.max): NaN in, NaN out.
template <class T> inline T nan_max(T a, T b) { return (a > b || a != a) ? a : b; }
template <class T> inline T nan_min(T a, T b) { return (a < b || a != a) ? a : b; }

// A strided iteration space shared by K operands: one shape, K stride vectors.
template <int K>
struct StridedDims {
  int rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t stride[K][kMaxRank] = {};

  void push(int64_t size, const int64_t* strides) {
    shape[rank] = size;
    for (int k = 0; k < K; k++) stride[k][rank] = strides[k];
    rank++;
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= shape[i];
    return n;
  }
  // Drops size-1 dims and merges neighbours that are contiguous for every operand. The row-major
  // order of the elements is unchanged, so a contiguous operand stays contiguous.
  void coalesce() {
    int r = 0;
    for (int i = 0; i < rank; i++) {
      if (shape[i] == 1) continue;
      if (r > 0) {
        bool merge = true;
        for (int k = 0; k < K; k++) merge = merge && stride[k][r - 1] == stride[k][i] * shape[i];
        if (merge) {
          shape[r - 1] *= shape[i];
          for (int k = 0; k < K; k++) stride[k][r - 1] = stride[k][i];
          continue;
        }
      }
      shape[r] = shape[i];
      for (int k = 0; k < K; k++) stride[k][r] = stride[k][i];
      r++;
    }
    rank = r;
  }
  // Stride of operand k along the innermost dim (0 for rank 0: a single element).
  int64_t inner_stride(int k) const { return rank ? stride[k][rank - 1] : 0; }
};

// Calls fn(off, len) for the runs along the innermost dim that cover the row-major flat range
// [begin, end) of `d` (which must have no zero-size dim). off[k] is operand k's element offset at
// the start of the run; along the run operand k steps by d.inner_stride(k).
template <int K, class Fn>
void for_each_run(const StridedDims<K>& d, int64_t begin, int64_t end, Fn&& fn) {
  int64_t off[K];
  if (begin >= end) return;
  if (d.rank == 0) {
    for (int k = 0; k < K; k++) off[k] = 0;
    fn(static_cast<const int64_t*>(off), int64_t{1});
    return;
  }
  const int last = d.rank - 1;
  const int64_t inner = d.shape[last];
  int64_t coord[kMaxRank];
  int64_t rest = begin / inner, c = begin % inner;
  for (int i = last - 1; i >= 0; i--) {
    coord[i] = rest % d.shape[i];
    rest /= d.shape[i];
  }
  for (int k = 0; k < K; k++) {
    off[k] = c * d.stride[k][last];
    for (int i = 0; i < last; i++) off[k] += coord[i] * d.stride[k][i];
  }
  int64_t idx = begin;
  for (;;) {
    int64_t len = std::min(inner - c, end - idx);
    fn(static_cast<const int64_t*>(off), len);
    idx += len;
    if (idx >= end) return;
    for (int k = 0; k < K; k++) off[k] -= c * d.stride[k][last];
    c = 0;
    for (int i = last - 1; i >= 0; i--) {
      coord[i]++;
      for (int k = 0; k < K; k++) off[k] += d.stride[k][i];
      if (coord[i] < d.shape[i]) break;
      for (int k = 0; k < K; k++) off[k] -= d.shape[i] * d.stride[k][i];
      coord[i] = 0;
    }
  }
}

// --- elementwise.cc ---------------------------------------------------------------------------
// out[i] = a[i] op b[i]; out is contiguous with `shape`; it may alias a contiguous same-shape input.
template <class T>
void binary_kernel(BinaryOp op, int rank, const int64_t* shape, const T* a, const int64_t* a_strides,
                   const T* b, const int64_t* b_strides, T* out);
// out[i] = f(x[i]) for n contiguous elements (`param` is the exponent of PowScalar).
template <class T>
void unary_kernel(UnaryOp op, const T* x, T* out, int64_t n, double param);
// out[i] = alpha * x[i] + beta.
template <class T>
void affine_kernel(const T* x, double alpha, double beta, T* out, int64_t n);
// dx[i] = dy[i] * f'(x[i]), with y = f(x) available.
template <class T>
void unary_grad_kernel(UnaryOp op, const T* x, const T* y, const T* dy, T* dx, int64_t n, double param);
// Writes n copies of the elem_size-byte pattern at `value`.
void fill_kernel(void* dst, size_t elem_size, int64_t n, const void* value);
// Number of NaN and +-Inf among n elements.
template <class T>
int64_t count_nonfinite_kernel(const T* x, int64_t n);

// --- reduce.cc --------------------------------------------------------------------------------
// Reduces x (shape, strides) over the axes with reduce_axis[i] set; out is contiguous over the kept
// axes in order. Max/min need at least one reduced element (the caller checks); an empty sum is 0.
template <class T>
void reduce_kernel(ReduceOp op, int rank, const int64_t* shape, const T* x, const int64_t* x_strides,
                   const bool* reduce_axis, T* out);

// --- copy.cc ----------------------------------------------------------------------------------
// dst[view] = src[view] for elements of elem_size bytes (1, 2, 4 or 8). The views must not overlap.
void copy_strided_kernel(size_t elem_size, int rank, const int64_t* shape, const void* src,
                         const int64_t* src_strides, void* dst, const int64_t* dst_strides);
// Element-type codes as DType in napi_util.h (0 f32, 1 f64, 2 bf16, 3 f16, 4 i32, 5 i8, 6 u8, 7 u32).
// cast_check returns the index of the first element that does not fit an integer dst type (NaN,
// +-Inf or out of range after truncation toward zero), or -1; cast_kernel assumes it passed.
int64_t cast_check(const void* src, int src_type, int dst_type, int64_t n);
void cast_kernel(const void* src, int src_type, void* dst, int dst_type, int64_t n);
// Reads element i of a src_type array as a double (exact for every type), for error messages.
double cast_load(const void* src, int src_type, int64_t i);
// IEEE half / bfloat16 conversions (round to nearest even, NaN and Inf kept, f16 subnormals).
uint16_t f64_to_f16_bits(double v);
uint16_t f64_to_bf16_bits(double v);
float f16_bits_to_f32(uint16_t h);
float bf16_bits_to_f32(uint16_t h);
// out[o, j, :] = src[o, idx[j], :]; src [outer, n, inner], out [outer, m, inner]; idx checked.
void gather_kernel(size_t elem_size, const void* src, int64_t outer, int64_t n, int64_t inner,
                   const int32_t* idx, int64_t m, void* out);
// out[o, idx[j], :] += src[o, j, :]; src [outer, m, inner], out [outer, n, inner]; idx checked.
template <class T>
void scatter_add_kernel(const T* src, int64_t outer, int64_t m, int64_t inner, const int32_t* idx, T* out,
                        int64_t n);

}  // namespace modulora
