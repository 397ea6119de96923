// CUDA kernels of the loss ops (see nn.h): softmax cross-entropy forward (online max/sum-exp over
// the vocabulary, one block per row, never a [rows, V] temporary) and backward, softmax and
// logSoftmax forward and backward along any axis, and the embedding gather with its range check.
//
// Semantics follow src/cpu/loss.cc: statistics in Acc<T> (f32 for f32 and bf16, f64 for f64); a
// NaN or +Inf anywhere in a row makes its sum NaN (the CPU computes exp(inf − inf) there); a row of
// −Inf gives max −Inf and sum 0. Bad targets and ids are found on the device, recorded as the
// smallest bad index in a flag, and read back to throw the CPU's message.
#include <cmath>
#include <cstdint>
#include <string>

#include <math_constants.h>

#include "cuda/common.cuh"
#include "cuda/nn.h"

namespace modulora {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kReduceThreads = 1024;
constexpr unsigned long long kNoBad = ~0ULL;


template <class A> __device__ __forceinline__ A neg_inf() { return -CUDART_INF_F; }
template <> __device__ __forceinline__ double neg_inf<double>() { return -CUDART_INF; }
template <class A> __device__ __forceinline__ A pos_inf() { return CUDART_INF_F; }
template <> __device__ __forceinline__ double pos_inf<double>() { return CUDART_INF; }
template <class A> __device__ __forceinline__ A qnan() { return CUDART_NAN_F; }
template <> __device__ __forceinline__ double qnan<double>() { return CUDART_NAN; }


// --- online max / sum-exp ------------------------------------------------------------------------

// Adds x to the running (m, s) = (max, Σ exp(· − m)).
template <class A>
__device__ __forceinline__ void ms_add(A& m, A& s, A x) {
  if (x > m) {
    // exp(x − x) is 1, or NaN for x = +Inf (the CPU's exp(inf − inf)).
    s = s * exp_a(m - x) + (x == pos_inf<A>() ? qnan<A>() : A(1));
    m = x;
  } else if (m != neg_inf<A>()) {
    s += exp_a(x - m);  // NaN x: s becomes NaN
  } else if (x != x) {
    s = qnan<A>();  // a NaN while everything so far is −Inf
  }
}

// (m, s) ∪ (m2, s2).
template <class A>
__device__ __forceinline__ void ms_merge(A& m, A& s, A m2, A s2) {
  const A mm = m2 > m ? m2 : m;
  if (mm == neg_inf<A>()) {
    s = s + s2;  // both are 0 or NaN
  } else {
    s = s * exp_a(m - mm) + s2 * exp_a(m2 - mm);
  }
  m = mm;
}

// Block-wide (m, s), returned to every thread in a fixed order. shm, shs: 33 values each.
template <class A>
__device__ void block_ms(A& m, A& s, A* shm, A* shs) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A m2 = __shfl_down_sync(0xffffffffu, m, o);
    const A s2 = __shfl_down_sync(0xffffffffu, s, o);
    ms_merge(m, s, m2, s2);
  }
  __syncthreads();
  if (lane == 0) {
    shm[w] = m;
    shs[w] = s;
  }
  __syncthreads();
  if (w == 0) {
    A tm = lane < nw ? shm[lane] : neg_inf<A>();
    A ts = lane < nw ? shs[lane] : A(0);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const A m2 = __shfl_down_sync(0xffffffffu, tm, o);
      const A s2 = __shfl_down_sync(0xffffffffu, ts, o);
      ms_merge(tm, ts, m2, s2);
    }
    if (lane == 0) {
      shm[32] = tm;
      shs[32] = ts;
    }
  }
  __syncthreads();
  m = shm[32];
  s = shs[32];
}

// Statistics of one contiguous row of n (threads stride over it).
template <class T>
__device__ void row_ms(const T* __restrict__ x, int64_t n, Acc<T>& m, Acc<T>& s, Acc<T>* shm, Acc<T>* shs) {
  using A = Acc<T>;
  m = neg_inf<A>();
  s = A(0);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) ms_add(m, s, ld(x + j));
  block_ms(m, s, shm, shs);
}

