// Softmax cross-entropy (forward and backward), softmax and logSoftmax (forward and backward).
// See loss.h for the contracts.
//
// Every kernel body below is written once, as always-inline templates, and compiled three times:
// for baseline x86-64, for AVX2+FMA and for AVX-512 (GCC `target` attributes on thin wrappers).
// The body is exp-bound, and a 16-lane f32 exp is several times faster than a 4-lane one. The
// AVX2/AVX-512 GEMM kernels live in their own translation units with their own compile flags; the
// loss kernels are few and small enough that per-function attributes keep them in one file. The
// wrapper is picked from active_isa() (cpu_features.h), so MODULORA_CPU_ISA / setIsa() force a
// lower path here as well.
#include "cpu/loss.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/cpu_features.h"
#include "cpu/threadpool.h"

// GCC will not if-convert the selects of exp_t and max_nan (so will not vectorise the loops that
// call them) while floating-point compares count as trapping; these kernels never read the FP
// exception flags, so trapping math is switched off for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#define MODULORA_INLINE inline __attribute__((always_inline))

namespace modulora {
namespace {

constexpr int64_t kGrainElems = 16384;  // least elements per parallel chunk
constexpr int64_t kColBlock = 64;       // columns per unit of the strided (inner > 1) softmax

template <class T> constexpr int kLanes = 64 / static_cast<int>(sizeof(T));  // one 512-bit register
template <class T> constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// --- exp -----------------------------------------------------------------------------------------

// expf as a branch-free polynomial that vectorises (Cephes expf: Cody-Waite reduction by ln 2 and a
// degree-6 polynomial; about 1 ulp). Below -87.33 the result is exactly 0, NaN stays NaN, and the
// input is clamped at 88 (never reached here: arguments are x - max <= 0).
MODULORA_INLINE float exp_t(float d) {
  float x = d < -88.0f ? -88.0f : d;  // written so that a NaN d passes through
  x = x > 88.0f ? 88.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer held in the low bits
  const float t = x * 1.44269504088896341f + magic;
  const float fn = t - magic;
  int32_t ti;
  std::memcpy(&ti, &t, sizeof ti);
  const int32_t n = ti - 0x4B400000;  // the bits of `magic`
  float r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (n + 127) << 23;  // 2^n; n is in [-127, 127] after the clamp
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float y = p * scale;
  return d < -87.33f ? 0.0f : y;
}

MODULORA_INLINE double exp_t(double d) { return std::exp(d); }


// --- row helpers (kLanes independent accumulators, then a tree) ----------------------------------

template <class T>
MODULORA_INLINE T tree(T* acc) {
  for (int w = kLanes<T> / 2; w >= 1; w /= 2) {
    for (int k = 0; k < w; k++) acc[k] += acc[k + w];
  }
  return acc[0];
}

// A 128-bit register of T as a GCC vector (the width every x86-64 ISA has, so no path lowers it
// to scalars); unaligned and may alias T. The auto-vectoriser does not vectorise a float max
// reduction without -ffast-math, so chunk_max spells it out with four of them per step.
typedef float VecF32 __attribute__((vector_size(16), aligned(4), may_alias));
typedef double VecF64 __attribute__((vector_size(16), aligned(8), may_alias));
template <class T> struct VecOf;
template <> struct VecOf<float> { using type = VecF32; };
template <> struct VecOf<double> { using type = VecF64; };

// Max of a chunk, NaNs skipped (`v > acc ? v : acc` is one maxps). Callers see NaNs through exp:
// exp_t(NaN - m) is NaN.
template <class T>
MODULORA_INLINE T chunk_max(const T* x, int64_t n) {
  using V = typename VecOf<T>::type;
  constexpr int W = 16 / static_cast<int>(sizeof(T));  // lanes per vector
  V acc[4];
  for (auto& a : acc) a = V{} + kNegInf<T>;
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    for (int k = 0; k < 4; k++) {
      const V v = *reinterpret_cast<const V*>(x + i + k * W);
      acc[k] = v > acc[k] ? v : acc[k];
    }
  }
  T m = kNegInf<T>;
  for (int k = 0; k < 4; k++) {
    for (int j = 0; j < W; j++) m = acc[k][j] > m ? acc[k][j] : m;
  }
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

template <class T>
MODULORA_INLINE bool has_nan(const T* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    if (x[i] != x[i]) return true;
  }
  return false;
}

// sum(exp(x - m)) over a chunk.
template <class T>
MODULORA_INLINE T chunk_sum_exp(const T* x, int64_t n, T m) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    for (int k = 0; k < L; k++) acc[k] += exp_t(x[i + k] - m);
  }
  T tail = 0;
  for (; i < n; i++) tail += exp_t(x[i] - m);
  return tree(acc) + tail;
}

