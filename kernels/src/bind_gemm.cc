// GEMM binding: gemm(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c,
// ldc, strideC, batch) on Float32Array (sgemm) or Float64Array (dgemm) operands, and gemmInfo().
// Every argument is checked here, so the kernels never see a bad shape or a short array.
#include <cstdint>
#include <new>
#include <string>

#include "cpu/gemm.h"
#include "napi_util.h"

namespace modulora {
namespace {

constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;   // rows, columns, depth, leading dimensions
constexpr int64_t kMaxStride = int64_t{1} << 53;      // exact in a JS number

std::string Str(int64_t v) { return std::to_string(v); }

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

std::string Str128(__int128 v) {
  if (v <= static_cast<__int128>(INT64_MAX)) return Str(static_cast<int64_t>(v));
  return "more than 2^63";
}

void CheckLength(const Args& a, const char* name, const Args::AnyArray& arr, __int128 need) {
  if (static_cast<__int128>(arr.length) < need) {
    a.failRange(std::string("argument '") + name + "' holds " + std::to_string(arr.length) +
                " elements but the call needs at least " + Str128(need));
  }
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

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Args a(info, "gemm");
  a.expectCount(17, "(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch)");
  const bool transA = a.boolean(0, "transA");
  const bool transB = a.boolean(1, "transB");
  const int64_t m = a.integer(2, "m", 0, kMaxDim);
  const int64_t n = a.integer(3, "n", 0, kMaxDim);
  const int64_t k = a.integer(4, "k", 0, kMaxDim);
  const double alpha = a.number(5, "alpha");
  const Args::AnyArray A = a.anyArray(6, "a");
  const int64_t lda = a.integer(7, "lda", 0, kMaxDim);
  const int64_t strideA = a.integer(8, "strideA", 0, kMaxStride);
  const Args::AnyArray B = a.anyArray(9, "b");
  const int64_t ldb = a.integer(10, "ldb", 0, kMaxDim);
  const int64_t strideB = a.integer(11, "strideB", 0, kMaxStride);
  const double beta = a.number(12, "beta");
  const Args::AnyArray C = a.anyArray(13, "c");
  const int64_t ldc = a.integer(14, "ldc", 0, kMaxDim);
  const int64_t strideC = a.integer(15, "strideC", 0, kMaxStride);
  const int64_t batch = a.integer(16, "batch", 1, kMaxStride);

  RequireFloatArray(a, 6, "a", A);
  RequireFloatArray(a, 9, "b", B);
  RequireFloatArray(a, 13, "c", C);
  if (B.type != A.type || C.type != A.type) {
    a.fail(std::string("arguments 'a', 'b' and 'c' must all be Float32Array or all Float64Array, got ") +
           TypedArrayTypeName(A.type) + ", " + TypedArrayTypeName(B.type) + " and " + TypedArrayTypeName(C.type));
  }

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
    CheckLength(a, "a", A, BatchExtent(oneA, strideA, batch));
    CheckLength(a, "b", B, BatchExtent(oneB, strideB, batch));
  }
  CheckLength(a, "c", C, BatchExtent(oneC, strideC, batch));

  try {
    RunGemm(transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC, batch);
  } catch (const std::bad_alloc&) {
    a.failRange("out of memory for the packing buffers");
  }
  return info.Env().Undefined();
}

Napi::Value GemmInfoFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const GemmInfo g = sgemm_info();
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", Napi::String::New(env, g.isa));
  o.Set("mr", Napi::Number::New(env, g.mr));
  o.Set("nr", Napi::Number::New(env, g.nr));
  o.Set("kc", Napi::Number::New(env, g.kc));
  o.Set("mc", Napi::Number::New(env, g.mc));
  o.Set("nc", Napi::Number::New(env, g.nc));
  return o;
}

}  // namespace

void RegisterGemm(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
  exports.Set("gemmInfo", Napi::Function::New(env, GemmInfoFn, "gemmInfo"));
}

}  // namespace modulora
