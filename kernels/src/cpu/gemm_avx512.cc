// AVX-512 GEMM kernels (compiled with -mavx512f/bw/dq/vl -mfma; entered only through the
// dispatch in gemm.cc when active_isa() == Isa::Avx512).
//
// Micro-kernel: an MR x (NV*W) tile of C in zmm registers (W = 16 floats or 8 doubles). Each
// depth step loads NV vectors of the packed B panel and broadcasts MR values of the packed A
// panel: MR*NV FMAs against NV loads + MR broadcasts. 14 x 32 keeps 28 accumulators, 2 B vectors
// and the broadcast in the 32 zmm registers.
#include <immintrin.h>

// gcc 12's AVX-512 headers build shuffles and extracts on a self-initialised `__Y = __Y` dummy,
// which -Wuninitialized reports at every inlined use; the warning is about the header, not us.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "cpu/gemm.h"

namespace modulora {
namespace gemm_detail {
namespace {

// No std:: templates in this file: an out-of-line copy compiled with AVX-512 could be picked by
// the linker for baseline callers too (ODR merge), and crash CPUs without it.
inline int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t Max(int64_t a, int64_t b) { return a > b ? a : b; }

struct F32 {
  using T = float;
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V loadz(Mask m, const T* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static void store(T* p, Mask m, V v) { _mm512_mask_storeu_ps(p, m, v); }
  static V set1(T x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static T sum(V v) {
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
    __m128 s = _mm512_castps512_ps128(v);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static Mask first(int64_t n) { return n >= W ? Mask(0xFFFF) : Mask((1u << n) - 1); }
};

struct F64 {
  using T = double;
  using V = __m512d;
  using Mask = __mmask8;
  static constexpr int W = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V loadz(Mask m, const T* p) { return _mm512_maskz_loadu_pd(m, p); }
  static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static void store(T* p, Mask m, V v) { _mm512_mask_storeu_pd(p, m, v); }
  static V set1(T x) { return _mm512_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static T sum(V v) {
    v = _mm512_add_pd(v, _mm512_shuffle_f64x2(v, v, 0x4E));
    v = _mm512_add_pd(v, _mm512_shuffle_f64x2(v, v, 0xB1));
    __m128d s = _mm512_castpd512_pd128(v);
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static Mask first(int64_t n) { return n >= W ? Mask(0xFF) : Mask((1u << n) - 1); }
};

template <class S, int MR, int NV>
void Micro(int64_t kc, const typename S::T* A, const typename S::T* B, typename S::T* C, int64_t ldc,
           typename S::T beta) {
  using V = typename S::V;
  constexpr int W = S::W;
  V acc[MR][NV];
#pragma GCC unroll 64
  for (int r = 0; r < MR; r++) {
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + NV * W - 1), _MM_HINT_T0);
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) acc[r][v] = S::zero();
  }
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; p++) {
    V b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) b[v] = S::load(B + v * W);
#pragma GCC unroll 64
    for (int r = 0; r < MR; r++) {
      const V a = S::set1(A[r]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) acc[r][v] = S::fma(a, b[v], acc[r][v]);
    }
    A += MR;
    B += NV * W;
  }
  if (beta == 0) {
#pragma GCC unroll 64
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) S::store(C + r * ldc + v * W, acc[r][v]);
  } else if (beta == 1) {
#pragma GCC unroll 64
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) S::store(C + r * ldc + v * W, S::add(acc[r][v], S::load(C + r * ldc + v * W)));
  } else {
    const V vb = S::set1(beta);
#pragma GCC unroll 64
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++)
        S::store(C + r * ldc + v * W, S::fma(vb, S::load(C + r * ldc + v * W), acc[r][v]));
  }
}

// In-register transpose of 16 x 16 floats: on return r[q] holds column q (lane i = old r[i][q]).
inline void Transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);      // per 128-bit lane: a0 b0 a1 b1
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);  // a2 b2 a3 b3
  }
#pragma GCC unroll 4
  for (int g = 0; g < 4; g++) {  // u[4g + q]: rows 4g..4g+3 of column 4l + q in lane l
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; q++) {  // gather lane l of u[q], u[4+q], u[8+q], u[12+q] -> column 4l + q
    const __m512 v0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88), v1 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
    const __m512 w0 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
    r[q] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    r[8 + q] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    r[4 + q] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    r[12 + q] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
}