template <class T>
MODULORA_INLINE T chunk_dot(const T* a, const T* b, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    for (int k = 0; k < L; k++) acc[k] += a[i + k] * b[i + k];
  }
  T tail = 0;
  for (; i < n; i++) tail += a[i] * b[i];
  return tree(acc) + tail;
}

template <class T>
MODULORA_INLINE T chunk_sum(const T* a, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    for (int k = 0; k < L; k++) acc[k] += a[i + k];
  }
  T tail = 0;
  for (; i < n; i++) tail += a[i];
  return tree(acc) + tail;
}

// Max m and s = sum(exp(x - m)) of a row in one pass, chunk by chunk: when a chunk raises the max,
// the running sum is rescaled by exp(old - new). A NaN anywhere gives s = NaN. A row of -inf (or
// an empty row) gives m = -inf, s = 0.
template <class T>
MODULORA_INLINE void row_stats(const T* x, int64_t v, T& m_out, T& s_out) {
  T m = kNegInf<T>, s = 0;
  for (int64_t c0 = 0; c0 < v; c0 += kLossChunk) {
    const int64_t len = std::min(kLossChunk, v - c0);
    const T cm = chunk_max(x + c0, len);
    if (cm > m) {
      s *= std::exp(m - cm);
      m = cm;
    }
    if (m == kNegInf<T>) {  // everything so far is -inf (adds exp(-inf) = 0) or NaN
      if (has_nan(x + c0, len)) s = std::numeric_limits<T>::quiet_NaN();
      continue;
    }
    s += chunk_sum_exp(x + c0, len, m);
  }
  m_out = m;
  s_out = s;
}

template <class T>
MODULORA_INLINE T row_lse(const T* x, int64_t v) {
  T m, s;
  row_stats(x, v, m, s);
  return m + std::log(s);  // -inf for a row of -inf, +inf or NaN propagate
}

// --- cross-entropy ---------------------------------------------------------------------------

template <class T>
struct CeArgs {
  const T* logits;
  const RowLayout* rows;
  int64_t v;
  const int32_t* targets;
  int32_t ignore;
  T* lse;        // forward: out; backward: in
  T* loss;       // forward
  const T* g;    // backward
  int64_t g_stride;
  T g_scale;
  T* dlogits;    // backward
};

template <class T>
MODULORA_INLINE void ce_forward_range(const CeArgs<T>& a, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; r++) {
    const int32_t t = a.targets[r];
    if (t == a.ignore) {  // nothing of an ignored row is needed, forward or backward
      a.lse[r] = 0;
      a.loss[r] = 0;
      continue;
    }
    const T* x = a.logits + a.rows->offset(r);
    const T l = row_lse(x, a.v);
    a.lse[r] = l;
    a.loss[r] = l - x[t];
  }
}

template <class T>
MODULORA_INLINE void ce_backward_range(const CeArgs<T>& a, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; r++) {
    T* dx = a.dlogits + r * a.v;
    const int32_t t = a.targets[r];
    if (t == a.ignore) {
      std::fill(dx, dx + a.v, T(0));
      continue;
    }
    const T* x = a.logits + a.rows->offset(r);
    const T lse = a.lse[r];
    const T g = a.g[r * a.g_stride] * a.g_scale;
    for (int64_t j = 0; j < a.v; j++) dx[j] = exp_t(x[j] - lse) * g;
    dx[t] -= g;
  }
}

