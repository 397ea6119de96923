// AVX2 + FMA GEMM kernels (compiled with -mavx2 -mfma; entered only through the dispatch in
// gemm.cc when active_isa() == Isa::Avx2).
//
// Micro-kernel: an MR x (NV*W) tile of C in ymm registers (W = 8 floats or 4 doubles). 6 x 16
// floats is the classic fit for 16 ymm registers: 12 accumulators, 2 B vectors, 1 broadcast.
#include <immintrin.h>

#include "cpu/gemm.h"

namespace modulora {
namespace gemm_detail {
namespace {

// No std:: templates in this file: an out-of-line copy compiled with AVX2 could be picked by the
// linker for baseline callers too (ODR merge), and crash CPUs without it.
inline int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }

struct F32 {
  using T = float;
  using V = __m256;
  static constexpr int W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static V set1(T x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static T fma1(T a, T b, T c) { return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c))); }
  static T sum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

struct F64 {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static V set1(T x) { return _mm256_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static T fma1(T a, T b, T c) { return _mm_cvtsd_f64(_mm_fmadd_sd(_mm_set_sd(a), _mm_set_sd(b), _mm_set_sd(c))); }
  static T sum(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

template <class S, int MR, int NV>
void Micro(int64_t kc, const typename S::T* A, const typename S::T* B, typename S::T* C, int64_t ldc,
           typename S::T beta) {
  using V = typename S::V;
  constexpr int W = S::W;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; r++) {
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + NV * W - 1), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[r][v] = S::zero();
  }
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; p++) {
    V b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) b[v] = S::load(B + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
      const V a = S::set1(A[r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) acc[r][v] = S::fma(a, b[v], acc[r][v]);
    }
    A += MR;
    B += NV * W;
  }
  if (beta == 0) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) S::store(C + r * ldc + v * W, acc[r][v]);
  } else if (beta == 1) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) S::store(C + r * ldc + v * W, S::add(acc[r][v], S::load(C + r * ldc + v * W)));
  } else {
    const V vb = S::set1(beta);
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++)
        S::store(C + r * ldc + v * W, S::fma(vb, S::load(C + r * ldc + v * W), acc[r][v]));
  }
}

// Lane mask selecting the first n (< 8 or more) floats, for maskload/maskstore.
inline __m256i FirstLanes(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n < 8 ? n : 8)), idx);
}

// In-register transpose of 8 x 8 floats: on return r[q] holds column q (lane i = old r[i][q]).
inline void Transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);      // per 128-bit lane: a0 b0 a1 b1
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);  // a2 b2 a3 b3
  }
#pragma GCC unroll 2
  for (int g = 0; g < 2; g++) {  // u[4g + q]: rows 4g..4g+3 of column q (low lane) and q + 4 (high)
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; q++) {
    r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
    r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
  }
}

// Packs up to 8 source rows (row i at src + i*ld, contiguous along depth) depth-major:
// dst[p*dstride + i] = scale * src[i*ld + p] for p < kc, i < lanes (rows h..lanes-1 are zero).
inline void PackRowsF32(int64_t h, int lanes, int64_t kc, const float* src, int64_t ld, __m256 scale, float* dst,
                        int64_t dstride) {
  const __m256i out = FirstLanes(lanes);
  __m256 r[8];
  int64_t p = 0;
  for (; p + 8 <= kc; p += 8) {
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) r[i] = i < h ? _mm256_mul_ps(scale, _mm256_loadu_ps(src + i * ld + p)) : _mm256_setzero_ps();
    Transpose8(r);
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++) _mm256_maskstore_ps(dst + (p + q) * dstride, out, r[q]);
  }
  if (p < kc) {
    const __m256i in = FirstLanes(kc - p);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
      r[i] = i < h ? _mm256_mul_ps(scale, _mm256_maskload_ps(src + i * ld + p, in)) : _mm256_setzero_ps();
    Transpose8(r);
    for (int q = 0; q < kc - p; q++) _mm256_maskstore_ps(dst + (p + q) * dstride, out, r[q]);
  }
}

template <class S, int MR>
void PackA(bool transA, int64_t rows, int64_t kc, const typename S::T* A, int64_t lda, typename S::T alpha,
           typename S::T* dst) {
  if constexpr (S::W == 8 && MR <= 8) {
    const __m256 va = _mm256_set1_ps(alpha);
    if (!transA) {
      for (int64_t i0 = 0; i0 < rows; i0 += MR, dst += MR * kc)
        PackRowsF32(Min(MR, rows - i0), MR, kc, A + i0 * lda, lda, va, dst, MR);
      return;
    }
    // transA: each depth step of a panel is a contiguous run of up to MR values. Blocks of 8
    // rows of A, as in PackB: sequential reads, contiguous writes per panel.
    const int64_t panels = (rows + MR - 1) / MR, full = rows / MR;
    const __m256i all = FirstLanes(MR), last = FirstLanes(rows - full * MR);
    constexpr int64_t kRows = 8;
    for (int64_t p0 = 0; p0 < kc; p0 += kRows) {
      const int64_t depth = Min(kRows, kc - p0);
      for (int64_t ip = 0; ip < panels; ip++) {
        const __m256i m = ip < full ? all : last;
        const float* src = A + p0 * lda + ip * MR;
        float* d = dst + ip * MR * kc + p0 * MR;
        for (int64_t r = 0; r < depth; r++)
          _mm256_maskstore_ps(d + r * MR, all, _mm256_mul_ps(va, _mm256_maskload_ps(src + r * lda, m)));
      }
    }
  } else {
    pack_a_ref<typename S::T>(MR, transA, rows, kc, A, lda, alpha, dst);
  }
}