struct RowsDev {
  int rank;
  int64_t shape[kMaxRankRows];
  int64_t stride[kMaxRankRows];
};
__device__ __forceinline__ int64_t row_offset(const RowsDev& l, int64_t r) {
  int64_t off = 0;
  for (int i = l.rank - 1; i >= 0; i--) {
    const int64_t q = r / l.shape[i];
    off += (r - q * l.shape[i]) * l.stride[i];
    r = q;
  }
  return off;
}

// --- cross-entropy -------------------------------------------------------------------------------

template <class T>
__global__ void __launch_bounds__(kThreads) ce_forward_kernel(const T* __restrict__ logits, RowsDev rows, int64_t n,
                                                               int64_t v, const int32_t* __restrict__ targets,
                                                               int32_t ignore, Acc<T>* __restrict__ lse,
                                                               Acc<T>* __restrict__ loss,
                                                               unsigned long long* __restrict__ bad) {
  using A = Acc<T>;
  __shared__ A shm[33], shs[33];
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const int32_t t = targets[r];  // uniform over the block
    if (t == ignore || t < 0 || static_cast<int64_t>(t) >= v) {
      if (threadIdx.x == 0) {
        lse[r] = A(0);
        loss[r] = A(0);
        if (t != ignore) atomicMin(bad, static_cast<unsigned long long>(r));
      }
      continue;
    }
    const T* x = logits + row_offset(rows, r);
    A m, s;
    row_ms(x, v, m, s, shm, shs);
    if (threadIdx.x == 0) {
      const A l = m + log_a(s);  // −Inf for a row of −Inf; +Inf and NaN propagate
      lse[r] = l;
      loss[r] = l - ld(x + t);
    }
  }
}

// One block: out[0] = Σ rows in f64 (sum), or that sum over the count of rows not ignored (mean,
// 0 when none is), rounded once to A.
template <class A>
__global__ void __launch_bounds__(kReduceThreads) ce_reduce_kernel(const A* __restrict__ rows,
                                                                    const int32_t* __restrict__ targets, int64_t n,
                                                                    int32_t ignore, bool mean, A* __restrict__ out) {
  __shared__ double sh[33];
  __shared__ long long shc[33];
  double total = 0;
  long long counted = 0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) {
    total += static_cast<double>(rows[r]);
    counted += targets[r] != ignore;
  }
  total = block_sum(total, sh);
  counted = block_sum(counted, shc);
  if (threadIdx.x == 0) {
    const double value = !mean ? total : counted ? total / static_cast<double>(counted) : 0.0;
    out[0] = static_cast<A>(value);
  }
}

// scale[0] = 1 / (rows not ignored) in A (0 when none is), as the CPU's mean scale.
template <class A>
__global__ void __launch_bounds__(kReduceThreads) ce_mean_scale_kernel(const int32_t* __restrict__ targets, int64_t n,
                                                                        int32_t ignore, A* __restrict__ scale) {
  __shared__ long long shc[33];
  long long counted = 0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) counted += targets[r] != ignore;
  counted = block_sum(counted, shc);
  if (threadIdx.x == 0) scale[0] = counted ? A(1) / static_cast<A>(counted) : A(0);
}

template <class T>
__global__ void __launch_bounds__(kThreads) ce_backward_kernel(const T* __restrict__ logits, RowsDev rows, int64_t n,
                                                                int64_t v, const int32_t* __restrict__ targets,
                                                                int32_t ignore, const Acc<T>* __restrict__ lse,
                                                                const Acc<T>* __restrict__ g, int64_t g_stride,
                                                                const Acc<T>* __restrict__ scale, T* __restrict__ dlogits) {
  using A = Acc<T>;
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    T* dx = dlogits + r * v;
    const int32_t t = targets[r];
    if (t == ignore) {
      for (int64_t j = threadIdx.x; j < v; j += blockDim.x) st(dx + j, A(0));
      continue;
    }
    const T* x = logits + row_offset(rows, r);
    const A l = lse[r];
    const A gr = scale ? g[r * g_stride] * scale[0] : g[r * g_stride];
    // A target outside [0, v) (refused by the forward) gets no one-hot term: nothing is written out of bounds.
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
      A d = exp_a(ld(x + j) - l) * gr;
      if (j == static_cast<int64_t>(t)) d -= gr;
      st(dx + j, d);
    }
  }
}