// --- softmax / logSoftmax --------------------------------------------------------------------

template <class T>
struct SmArgs {
  const T* x;   // forward: x; backward: y
  const T* dy;  // backward
  T* out;       // forward: y; backward: dx
  int64_t outer, n, inner;
  bool log;
};

// inner == 1: one contiguous row of n per outer index.
template <class T>
MODULORA_INLINE void softmax_rows(const SmArgs<T>& a, int64_t begin, int64_t end) {
  const int64_t n = a.n;
  for (int64_t r = begin; r < end; r++) {
    const T* x = a.x + r * n;
    T* y = a.out + r * n;
    T m, s;
    row_stats(x, n, m, s);
    if (a.log) {
      const T lse = m + std::log(s);
      for (int64_t j = 0; j < n; j++) y[j] = x[j] - lse;
    } else {
      const T inv = T(1) / s;
      for (int64_t j = 0; j < n; j++) y[j] = exp_t(x[j] - m) * inv;
    }
  }
}

// inner > 1: unit u is (outer index, block of up to kColBlock columns); the statistics of the
// block's columns are kept side by side, so the loops run along contiguous columns.
template <class T>
MODULORA_INLINE void softmax_cols(const SmArgs<T>& a, int64_t begin, int64_t end) {
  const int64_t n = a.n, inner = a.inner;
  const int64_t blocks = (inner + kColBlock - 1) / kColBlock;
  for (int64_t u = begin; u < end; u++) {
    const int64_t o = u / blocks, c0 = (u % blocks) * kColBlock;
    const int64_t w = std::min(kColBlock, inner - c0);
    const T* x = a.x + o * n * inner + c0;
    T* y = a.out + o * n * inner + c0;
    T m[kColBlock], s[kColBlock];
    for (int64_t c = 0; c < w; c++) m[c] = kNegInf<T>;
    for (int64_t i = 0; i < n; i++) {
      const T* xi = x + i * inner;
      for (int64_t c = 0; c < w; c++) m[c] = xi[c] > m[c] ? xi[c] : m[c];  // NaN skipped here, caught by exp below
    }
    for (int64_t c = 0; c < w; c++) s[c] = 0;
    for (int64_t i = 0; i < n; i++) {
      const T* xi = x + i * inner;
      for (int64_t c = 0; c < w; c++) s[c] += exp_t(xi[c] - m[c]);
    }
    if (a.log) {
      for (int64_t c = 0; c < w; c++) s[c] = m[c] + std::log(s[c]);  // s now holds lse
      for (int64_t i = 0; i < n; i++) {
        for (int64_t c = 0; c < w; c++) y[i * inner + c] = x[i * inner + c] - s[c];
      }
    } else {
      for (int64_t c = 0; c < w; c++) s[c] = T(1) / s[c];
      for (int64_t i = 0; i < n; i++) {
        for (int64_t c = 0; c < w; c++) y[i * inner + c] = exp_t(x[i * inner + c] - m[c]) * s[c];
      }
    }
  }
}

template <class T>
MODULORA_INLINE void softmax_grad_rows(const SmArgs<T>& a, int64_t begin, int64_t end) {
  const int64_t n = a.n;
  for (int64_t r = begin; r < end; r++) {
    const T* y = a.x + r * n;
    const T* dy = a.dy + r * n;
    T* dx = a.out + r * n;
    if (a.log) {
      const T s = chunk_sum(dy, n);
      for (int64_t j = 0; j < n; j++) dx[j] = dy[j] - exp_t(y[j]) * s;
    } else {
      const T s = chunk_dot(dy, y, n);
      for (int64_t j = 0; j < n; j++) dx[j] = y[j] * (dy[j] - s);
    }
  }
}