// Packs a panel of `h` <= 16 source rows (row i at src + i*ld, contiguous along depth) into
// depth-major order: dst[p*dstride + i] = scale * src[i*ld + p] for p < kc, i < lanes (rows
// h..lanes-1 are zero). Used for op(A) rows when !transA and op(B) columns when transB.
inline void PackRowsF32(int64_t h, int lanes, int64_t kc, const float* src, int64_t ld, __m512 scale, float* dst,
                        int64_t dstride) {
  const __mmask16 out = F32::first(lanes);
  __m512 r[16];
  int64_t p = 0;
  for (; p + 16 <= kc; p += 16) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = i < h ? _mm512_mul_ps(scale, _mm512_loadu_ps(src + i * ld + p)) : _mm512_setzero_ps();
    Transpose16(r);
#pragma GCC unroll 16
    for (int q = 0; q < 16; q++) _mm512_mask_storeu_ps(dst + (p + q) * dstride, out, r[q]);
  }
  if (p < kc) {
    const __mmask16 in = F32::first(kc - p);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
      r[i] = i < h ? _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(in, src + i * ld + p)) : _mm512_setzero_ps();
    Transpose16(r);
    for (int q = 0; q < kc - p; q++) _mm512_mask_storeu_ps(dst + (p + q) * dstride, out, r[q]);
  }
}

template <class S, int MR>
void PackA(bool transA, int64_t rows, int64_t kc, const typename S::T* A, int64_t lda, typename S::T alpha,
           typename S::T* dst) {
  using T = typename S::T;
  if (MR > S::W) {
    pack_a_ref<T>(MR, transA, rows, kc, A, lda, alpha, dst);
    return;
  }
  const typename S::V va = S::set1(alpha);
  if (!transA) {
    if constexpr (S::W == 16) {
      for (int64_t i0 = 0; i0 < rows; i0 += MR, dst += MR * kc)
        PackRowsF32(Min(MR, rows - i0), MR, kc, A + i0 * lda, lda, va, dst, MR);
    } else {
      pack_a_ref<T>(MR, transA, rows, kc, A, lda, alpha, dst);
    }
    return;
  }
  // transA: each depth step of a panel is a contiguous run of up to MR values. Blocks of 8 rows
  // of A, as in PackB: sequential reads, contiguous writes per panel.
  const int64_t panels = (rows + MR - 1) / MR, full = rows / MR;
  const auto all = S::first(MR), last = S::first(rows - full * MR);
  constexpr int64_t kRows = 8;
  for (int64_t p0 = 0; p0 < kc; p0 += kRows) {
    const int64_t depth = Min(kRows, kc - p0);
    for (int64_t ip = 0; ip < panels; ip++) {
      const auto m = ip < full ? all : last;
      const T* src = A + p0 * lda + ip * MR;
      T* d = dst + ip * MR * kc + p0 * MR;
      for (int64_t r = 0; r < depth; r++) S::store(d + r * MR, all, S::mul(va, S::loadz(m, src + r * lda)));
    }
  }
}

template <class S, int NV>
void PackB(bool transB, int64_t kc, int64_t cols, const typename S::T* B, int64_t ldb, typename S::T* dst) {
  using T = typename S::T;
  constexpr int W = S::W, NR = NV * S::W;
  if (transB) {
    if constexpr (S::W == 16) {  // columns of op(B) are rows of B: transpose 16 at a time
      const __m512 one = _mm512_set1_ps(1.0f);
      for (int64_t j0 = 0; j0 < cols; j0 += NR, dst += NR * kc)
        for (int v = 0; v < NV; v++)
          PackRowsF32(Max(0, Min(W, cols - j0 - v * W)), W, kc, B + (j0 + v * W) * ldb, ldb, one, dst + v * W, NR);
    } else {
      pack_b_ref<T>(NR, transB, kc, cols, B, ldb, dst);
    }
    return;
  }
  // Blocks of 8 rows of B: 8 sequential read streams, and 1 KiB of contiguous writes per panel.
  // (Walking one panel at a time down all kc rows touches a new page per row when ldb is large;
  // walking one row at a time across all panels writes with a stride of nr*kc elements, which
  // for power-of-two kc maps every store to the same L1 set.)
  const int64_t full = cols / NR, rest = cols - full * NR;
  constexpr int64_t kRows = 8;
  for (int64_t p0 = 0; p0 < kc; p0 += kRows) {
    const int64_t rows = Min(kRows, kc - p0);
    for (int64_t jp = 0; jp <= full; jp++) {
      if (jp == full && rest == 0) break;
      const T* src = B + p0 * ldb + jp * NR;
      T* d = dst + jp * NR * kc + p0 * NR;
      if (jp < full) {
        for (int64_t r = 0; r < rows; r++)
#pragma GCC unroll 8
          for (int v = 0; v < NV; v++) S::store(d + r * NR + v * W, S::load(src + r * ldb + v * W));
      } else {
        for (int64_t r = 0; r < rows; r++)
#pragma GCC unroll 8
          for (int v = 0; v < NV; v++)
            S::store(d + r * NR + v * W, S::loadz(S::first(Max(0, rest - v * W)), src + r * ldb + v * W));
      }
    }
  }
}

