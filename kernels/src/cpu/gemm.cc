// GEMM driver: blocking, packing, threading and the matrix-vector paths (see gemm.h), plus the
// portable kernels used when the CPU has neither AVX2+FMA nor AVX-512. Compiled for baseline
// x86-64, so nothing here may assume more than SSE2; the ISA tables live in gemm_avx2.cc and
// gemm_avx512.cc and are only reached through active_isa().
#include "cpu/gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/cpu_features.h"
#include "cpu/storage.h"
#include "cpu/thread_scratch.h"
#include "cpu/threadpool.h"

namespace modulora {
namespace gemm_detail {

// ---- Reference packing (also used by the ISA tables for layouts they do not specialise) ----

template <class T>
void pack_a_ref(int mr, bool transA, int64_t rows, int64_t kc, const T* A, int64_t lda, T alpha, T* dst) {
  if (transA) {  // A(i,p) = A[p*lda + i]: walk the rows of A (sequential reads) over all panels
    for (int64_t p = 0; p < kc; p++) {
      const T* src = A + p * lda;
      for (int64_t i0 = 0; i0 < rows; i0 += mr) {
        const int64_t h = std::min<int64_t>(mr, rows - i0);
        T* d = dst + i0 * kc + p * mr;
        int64_t r = 0;
        for (; r < h; r++) d[r] = alpha * src[i0 + r];
        for (; r < mr; r++) d[r] = T(0);
      }
    }
    return;
  }
  // A(i,p) = A[i*lda + p]: read rows, write with stride mr
  for (int64_t i0 = 0; i0 < rows; i0 += mr, dst += mr * kc) {
    const int64_t h = std::min<int64_t>(mr, rows - i0);
    for (int64_t r = 0; r < h; r++) {
      const T* src = A + (i0 + r) * lda;
      for (int64_t p = 0; p < kc; p++) dst[p * mr + r] = alpha * src[p];
    }
    for (int64_t r = h; r < mr; r++)
      for (int64_t p = 0; p < kc; p++) dst[p * mr + r] = T(0);
  }
}

template <class T>
void pack_b_ref(int nr, bool transB, int64_t kc, int64_t cols, const T* B, int64_t ldb, T* dst) {
  if (!transB) {  // B(p,j) = B[p*ldb + j]: walk the rows of B (sequential reads) over all panels
    for (int64_t p = 0; p < kc; p++) {
      const T* src = B + p * ldb;
      for (int64_t j0 = 0; j0 < cols; j0 += nr) {
        const int64_t w = std::min<int64_t>(nr, cols - j0);
        T* d = dst + j0 * kc + p * nr;
        int64_t c = 0;
        for (; c < w; c++) d[c] = src[j0 + c];
        for (; c < nr; c++) d[c] = T(0);
      }
    }
    return;
  }
  // B(p,j) = B[j*ldb + p]: read columns of op(B) as rows of B, write with stride nr
  for (int64_t j0 = 0; j0 < cols; j0 += nr, dst += nr * kc) {
    const int64_t w = std::min<int64_t>(nr, cols - j0);
    for (int64_t c = 0; c < w; c++) {
      const T* src = B + (j0 + c) * ldb;
      for (int64_t p = 0; p < kc; p++) dst[p * nr + c] = src[p];
    }
    for (int64_t c = w; c < nr; c++)
      for (int64_t p = 0; p < kc; p++) dst[p * nr + c] = T(0);
  }
}

template void pack_a_ref<float>(int, bool, int64_t, int64_t, const float*, int64_t, float, float*);
template void pack_a_ref<double>(int, bool, int64_t, int64_t, const double*, int64_t, double, double*);
template void pack_b_ref<float>(int, bool, int64_t, int64_t, const float*, int64_t, float*);
template void pack_b_ref<double>(int, bool, int64_t, int64_t, const double*, int64_t, double*);

namespace {

// ---- Portable kernels: plain loops over a small register tile, vectorised by the compiler ----

// Fully unrolled so that gcc's SLP vectoriser keeps the tile in SSE registers (4 x 16 floats:
// ~37 GFLOP/s on a Zen 5 core with SSE2 only; without the unrolling gcc vectorises along the
// depth loop instead and reaches a quarter of that).
template <class T, int MR, int NR>
void micro_generic(int64_t kc, const T* A, const T* B, T* C, int64_t ldc, T beta) {
  T acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; p++) {
    const T* a = A + p * MR;
    const T* b = B + p * NR;
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 16
      for (int c = 0; c < NR; c++) acc[r][c] += a[r] * b[c];
  }
  for (int r = 0; r < MR; r++) {
    T* c = C + r * ldc;
    if (beta == T(0)) {
      for (int j = 0; j < NR; j++) c[j] = acc[r][j];
    } else if (beta == T(1)) {
      for (int j = 0; j < NR; j++) c[j] += acc[r][j];
    } else {
      for (int j = 0; j < NR; j++) c[j] = acc[r][j] + beta * c[j];
    }
  }
}

template <class T, int MR>
void pack_a_generic(bool transA, int64_t rows, int64_t kc, const T* A, int64_t lda, T alpha, T* dst) {
  pack_a_ref<T>(MR, transA, rows, kc, A, lda, alpha, dst);
}
template <class T, int NR>
void pack_b_generic(bool transB, int64_t kc, int64_t cols, const T* B, int64_t ldb, T* dst) {
  pack_b_ref<T>(NR, transB, kc, cols, B, ldb, dst);
}

template <class T>
void gemv_rows_generic(int64_t k, int64_t n, const T* x, const T* M, int64_t ldm, T* y) {
  constexpr int64_t kChunk = 64;  // a block of y stays in registers/L1 while all of x streams by
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int64_t w = std::min(kChunk, n - j0);
    T acc[kChunk] = {};
    for (int64_t p = 0; p < k; p++) {
      const T xp = x[p];
      const T* row = M + p * ldm + j0;
      for (int64_t j = 0; j < w; j++) acc[j] += xp * row[j];
    }
    for (int64_t j = 0; j < w; j++) y[j0 + j] = acc[j];
  }
}

template <class T>
void gemv_dots_generic(int64_t k, int64_t n, const T* x, const T* M, int64_t ldm, T* y) {
  for (int64_t j = 0; j < n; j++) {
    const T* row = M + j * ldm;
    T s[4] = {};
    int64_t p = 0;
    for (; p + 4 <= k; p += 4)
      for (int u = 0; u < 4; u++) s[u] += x[p + u] * row[p + u];
    for (; p < k; p++) s[0] += x[p] * row[p];
    y[j] = (s[0] + s[1]) + (s[2] + s[3]);
  }
}

constexpr int kGenericMrF = 4, kGenericNrF = 16, kGenericMrD = 4, kGenericNrD = 4;

const Kernels<float> kGenericF32 = {
    "generic", kGenericMrF, kGenericNrF, 256, 128, 2048,
    micro_generic<float, kGenericMrF, kGenericNrF>,
    pack_a_generic<float, kGenericMrF>,
    pack_b_generic<float, kGenericNrF>,
    gemv_rows_generic<float>,
    gemv_dots_generic<float>,
};
const Kernels<double> kGenericF64 = {
    "generic", kGenericMrD, kGenericNrD, 256, 96, 1024,
    micro_generic<double, kGenericMrD, kGenericNrD>,
    pack_a_generic<double, kGenericMrD>,
    pack_b_generic<double, kGenericNrD>,
    gemv_rows_generic<double>,
    gemv_dots_generic<double>,
};

}  // namespace