template <class T>
MODULORA_INLINE void softmax_grad_cols(const SmArgs<T>& a, int64_t begin, int64_t end) {
  const int64_t n = a.n, inner = a.inner;
  const int64_t blocks = (inner + kColBlock - 1) / kColBlock;
  for (int64_t u = begin; u < end; u++) {
    const int64_t o = u / blocks, c0 = (u % blocks) * kColBlock;
    const int64_t w = std::min(kColBlock, inner - c0);
    const int64_t base = o * n * inner + c0;
    const T* y = a.x + base;
    const T* dy = a.dy + base;
    T* dx = a.out + base;
    T s[kColBlock];
    for (int64_t c = 0; c < w; c++) s[c] = 0;
    for (int64_t i = 0; i < n; i++) {
      const int64_t off = i * inner;
      if (a.log) {
        for (int64_t c = 0; c < w; c++) s[c] += dy[off + c];
      } else {
        for (int64_t c = 0; c < w; c++) s[c] += dy[off + c] * y[off + c];
      }
    }
    for (int64_t i = 0; i < n; i++) {
      const int64_t off = i * inner;
      if (a.log) {
        for (int64_t c = 0; c < w; c++) dx[off + c] = dy[off + c] - exp_t(y[off + c]) * s[c];
      } else {
        for (int64_t c = 0; c < w; c++) dx[off + c] = y[off + c] * (dy[off + c] - s[c]);
      }
    }
  }
}

// --- per-ISA instantiations --------------------------------------------------------------------

template <class T>
struct Table {
  void (*ce_forward)(const CeArgs<T>&, int64_t, int64_t);
  void (*ce_backward)(const CeArgs<T>&, int64_t, int64_t);
  void (*softmax_rows)(const SmArgs<T>&, int64_t, int64_t);
  void (*softmax_cols)(const SmArgs<T>&, int64_t, int64_t);
  void (*grad_rows)(const SmArgs<T>&, int64_t, int64_t);
  void (*grad_cols)(const SmArgs<T>&, int64_t, int64_t);
};

#define MODULORA_LOSS_VARIANT(NS, ATTR)                                                                          \
  namespace NS {                                                                                                 \
  template <class T> ATTR void ce_forward(const CeArgs<T>& a, int64_t b, int64_t e) { ce_forward_range(a, b, e); } \
  template <class T> ATTR void ce_backward(const CeArgs<T>& a, int64_t b, int64_t e) { ce_backward_range(a, b, e); } \
  template <class T> ATTR void sm_rows(const SmArgs<T>& a, int64_t b, int64_t e) { softmax_rows(a, b, e); }       \
  template <class T> ATTR void sm_cols(const SmArgs<T>& a, int64_t b, int64_t e) { softmax_cols(a, b, e); }       \
  template <class T> ATTR void gr_rows(const SmArgs<T>& a, int64_t b, int64_t e) { softmax_grad_rows(a, b, e); }  \
  template <class T> ATTR void gr_cols(const SmArgs<T>& a, int64_t b, int64_t e) { softmax_grad_cols(a, b, e); }  \
  template <class T> Table<T> table() {                                                                          \
    return {ce_forward<T>, ce_backward<T>, sm_rows<T>, sm_cols<T>, gr_rows<T>, gr_cols<T>};                      \
  }                                                                                                              \
  }

MODULORA_LOSS_VARIANT(generic, )
#if defined(MODULORA_X86_DISPATCH) && (defined(__GNUC__) || defined(__clang__))
MODULORA_LOSS_VARIANT(avx2, __attribute__((target("avx2,fma,f16c"))))
MODULORA_LOSS_VARIANT(avx512, __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"))))
#define MODULORA_LOSS_HAVE_ISA 1
#endif

template <class T>
Table<T> table_for_active_isa() {
#ifdef MODULORA_LOSS_HAVE_ISA
  switch (active_isa()) {
    case Isa::Avx512: return avx512::table<T>();
    case Isa::Avx2: return avx2::table<T>();
    default: break;
  }
#endif
  return generic::table<T>();
}

int64_t rows_grain(int64_t row_len) { return std::max<int64_t>(1, kGrainElems / std::max<int64_t>(1, row_len)); }

}  // namespace