template <class S, int NV>
void PackB(bool transB, int64_t kc, int64_t cols, const typename S::T* B, int64_t ldb, typename S::T* dst) {
  using T = typename S::T;
  constexpr int W = S::W, NR = NV * S::W;
  if (transB) {
    if constexpr (S::W == 8) {  // columns of op(B) are rows of B: transpose 8 at a time
      const __m256 one = _mm256_set1_ps(1.0f);
      for (int64_t j0 = 0; j0 < cols; j0 += NR, dst += NR * kc)
        for (int v = 0; v < NV; v++) {
          const int64_t h = cols - j0 - v * W;
          PackRowsF32(h < 0 ? 0 : Min(W, h), W, kc, B + (j0 + v * W) * ldb, ldb, one, dst + v * W, NR);
        }
    } else {
      pack_b_ref<T>(NR, transB, kc, cols, B, ldb, dst);
    }
    return;
  }
  // Blocks of 8 rows of B: 8 sequential read streams and contiguous writes per panel (see the
  // AVX-512 version for why neither a panel-at-a-time nor a row-at-a-time walk).
  const int64_t full = cols / NR, rest = cols - full * NR;
  constexpr int64_t kRows = 8;
  for (int64_t p0 = 0; p0 < kc; p0 += kRows) {
    const int64_t rows = Min(kRows, kc - p0);
    for (int64_t jp = 0; jp <= full; jp++) {
      if (jp == full && rest == 0) break;
      const T* src = B + p0 * ldb + jp * NR;
      T* d = dst + jp * NR * kc + p0 * NR;
      for (int64_t r = 0; r < rows; r++) {
        if (jp < full) {
#pragma GCC unroll 4
          for (int v = 0; v < NV; v++) S::store(d + r * NR + v * W, S::load(src + r * ldb + v * W));
        } else {
          int64_t c = 0;
          for (; c < rest; c++) d[r * NR + c] = src[r * ldb + c];
          for (; c < NR; c++) d[r * NR + c] = 0;
        }
      }
    }
  }
}

// y[j] = sum_p x[p] * M[p*ldm + j], 8 rows of M per pass (see gemm_avx512.cc). The scalar tail
// uses a fused multiply-add too, so every y[j] is the same FMA chain whichever lane computes it.
template <class S>
void GemvRows(int64_t k, int64_t n, const typename S::T* x, const typename S::T* M, int64_t ldm,
              typename S::T* y) {
  using T = typename S::T;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int R = 8;
  for (int64_t j = 0; j < n; j++) y[j] = 0;
  int64_t p = 0;
  for (; p < k; p += R) {
    const int rows = static_cast<int>(Min(R, k - p));
    const T* row = M + p * ldm;
    int64_t j = 0;
    if (rows == R) {
      V xs[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) xs[r] = S::set1(x[p + r]);
      for (; j + W <= n; j += W) {
        V acc = S::load(y + j);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) acc = S::fma(xs[r], S::load(row + r * ldm + j), acc);
        S::store(y + j, acc);
      }
    } else {
      for (; j + W <= n; j += W) {
        V acc = S::load(y + j);
        for (int r = 0; r < rows; r++) acc = S::fma(S::set1(x[p + r]), S::load(row + r * ldm + j), acc);
        S::store(y + j, acc);
      }
    }
    for (; j < n; j++) {
      T acc = y[j];
      for (int r = 0; r < rows; r++) acc = S::fma1(x[p + r], row[r * ldm + j], acc);
      y[j] = acc;
    }
  }
}

template <class S, int R>
void DotRows(int64_t k, const typename S::T* x, const typename S::T* M, int64_t ldm, typename S::T* y) {
  using T = typename S::T;
  using V = typename S::V;
  constexpr int W = S::W;
  V acc[R][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = S::zero();
  int64_t p = 0;
  for (; p + 2 * W <= k; p += 2 * W) {
    const V x0 = S::load(x + p), x1 = S::load(x + p + W);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      acc[r][0] = S::fma(x0, S::load(M + r * ldm + p), acc[r][0]);
      acc[r][1] = S::fma(x1, S::load(M + r * ldm + p + W), acc[r][1]);
    }
  }
  const int64_t tail = p;
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    T s = S::sum(S::add(acc[r][0], acc[r][1]));
    for (int64_t q = tail; q < k; q++) s = S::fma1(x[q], M[r * ldm + q], s);
    y[r] = s;
  }
}

template <class S>
void GemvDots(int64_t k, int64_t n, const typename S::T* x, const typename S::T* M, int64_t ldm,
              typename S::T* y) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) DotRows<S, 4>(k, x, M + j * ldm, ldm, y + j);
  for (; j < n; j++) DotRows<S, 1>(k, x, M + j * ldm, ldm, y + j);
}

constexpr int kMrF = 6, kNvF = 2;  // 6 x 16 floats
constexpr int kMrD = 6, kNvD = 2;  // 6 x 8 doubles

const Kernels<float> kAvx2F32 = {
    "avx2", kMrF, kNvF * F32::W, 256, 144, 4080,
    Micro<F32, kMrF, kNvF>, PackA<F32, kMrF>, PackB<F32, kNvF>, GemvRows<F32>, GemvDots<F32>,
};
const Kernels<double> kAvx2F64 = {
    "avx2", kMrD, kNvD * F64::W, 256, 96, 2040,
    Micro<F64, kMrD, kNvD>, PackA<F64, kMrD>, PackB<F64, kNvD>, GemvRows<F64>, GemvDots<F64>,
};

}  // namespace

const Kernels<float>* sgemm_kernels_avx2() { return &kAvx2F32; }
const Kernels<double>* dgemm_kernels_avx2() { return &kAvx2F64; }

}  // namespace gemm_detail
}  // namespace modulora
