// General matrix multiply on the CPU: single and double precision, plain and batched.
//
// Row-major. C = alpha * op(A) * op(B) + beta * C, op(A) is m x k, op(B) is k x n.
//   !transA: A(i,p) = A[i*lda + p];  transA: A(i,p) = A[p*lda + i]
//   !transB: B(p,j) = B[p*ldb + j];  transB: B(p,j) = B[j*ldb + p]
//   C(i,j) = C[i*ldc + j]. beta == 0 overwrites C (NaNs in C are ignored). k == 0 (or alpha == 0)
//   scales C by beta.
// Thread-safe. Uses the thread pool (over batch or over blocks of C, whichever fits the shape);
// called from inside a parallel region it runs single-threaded. Results do not depend on the
// number of threads (each element of C is summed in the same order whatever the split).
//
// Implementation (gemm.cc): GotoBLAS/BLIS-style blocking. B is packed into kc x nc blocks of
// nr-wide panels, A into mc x kc blocks of mr-high panels (alpha folded in), and an mr x nr
// register-tiled micro-kernel chosen at run time (active_isa()) walks the panels. m == 1 and
// n == 1 take matrix-vector paths instead, so GEMV-like calls do not pay for padding.
#pragma once
#include <cstdint>

namespace modulora {

void sgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void dgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha, const double* A,
           int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// `batch` products; strides are in elements between consecutive matrices. A stride of 0 for A or B
// broadcasts that operand. C matrices must not overlap (if they do, the batch runs in order on
// one thread, so the result is at least well defined).
void sgemm_batched(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* A,
                   int64_t lda, int64_t strideA, const float* B, int64_t ldb, int64_t strideB, float beta,
                   float* C, int64_t ldc, int64_t strideC, int64_t batch);
void dgemm_batched(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha, const double* A,
                   int64_t lda, int64_t strideA, const double* B, int64_t ldb, int64_t strideB, double beta,
                   double* C, int64_t ldc, int64_t strideC, int64_t batch);

// The single-precision kernel the dispatch picks now (for benchmark reports).
struct GemmInfo {
  const char* isa;
  int mr, nr;      // register tile of C
  int kc, mc, nc;  // cache blocking: depth, rows of A per block, columns of B per block
};
GemmInfo sgemm_info();

// ---- Internal: the per-ISA kernel tables (gemm_avx2.cc, gemm_avx512.cc, generic in gemm.cc). ----
namespace gemm_detail {

template <class T>
struct Kernels {
  const char* isa;
  int mr, nr, kc, mc, nc;
  // C[0:mr, 0:nr] = A*B + beta*C for one full tile; A is a packed mr-panel (A[p*mr + r]), B a
  // packed nr-panel (B[p*nr + c]), both kc long. beta == 0 never reads C.
  void (*micro)(int64_t kc, const T* A, const T* B, T* C, int64_t ldc, T beta);
  // Packs rows [0, rows) x depth [0, kc) of op(A) (A already offset to the block origin) into
  // mr-panels scaled by alpha; rows are zero-padded up to a multiple of mr.
  void (*pack_a)(bool transA, int64_t rows, int64_t kc, const T* A, int64_t lda, T alpha, T* dst);
  // Packs depth [0, kc) x columns [0, cols) of op(B) into nr-panels, zero-padded to a multiple of nr.
  void (*pack_b)(bool transB, int64_t kc, int64_t cols, const T* B, int64_t ldb, T* dst);
  // y[j] = sum_p x[p] * M[p*ldm + j] for j < n (x has k entries).
  void (*gemv_rows)(int64_t k, int64_t n, const T* x, const T* M, int64_t ldm, T* y);
  // y[j] = sum_p x[p] * M[j*ldm + p] for j < n.
  void (*gemv_dots)(int64_t k, int64_t n, const T* x, const T* M, int64_t ldm, T* y);
};

const Kernels<float>* sgemm_kernels_generic();
const Kernels<double>* dgemm_kernels_generic();
#if defined(MODULORA_X86_DISPATCH)
const Kernels<float>* sgemm_kernels_avx2();
const Kernels<double>* dgemm_kernels_avx2();
const Kernels<float>* sgemm_kernels_avx512();
const Kernels<double>* dgemm_kernels_avx512();
#endif

// Reference packing routines (plain loops), shared by the ISA tables for the cases they do not
// specialise. Declared here so every translation unit can point at them.
template <class T>
void pack_a_ref(int mr, bool transA, int64_t rows, int64_t kc, const T* A, int64_t lda, T alpha, T* dst);
template <class T>
void pack_b_ref(int nr, bool transB, int64_t kc, int64_t cols, const T* B, int64_t ldb, T* dst);

}  // namespace gemm_detail
}  // namespace modulora