const Kernels<float>* sgemm_kernels_generic() { return &kGenericF32; }
const Kernels<double>* dgemm_kernels_generic() { return &kGenericF64; }

}  // namespace gemm_detail

namespace {

using gemm_detail::Kernels;

template <class T>
const Kernels<T>* PickKernels();

template <>
const Kernels<float>* PickKernels<float>() {
#if defined(MODULORA_X86_DISPATCH)
  switch (active_isa()) {
    case Isa::Avx512: return gemm_detail::sgemm_kernels_avx512();
    case Isa::Avx2: return gemm_detail::sgemm_kernels_avx2();
    default: break;
  }
#endif
  return gemm_detail::sgemm_kernels_generic();
}

template <>
const Kernels<double>* PickKernels<double>() {
#if defined(MODULORA_X86_DISPATCH)
  switch (active_isa()) {
    case Isa::Avx512: return gemm_detail::dgemm_kernels_avx512();
    case Isa::Avx2: return gemm_detail::dgemm_kernels_avx2();
    default: break;
  }
#endif
  return gemm_detail::dgemm_kernels_generic();
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t RoundUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }

// Packing memory: the thread's cached block (cpu/thread_scratch.h).
template <class T>
using Scratch = ThreadScratch<T, ScratchUser::kGemm>;

template <class T>
struct Gemm {
  bool ta, tb;
  int64_t m, n, k;
  T alpha;
  const T* A;
  int64_t lda;
  const T* B;
  int64_t ldb;
  T beta;
  T* C;
  int64_t ldc;