// y[j] = sum_p x[p] * M[p*ldm + j]. Streams 8 rows of M at a time (8 sequential streams the
// prefetchers follow) and keeps y in L1; every y[j] is one FMA chain in depth order.
template <class S>
void GemvRows(int64_t k, int64_t n, const typename S::T* x, const typename S::T* M, int64_t ldm,
              typename S::T* y) {
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int R = 8;
  for (int64_t j = 0; j < n; j += W) S::store(y + j, S::first(n - j), S::zero());
  int64_t p = 0;
  for (; p + R <= k; p += R) {
    V xs[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) xs[r] = S::set1(x[p + r]);
    const typename S::T* row = M + p * ldm;
    int64_t j = 0;
    for (; j + W <= n; j += W) {
      V acc = S::load(y + j);
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) acc = S::fma(xs[r], S::load(row + r * ldm + j), acc);
      S::store(y + j, acc);
    }
    if (j < n) {
      const auto m = S::first(n - j);
      V acc = S::loadz(m, y + j);
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) acc = S::fma(xs[r], S::loadz(m, row + r * ldm + j), acc);
      S::store(y + j, m, acc);
    }
  }
  for (; p < k; p++) {
    const V xp = S::set1(x[p]);
    const typename S::T* row = M + p * ldm;
    for (int64_t j = 0; j < n; j += W) {
      const auto m = S::first(n - j);
      S::store(y + j, m, S::fma(xp, S::loadz(m, row + j), S::loadz(m, y + j)));
    }
  }
}

// Dots of x with R rows of M at once; each row's arithmetic is the same whatever R is.
template <class S, int R>
void DotRows(int64_t k, const typename S::T* x, const typename S::T* M, int64_t ldm, typename S::T* y) {
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
  for (; p < k; p += W) {
    const auto m = S::first(k - p);
    const V x0 = S::loadz(m, x + p);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) acc[r][0] = S::fma(x0, S::loadz(m, M + r * ldm + p), acc[r][0]);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) y[r] = S::sum(S::add(acc[r][0], acc[r][1]));
}

template <class S>
void GemvDots(int64_t k, int64_t n, const typename S::T* x, const typename S::T* M, int64_t ldm,
              typename S::T* y) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) DotRows<S, 4>(k, x, M + j * ldm, ldm, y + j);
  for (; j < n; j++) DotRows<S, 1>(k, x, M + j * ldm, ldm, y + j);
}

constexpr int kMrF = 14, kNvF = 2;  // 14 x 32 floats
constexpr int kMrD = 14, kNvD = 2;  // 14 x 16 doubles

const Kernels<float> kAvx512F32 = {
    "avx512", kMrF, kNvF * F32::W, 512, 112, 4096,
    Micro<F32, kMrF, kNvF>, PackA<F32, kMrF>, PackB<F32, kNvF>, GemvRows<F32>, GemvDots<F32>,
};
const Kernels<double> kAvx512F64 = {
    "avx512", kMrD, kNvD * F64::W, 256, 112, 2048,
    Micro<F64, kMrD, kNvD>, PackA<F64, kMrD>, PackB<F64, kNvD>, GemvRows<F64>, GemvDots<F64>,
};

}  // namespace

const Kernels<float>* sgemm_kernels_avx512() { return &kAvx512F32; }
const Kernels<double>* dgemm_kernels_avx512() { return &kAvx512F64; }

}  // namespace gemm_detail
}  // namespace modulora
