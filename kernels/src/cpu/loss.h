// Softmax cross-entropy over a vocabulary, and softmax / logSoftmax along one axis (CPU).
//
// The cross-entropy forward never materialises the softmax: each row's max and logsumexp come from
// one pass over the logits in chunks of kLossChunk columns (an online max/sum: the running sum is
// rescaled when a chunk raises the max), so a [N, V] forward allocates nothing but its [N]
// outputs. The backward writes dlogits = (exp(logits - lse) - onehot(target)) * g_i straight into
// the gradient, row by row. Rows are independent and each row is handled by one thread in a fixed
// order, so results do not depend on the number of threads.
//
// Statistics are kept in the element type (f32 for f32, f64 for f64). f32 exp uses a vectorisable
// Cephes-style polynomial (about 1 ulp); f64 uses std::exp. The kernels trust their arguments:
// bind_loss.cc checks types, shapes, lengths and targets first.
#pragma once
#include <cstdint>

#include "cpu/elementwise.h"  // kMaxRank

namespace modulora {

// Columns per chunk of a row: 16 KiB of f32, so a chunk read for its max is still in L1/L2 when
// it is read again for its sum.
constexpr int64_t kLossChunk = 4096;

// Where the rows of a [..., V] tensor start: the leading dims' shape and strides (in elements);
// columns are contiguous. Row r is the r-th multi-index of `shape` in row-major order.
struct RowLayout {
  int rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t stride[kMaxRank] = {};

  int64_t rows() const {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= shape[i];
    return n;
  }
  int64_t offset(int64_t r) const {
    int64_t off = 0;
    for (int i = rank - 1; i >= 0; i--) {
      off += (r % shape[i]) * stride[i];
      r /= shape[i];
    }
    return off;
  }
};

// Per row r: lse[r] = logsumexp(logits[r, :]) and loss[r] = lse[r] - logits[r, targets[r]], or
// lse[r] = loss[r] = 0 where targets[r] == ignore_index (an ignored row is not read at all).
// Returns the number of rows not ignored. Every other target must be in [0, v).
template <class T>
int64_t cross_entropy_forward(const T* logits, const RowLayout& rows, int64_t v, const int32_t* targets,
                              int32_t ignore_index, T* lse, T* loss);

// dlogits [N, V] (contiguous) = (exp(logits - lse) - onehot(target)) * g_r with
// g_r = g[r * g_stride] (divided by the number of counted rows when `mean`; all zero when that
// number is 0), and zero rows where targets[r] == ignore_index.
template <class T>
void cross_entropy_backward(const T* logits, const RowLayout& rows, int64_t v, const int32_t* targets,
                            int32_t ignore_index, const T* lse, const T* g, int64_t g_stride, bool mean, T* dlogits);

// y = softmax(x) (or logSoftmax when `log`) along the middle axis of the contiguous
// [outer, n, inner] array x; y has the same layout.
template <class T>
void softmax_forward(const T* x, int64_t outer, int64_t n, int64_t inner, bool log, T* y);

// Backward of softmax_forward from its output y:
//   softmax:    dx = y * (dy - sum(dy * y))
//   logSoftmax: dx = dy - exp(y) * sum(dy)
// with the sums along the middle axis. All arrays contiguous [outer, n, inner].
template <class T>
void softmax_backward(const T* y, const T* dy, int64_t outer, int64_t n, int64_t inner, bool log, T* dx);

}  // namespace modulora
