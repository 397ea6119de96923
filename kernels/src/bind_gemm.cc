// GEMM binding: gemm(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c,
// ldc, strideC, batch) on Float32Array (sgemm) or Float64Array (dgemm) operands, and gemmInfo().
// Every argument is checked here, so the kernels never see a bad shape or a short array.
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "cpu/gemm.h"
#include "binding.h"

namespace modulora {
namespace {

constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;   // rows, columns, depth, leading dimensions
constexpr int64_t kMaxStride = int64_t{1} << 53;      // exact in a JS number

// Elements one matrix of `rows` x `cols` with leading dimension `ld` spans (0 when empty).
__int128 Extent(int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return 0;
  return static_cast<__int128>(rows - 1) * ld + cols;
}

// Elements the whole batch spans: the last matrix's last element plus one.
__int128 BatchExtent(__int128 one, int64_t stride, int64_t batch) {
  if (one == 0) return 0;
  return static_cast<__int128>(batch - 1) * stride + one;
}

void RunGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha, const Args::AnyArray& A,
             int64_t lda, int64_t strideA, const Args::AnyArray& B, int64_t ldb, int64_t strideB, double beta,
             const Args::AnyArray& C, int64_t ldc, int64_t strideC, int64_t batch) {
  if (A.type == napi_float32_array) {
    sgemm_batched(transA, transB, m, n, k, static_cast<float>(alpha), static_cast<const float*>(A.data), lda,
                  strideA, static_cast<const float*>(B.data), ldb, strideB, static_cast<float>(beta),
                  static_cast<float*>(C.data), ldc, strideC, batch);
  } else {
    dgemm_batched(transA, transB, m, n, k, alpha, static_cast<const double*>(A.data), lda, strideA,
                  static_cast<const double*>(B.data), ldb, strideB, beta, static_cast<double*>(C.data), ldc,
                  strideC, batch);
  }
}

Napi::Value Gemm(Call& a) {
  const bool transA = a.flag("transA"), transB = a.flag("transB");
  const int64_t m = a.i("m"), n = a.i("n"), k = a.i("k");
  const double alpha = a.num("alpha"), beta = a.num("beta");
  const Args::AnyArray &A = a.arr("a"), &B = a.arr("b"), &C = a.arr("c");
  const int64_t lda = a.i("lda"), ldb = a.i("ldb"), ldc = a.i("ldc");
  const int64_t strideA = a.i("strideA"), strideB = a.i("strideB"), strideC = a.i("strideC");
  const int64_t batch = a.i("batch");

  // Leading dimensions: op(A) is m x k, stored k-wide rows (!transA) or m-wide rows (transA).
  const int64_t minLda = transA ? m : k, minLdb = transB ? k : n, minLdc = n;
  if (lda < minLda) {
    a.failRange("argument 'lda' = " + Str(lda) + " is below its minimum " + Str(minLda) +
                (transA ? " (m, since transA)" : " (k, since !transA)"));
  }
  if (ldb < minLdb) {
    a.failRange("argument 'ldb' = " + Str(ldb) + " is below its minimum " + Str(minLdb) +
                (transB ? " (k, since transB)" : " (n, since !transB)"));
  }
  if (ldc < minLdc) a.failRange("argument 'ldc' = " + Str(ldc) + " is below its minimum " + Str(minLdc) + " (n)");

  const __int128 oneA = transA ? Extent(k, m, lda) : Extent(m, k, lda);
  const __int128 oneB = transB ? Extent(n, k, ldb) : Extent(k, n, ldb);
  const __int128 oneC = Extent(m, n, ldc);
  // Products of a batch write disjoint C matrices (they may run in parallel).
  if (batch > 1 && oneC > 0 && static_cast<__int128>(strideC) < oneC) {
    a.failRange("argument 'strideC' = " + Str(strideC) + " makes the C matrices of the batch overlap (each spans " +
                Str128(oneC) + " elements)");
  }
  // A and B are only read when the product has terms; C is always touched.
  const bool readsAB = k > 0 && m > 0 && n > 0;
  if (readsAB) {
    NeedAtLeast(a, "a", A, BatchExtent(oneA, strideA, batch));
    NeedAtLeast(a, "b", B, BatchExtent(oneB, strideB, batch));
  }
  NeedAtLeast(a, "c", C, BatchExtent(oneC, strideC, batch));

  try {
    RunGemm(transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC, batch);
  } catch (const std::bad_alloc&) {
    a.failRange("out of memory for the packing buffers");
  }
  return a.env().Undefined();
}

Napi::Value GemmInfoFn(Call& a) {
  return TileInfoObject(a.env(), sgemm_info());
}

}  // namespace

void RegisterGemm(Napi::Env env, Napi::Object exports) {
  static const std::vector<OpDef> kOps = {
      {"gemm",
       {Bool("transA"), Bool("transB"), Int("m", 0, kMaxDim), Int("n", 0, kMaxDim), Int("k", 0, kMaxDim), Num("alpha"),
        FloatArr("a"), Int("lda", 0, kMaxDim), Int("strideA", 0, kMaxStride), FloatArr("b"), Int("ldb", 0, kMaxDim),
        Int("strideB", 0, kMaxStride), Num("beta"), FloatArr("c"), Int("ldc", 0, kMaxDim),
        Int("strideC", 0, kMaxStride), Int("batch", 1, kMaxStride)},
       Gemm},
      {"gemmInfo", {}, GemmInfoFn},
  };
  RegisterOps(env, exports, kOps);
}

}  // namespace modulora