// --- softmax / logSoftmax --------------------------------------------------------------------------

// inner == 1: one block per row of n.
template <class T>
__global__ void __launch_bounds__(kThreads) softmax_rows_kernel(const T* __restrict__ x, int64_t outer, int64_t n,
                                                                 bool log, T* __restrict__ y) {
  using A = Acc<T>;
  __shared__ A shm[33], shs[33];
  for (int64_t r = blockIdx.x; r < outer; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    A m, s;
    row_ms(xr, n, m, s, shm, shs);
    if (log) {
      const A l = m + log_a(s);
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) st(yr + j, ld(xr + j) - l);
    } else {
      const A inv = A(1) / s;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) st(yr + j, exp_a(ld(xr + j) - m) * inv);
    }
  }
}

// inner > 1: one thread per (outer index, column), three passes down the column (as the CPU's
// column path: max skipping NaN, then Σ exp(x − max)).
template <class T>
__global__ void __launch_bounds__(kThreads) softmax_cols_kernel(const T* __restrict__ x, int64_t outer, int64_t n,
                                                                 int64_t inner, bool log, T* __restrict__ y) {
  using A = Acc<T>;
  const int64_t units = outer * inner;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = u / inner, c = u - o * inner;
    const T* xc = x + o * n * inner + c;
    T* yc = y + o * n * inner + c;
    A m = neg_inf<A>();
    for (int64_t i = 0; i < n; i++) {
      const A xi = ld(xc + i * inner);
      m = xi > m ? xi : m;
    }
    A s = 0;
    for (int64_t i = 0; i < n; i++) s += exp_a(ld(xc + i * inner) - m);
    if (log) {
      const A l = m + log_a(s);
      for (int64_t i = 0; i < n; i++) st(yc + i * inner, ld(xc + i * inner) - l);
    } else {
      const A inv = A(1) / s;
      for (int64_t i = 0; i < n; i++) st(yc + i * inner, exp_a(ld(xc + i * inner) - m) * inv);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) softmax_grad_rows_kernel(const T* __restrict__ y, const T* __restrict__ dy,
                                                                      int64_t outer, int64_t n, bool log,
                                                                      T* __restrict__ dx) {
  using A = Acc<T>;
  __shared__ A sh[33];
  for (int64_t r = blockIdx.x; r < outer; r += gridDim.x) {
    const T* yr = y + r * n;
    const T* gr = dy + r * n;
    T* dr = dx + r * n;
    A acc = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc += log ? ld(gr + j) : ld(gr + j) * ld(yr + j);
    const A s = block_sum(acc, sh);
    if (log) {
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) st(dr + j, ld(gr + j) - exp_a(ld(yr + j)) * s);
    } else {
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) st(dr + j, ld(yr + j) * (ld(gr + j) - s));
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) softmax_grad_cols_kernel(const T* __restrict__ y, const T* __restrict__ dy,
                                                                      int64_t outer, int64_t n, int64_t inner, bool log,
                                                                      T* __restrict__ dx) {
  using A = Acc<T>;
  const int64_t units = outer * inner;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = u / inner, c = u - o * inner;
    const int64_t base = o * n * inner + c;
    A s = 0;
    for (int64_t i = 0; i < n; i++) {
      const int64_t k = base + i * inner;
      s += log ? ld(dy + k) : ld(dy + k) * ld(y + k);
    }
    for (int64_t i = 0; i < n; i++) {
      const int64_t k = base + i * inner;
      st(dx + k, log ? ld(dy + k) - exp_a(ld(y + k)) * s : ld(y + k) * (ld(dy + k) - s));
    }
  }
}

// --- embedding ---------------------------------------------------------------------------------------