  const T* a_at(int64_t i, int64_t p) const { return ta ? A + p * lda + i : A + i * lda + p; }
  const T* b_at(int64_t p, int64_t j) const { return tb ? B + j * ldb + p : B + p * ldb + j; }
};

// C = beta * C over rows [i0, i1) (beta == 0 writes zeros, ignoring NaNs already there).
template <class T>
void ScaleRows(const Gemm<T>& g, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i++) {
    T* c = g.C + i * g.ldc;
    if (g.beta == T(0)) {
      std::fill(c, c + g.n, T(0));
    } else if (g.beta != T(1)) {
      for (int64_t j = 0; j < g.n; j++) c[j] *= g.beta;
    }
  }
}

// Roughly how many multiply-adds justify waking one more thread (wake-up costs a few microseconds).
constexpr double kMacsPerThread = 1 << 18;

int UsefulThreads(double macs) {
  return static_cast<int>(std::max(1.0, std::min<double>(num_threads(), macs / kMacsPerThread)));
}

// ---- Matrix-vector paths: m == 1 or n == 1 ----

// Writes out[j*inc] = y[j] + beta*out[j*inc] for j < len.
template <class T>
void MergeVector(int64_t len, const T* y, T beta, T* out, int64_t inc) {
  if (beta == T(0)) {
    for (int64_t j = 0; j < len; j++) out[j * inc] = y[j];
  } else if (beta == T(1)) {
    for (int64_t j = 0; j < len; j++) out[j * inc] += y[j];
  } else {
    for (int64_t j = 0; j < len; j++) out[j * inc] = y[j] + beta * out[j * inc];
  }
}

template <class T>
void Gemv(const Kernels<T>& K, const Gemm<T>& g, bool allowThreads) {
  // The vector operand, scaled by alpha and made contiguous: x[p] = alpha * op(A)(0,p) when
  // m == 1, alpha * op(B)(p,0) when n == 1.
  const bool row = g.m == 1;
  const int64_t len = row ? g.n : g.m;  // entries of C produced
  Scratch<T> buf(g.k + len);
  T* x = buf.get();
  T* y = x + g.k;
  for (int64_t p = 0; p < g.k; p++) x[p] = g.alpha * (row ? *g.a_at(0, p) : *g.b_at(p, 0));
  // The matrix operand M with y[j] = sum_p x[p] * M(p, j):
  //   m == 1: M = op(B); rows layout (M[p*ldb + j]) when !transB, dots layout when transB.
  //   n == 1: M = op(A)^T; rows layout (A[p*lda + i]) when transA, dots layout when !transA.
  const T* M = row ? g.B : g.A;
  const int64_t ldm = row ? g.ldb : g.lda;
  const bool dots = row ? g.tb : !g.ta;
  auto fn = dots ? K.gemv_dots : K.gemv_rows;
  const int64_t inc = row ? 1 : g.ldc;
  const int threads = allowThreads ? UsefulThreads(static_cast<double>(g.k) * len) : 1;
  // Split y in chunks of 64 entries so every entry is computed by the same code whatever the split.
  const int64_t chunks = CeilDiv(len, 64);
  parallel_tasks(static_cast<int>(std::min<int64_t>(threads, chunks)), [&](int t, int nt) {
    const int64_t j0 = std::min(len, chunks * t / nt * 64), j1 = std::min(len, chunks * (t + 1) / nt * 64);
    if (j0 >= j1) return;
    const T* Mj = dots ? M + j0 * ldm : M + j0;
    fn(g.k, j1 - j0, x, Mj, ldm, y + j0);
    MergeVector(j1 - j0, y + j0, g.beta, g.C + j0 * inc, inc);
  });
}