template <class T>
int64_t cross_entropy_forward(const T* logits, const RowLayout& rows, int64_t v, const int32_t* targets,
                              int32_t ignore_index, T* lse, T* loss) {
  const int64_t n = rows.rows();
  int64_t counted = 0;
  for (int64_t r = 0; r < n; r++) counted += targets[r] != ignore_index;
  CeArgs<T> a{logits, &rows, v, targets, ignore_index, lse, loss, nullptr, 0, T(0), nullptr};
  const auto fn = table_for_active_isa<T>().ce_forward;
  parallel_for(n, rows_grain(v), [&](int64_t b, int64_t e) { fn(a, b, e); });
  return counted;
}

template <class T>
void cross_entropy_backward(const T* logits, const RowLayout& rows, int64_t v, const int32_t* targets,
                            int32_t ignore_index, const T* lse, const T* g, int64_t g_stride, bool mean, T* dlogits) {
  const int64_t n = rows.rows();
  T scale = 1;
  if (mean) {
    int64_t counted = 0;
    for (int64_t r = 0; r < n; r++) counted += targets[r] != ignore_index;
    scale = counted ? T(1) / static_cast<T>(counted) : T(0);  // no counted row: every row is ignored anyway
  }
  CeArgs<T> a{logits, &rows, v, targets, ignore_index, const_cast<T*>(lse), nullptr, g, g_stride, scale, dlogits};
  const auto fn = table_for_active_isa<T>().ce_backward;
  parallel_for(n, rows_grain(v), [&](int64_t b, int64_t e) { fn(a, b, e); });
}

template <class T>
void softmax_forward(const T* x, int64_t outer, int64_t n, int64_t inner, bool log, T* y) {
  if (outer == 0 || n == 0 || inner == 0) return;
  SmArgs<T> a{x, nullptr, y, outer, n, inner, log};
  const Table<T> t = table_for_active_isa<T>();
  if (inner == 1) {
    parallel_for(outer, rows_grain(n), [&](int64_t b, int64_t e) { t.softmax_rows(a, b, e); });
  } else {
    const int64_t units = outer * ((inner + kColBlock - 1) / kColBlock);
    parallel_for(units, rows_grain(n * kColBlock), [&](int64_t b, int64_t e) { t.softmax_cols(a, b, e); });
  }
}

template <class T>
void softmax_backward(const T* y, const T* dy, int64_t outer, int64_t n, int64_t inner, bool log, T* dx) {
  if (outer == 0 || n == 0 || inner == 0) return;
  SmArgs<T> a{y, dy, dx, outer, n, inner, log};
  const Table<T> t = table_for_active_isa<T>();
  if (inner == 1) {
    parallel_for(outer, rows_grain(n), [&](int64_t b, int64_t e) { t.grad_rows(a, b, e); });
  } else {
    const int64_t units = outer * ((inner + kColBlock - 1) / kColBlock);
    parallel_for(units, rows_grain(n * kColBlock), [&](int64_t b, int64_t e) { t.grad_cols(a, b, e); });
  }
}

#define MODULORA_LOSS_INSTANTIATE(T)                                                                           \
  template int64_t cross_entropy_forward<T>(const T*, const RowLayout&, int64_t, const int32_t*, int32_t, T*, T*); \
  template void cross_entropy_backward<T>(const T*, const RowLayout&, int64_t, const int32_t*, int32_t, const T*,  \
                                          const T*, int64_t, bool, T*);                                        \
  template void softmax_forward<T>(const T*, int64_t, int64_t, int64_t, bool, T*);                             \
  template void softmax_backward<T>(const T*, const T*, int64_t, int64_t, int64_t, bool, T*);

MODULORA_LOSS_INSTANTIATE(float)
MODULORA_LOSS_INSTANTIATE(double)

}  // namespace modulora