template <class E>
__global__ void __launch_bounds__(kThreads) embedding_kernel(const E* __restrict__ w, int64_t rows, int64_t d,
                                                              int64_t ws0, int64_t ws1, const int32_t* __restrict__ ids,
                                                              int64_t n, E* __restrict__ out,
                                                              unsigned long long* __restrict__ bad, bool copy) {
  const int64_t total = n * d;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / d, j = e - i * d;
    const int32_t id = ids[i];
    if (id < 0 || static_cast<int64_t>(id) >= rows) {
      if (copy) out[e] = E(0);
      if (j == 0) atomicMin(bad, static_cast<unsigned long long>(i));
      continue;
    }
    if (copy) out[e] = w[static_cast<int64_t>(id) * ws0 + j * ws1];
  }
}

RowsDev ToDev(const RowSpec& r) {
  if (r.rank < 0 || r.rank > kMaxRankRows) throw CudaError("crossEntropy: the logits have too many row axes");
  RowsDev d{};
  d.rank = r.rank;
  for (int i = 0; i < r.rank; i++) {
    d.shape[i] = r.shape[i];
    d.stride[i] = r.stride[i];
  }
  return d;
}

// The smallest bad index recorded in `flag`, or -1 (reads 8 bytes back: waits for the stream).
int64_t ReadBad(Context& c, const Scratch& flag) {
  unsigned long long v = kNoBad;
  c.read(&v, flag.get(), sizeof v);
  return v == kNoBad ? -1 : static_cast<int64_t>(v);
}

int32_t ReadI32(Context& c, const int32_t* p) {
  int32_t v = 0;
  c.read(&v, p, sizeof v);
  return v;
}

}  // namespace

// --- launchers -------------------------------------------------------------------------------------

void CrossEntropyForward(Context& c, int code, const void* logits, const RowSpec& rows, int64_t n, int64_t v,
                         const int32_t* targets, int32_t ignore, int reduction, void* lse, void* out) {
  const RowsDev rd = ToDev(rows);
  MODULORA_DISPATCH_FLOAT(code, "crossEntropy", T, {
    using A = Acc<T>;
    if (n <= 0) {
      if (reduction != kReduceNone) MODULORA_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(A), c.stream()));  // no rows: 0
      return;
    }
    Scratch flag(c, sizeof(unsigned long long));
    MODULORA_CUDA_CHECK(cudaMemsetAsync(flag.get(), 0xFF, sizeof(unsigned long long), c.stream()));
    Scratch per_row(c, reduction == kReduceNone ? 0 : static_cast<size_t>(n) * sizeof(A));
    A* loss_rows = reduction == kReduceNone ? static_cast<A*>(out) : per_row.as<A>();
    ce_forward_kernel<T><<<GridFor(n), kThreads, 0, c.stream()>>>(static_cast<const T*>(logits), rd, n, v, targets, ignore,
                                                                  static_cast<A*>(lse), loss_rows,
                                                                  flag.as<unsigned long long>());
    if (reduction != kReduceNone) {
      ce_reduce_kernel<A><<<1, kReduceThreads, 0, c.stream()>>>(loss_rows, targets, n, ignore, reduction == kReduceMean,
                                                                static_cast<A*>(out));
    }
    MODULORA_CUDA_CHECK(cudaGetLastError());
    const int64_t bad = ReadBad(c, flag);
    if (bad >= 0) {
      const int32_t t = ReadI32(c, targets + bad);
      throw CudaError("target " + std::to_string(t) + " at row " + std::to_string(bad) + " is outside [0, " +
                      std::to_string(v) + ") and is not ignoreIndex (" + std::to_string(ignore) + ")");
    }
  });
}

void CrossEntropyBackward(Context& c, int code, const void* logits, const RowSpec& rows, int64_t n, int64_t v,
                          const int32_t* targets, int32_t ignore, const void* lse, const void* g, int64_t g_stride,
                          bool mean, void* dlogits) {
  if (n <= 0 || v <= 0) return;
  const RowsDev rd = ToDev(rows);
  MODULORA_DISPATCH_FLOAT(code, "crossEntropyGrad", T, {
    using A = Acc<T>;
    Scratch scale(c, mean ? sizeof(A) : 0);
    if (mean) ce_mean_scale_kernel<A><<<1, kReduceThreads, 0, c.stream()>>>(targets, n, ignore, scale.as<A>());
    ce_backward_kernel<T><<<GridFor(n), kThreads, 0, c.stream()>>>(
        static_cast<const T*>(logits), rd, n, v, targets, ignore, static_cast<const A*>(lse), static_cast<const A*>(g),
        g_stride, mean ? scale.as<A>() : nullptr, static_cast<T*>(dlogits));
  });
}