// ---- Blocked product ----

// C[i0:i1, j0:j1] on one thread. Tiles of C start at multiples of mr/nr from (i0, j0), and the
// depth is cut into the same kc blocks whatever the caller, so results never depend on the split.
template <class T>
void GemmBlock(const Kernels<T>& K, const Gemm<T>& g, int64_t kc, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  const int mr = K.mr, nr = K.nr;
  const int64_t rows = i1 - i0, cols = j1 - j0;
  // Even block sizes: e.g. 300 rows with mc = 256 become 2 x 152, not 256 + 44.
  const int64_t mc = RoundUp(CeilDiv(rows, CeilDiv(rows, K.mc)), mr);
  const int64_t nc = RoundUp(CeilDiv(cols, CeilDiv(cols, K.nc)), nr);
  Scratch<T> buf(mc * kc + kc * nc);
  T* packA = buf.get();
  T* packB = packA + mc * kc;
  alignas(64) T edge[32 * 64];  // C tile for partial tiles (mr * nr <= 2048)

  for (int64_t jc = j0; jc < j1; jc += nc) {
    const int64_t nb = std::min(nc, j1 - jc);
    for (int64_t pc = 0; pc < g.k; pc += kc) {
      const int64_t kb = std::min(kc, g.k - pc);
      const T beta = pc == 0 ? g.beta : T(1);
      K.pack_b(g.tb, kb, nb, g.b_at(pc, jc), g.ldb, packB);
      for (int64_t ic = i0; ic < i1; ic += mc) {
        const int64_t mb = std::min(mc, i1 - ic);
        K.pack_a(g.ta, mb, kb, g.a_at(ic, pc), g.lda, g.alpha, packA);
        for (int64_t jr = 0; jr < nb; jr += nr) {
          const int64_t w = std::min<int64_t>(nr, nb - jr);
          const T* Bp = packB + jr * kb;
          for (int64_t ir = 0; ir < mb; ir += mr) {
            const int64_t h = std::min<int64_t>(mr, mb - ir);
            const T* Ap = packA + ir * kb;
            T* Cp = g.C + (ic + ir) * g.ldc + jc + jr;
            if (h == mr && w == nr) {
              K.micro(kb, Ap, Bp, Cp, g.ldc, beta);
            } else {
              K.micro(kb, Ap, Bp, edge, nr, T(0));
              for (int64_t r = 0; r < h; r++)
                MergeVector(w, edge + r * nr, beta, Cp + r * g.ldc, 1);
            }
          }
        }
      }
    }
  }
}

// Splits C into a pm x pn grid of blocks for nt threads, choosing the grid that minimises the
// per-thread work: the padded multiply-adds plus the packing each block repeats.
void ChooseGrid(int nt, int64_t m, int64_t n, int64_t k, int mr, int nr, int64_t nc, int* pm, int* pn) {
  const int64_t tm = CeilDiv(m, mr), tn = CeilDiv(n, nr);
  double best = -1;
  *pm = 1;
  *pn = 1;
  for (int a = 1; a <= nt && a <= tm; a++) {
    for (int b = 1; a * b <= nt && b <= tn; b++) {
      const double cm = static_cast<double>(CeilDiv(tm, a) * mr);
      const double cn = static_cast<double>(CeilDiv(tn, b) * nr);
      const double pack = cm * k * static_cast<double>(CeilDiv(static_cast<int64_t>(cn), nc)) + k * cn;
      const double cost = cm * cn * k + 16.0 * pack;
      if (best < 0 || cost < best) {
        best = cost;
        *pm = a;
        *pn = b;
      }
    }
  }
}

template <class T>
void GemmOne(const Kernels<T>& K, const Gemm<T>& g, bool allowThreads) {
  if (g.m <= 0 || g.n <= 0) return;
  if (g.k <= 0 || g.alpha == T(0)) {
    ScaleRows(g, 0, g.m);
    return;
  }
  if (g.m == 1 || g.n == 1) {
    Gemv(K, g, allowThreads);
    return;
  }
  const int64_t kc = CeilDiv(g.k, CeilDiv(g.k, K.kc));  // even depth blocks
  const int threads = allowThreads ? UsefulThreads(static_cast<double>(g.m) * g.n * g.k) : 1;
  parallel_tasks(threads, [&](int t, int nt) {
    int pm, pn;
    ChooseGrid(nt, g.m, g.n, g.k, K.mr, K.nr, K.nc, &pm, &pn);
    if (t >= pm * pn) return;
    const int64_t tm = CeilDiv(g.m, K.mr), tn = CeilDiv(g.n, K.nr);
    const int a = t / pn, b = t % pn;
    const int64_t i0 = std::min(g.m, tm * a / pm * K.mr), i1 = std::min(g.m, tm * (a + 1) / pm * K.mr);
    const int64_t j0 = std::min(g.n, tn * b / pn * K.nr), j1 = std::min(g.n, tn * (b + 1) / pn * K.nr);
    if (i0 >= i1 || j0 >= j1) return;
    GemmBlock(K, g, kc, i0, i1, j0, j1);
  });
}

template <class T>
void GemmBatched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda, int64_t sA,
                 const T* B, int64_t ldb, int64_t sB, T beta, T* C, int64_t ldc, int64_t sC, int64_t batch) {
  if (batch <= 0 || m <= 0 || n <= 0) return;
  const Kernels<T>& K = *PickKernels<T>();
  auto item = [&](int64_t i) {
    return Gemm<T>{ta, tb, m, n, k, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc};
  };
  const int64_t extentC = (m - 1) * ldc + n;
  const int nt = num_threads();
  const double macs = static_cast<double>(m) * n * std::max<int64_t>(k, 1);
  // Parallel over the batch when the C matrices are disjoint and there are enough of them to keep
  // every thread busy (or each is too small to split); otherwise parallel inside each product.
  const bool overBatch = batch > 1 && sC >= extentC &&
                         (batch % nt == 0 || batch >= 4 * nt || macs * nt < kMacsPerThread * 4);
  if (!overBatch) {
    for (int64_t i = 0; i < batch; i++) GemmOne(K, item(i), true);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kMacsPerThread / macs));
  parallel_for(batch, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; i++) GemmOne(K, item(i), false);
  });
}

}  // namespace

void sgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  GemmBatched<float>(transA, transB, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

void dgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  GemmBatched<double>(transA, transB, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

void sgemm_batched(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* A,
                   int64_t lda, int64_t strideA, const float* B, int64_t ldb, int64_t strideB, float beta, float* C,
                   int64_t ldc, int64_t strideC, int64_t batch) {
  GemmBatched<float>(transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC,
                     batch);
}

void dgemm_batched(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha, const double* A,
                   int64_t lda, int64_t strideA, const double* B, int64_t ldb, int64_t strideB, double beta,
                   double* C, int64_t ldc, int64_t strideC, int64_t batch) {
  GemmBatched<double>(transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC,
                      batch);
}

GemmInfo sgemm_info() {
  const Kernels<float>& K = *PickKernels<float>();
  return {K.isa, K.mr, K.nr, K.kc, K.mc, K.nc};
}

}  // namespace modulora