void SoftmaxForward(Context& c, int code, const void* x, int64_t outer, int64_t n, int64_t inner, bool log, void* y) {
  if (outer <= 0 || n <= 0 || inner <= 0) return;
  MODULORA_DISPATCH_FLOAT(code, log ? "logSoftmax" : "softmax", T, {
    if (inner == 1) {
      softmax_rows_kernel<T><<<GridFor(outer), kThreads, 0, c.stream()>>>(static_cast<const T*>(x), outer, n, log,
                                                                          static_cast<T*>(y));
    } else {
      softmax_cols_kernel<T><<<GridFor((outer * inner + kThreads - 1) / kThreads), kThreads, 0, c.stream()>>>(
          static_cast<const T*>(x), outer, n, inner, log, static_cast<T*>(y));
    }
  });
}

void SoftmaxBackward(Context& c, int code, const void* y, const void* dy, int64_t outer, int64_t n, int64_t inner,
                     bool log, void* dx) {
  if (outer <= 0 || n <= 0 || inner <= 0) return;
  MODULORA_DISPATCH_FLOAT(code, log ? "logSoftmaxGrad" : "softmaxGrad", T, {
    if (inner == 1) {
      softmax_grad_rows_kernel<T><<<GridFor(outer), kThreads, 0, c.stream()>>>(
          static_cast<const T*>(y), static_cast<const T*>(dy), outer, n, log, static_cast<T*>(dx));
    } else {
      softmax_grad_cols_kernel<T><<<GridFor((outer * inner + kThreads - 1) / kThreads), kThreads, 0, c.stream()>>>(
          static_cast<const T*>(y), static_cast<const T*>(dy), outer, n, inner, log, static_cast<T*>(dx));
    }
  });
}

void Embedding(Context& c, int elem_size, const void* weight, int64_t rows, int64_t d, int64_t ws0, int64_t ws1,
               const int32_t* ids, int64_t n, void* out) {
  if (n <= 0) return;  // no ids: nothing to check or copy
  Scratch flag(c, sizeof(unsigned long long));
  MODULORA_CUDA_CHECK(cudaMemsetAsync(flag.get(), 0xFF, sizeof(unsigned long long), c.stream()));
  // With d == 0 nothing is copied, but the ids are still checked (one unit per id).
  const int64_t dk = d > 0 ? d : 1;
  const unsigned grid = GridFor((n * dk + kThreads - 1) / kThreads);
  const auto run = [&](auto zero) {
    using E = decltype(zero);
    embedding_kernel<E><<<grid, kThreads, 0, c.stream()>>>(static_cast<const E*>(weight), rows, dk, ws0, ws1, ids, n,
                                                           static_cast<E*>(out), flag.as<unsigned long long>(), d > 0);
  };
  switch (elem_size) {
    case 1: run(uint8_t(0)); break;
    case 2: run(uint16_t(0)); break;
    case 4: run(uint32_t(0)); break;
    case 8: run(uint64_t(0)); break;
    default: throw CudaError("embedding: element size " + std::to_string(elem_size) + " is not 1, 2, 4 or 8 bytes");
  }
  MODULORA_CUDA_CHECK(cudaGetLastError());
  const int64_t bad = ReadBad(c, flag);
  if (bad >= 0) {
    const int32_t id = ReadI32(c, ids + bad);
    throw CudaError("id " + std::to_string(id) + " at flat position " + std::to_string(bad) + " of ids is outside [0, " +
                    std::to_string(rows) + ") (weight has " + std::to_string(rows) + " rows)");
  }
}

}  // namespace cuda
}  // namespace modulora
