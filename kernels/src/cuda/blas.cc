// Dense products through cuBLASLt: cuda.matmul, row-major semantics over column-major cuBLASLt.
//
//   matmul(device, abType, cType, transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB,
//          beta, c, ldc, strideC, batch)
//   C[m, n] (leading dim ldc) = alpha · op(A) · op(B) + beta · C, for each of `batch` matrices
//   (strides in elements; 0 = one matrix shared by the batch). op(A) is [m, k]: A stored [m, k]
//   row-major with leading dim lda, or [k, m] when transA; op(B) is [k, n]: B stored [k, n], or
//   [n, k] when transB. Types: f32·f32→f32 (strict f32, no TF32), f64·f64→f64, bf16·bf16→bf16 or
//   →f32 (f32 accumulation).
//
// A row-major C is the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, so cuBLASLt gets B as its first operand
// and A as its second, with m and n swapped. Descriptors and the heuristic's algorithm are cached
// per (types, shape, layout, alignment).
#include <cublasLt.h>

#include <cstring>
#include <map>
#include <string>
#include <tuple>

#include "cuda/runtime.h"

namespace modulora {
namespace cuda {
namespace {

void LtCheck(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) throw CudaError(std::string(what) + ": " + cublasLtGetStatusString(st));
}

cudaDataType_t DataType(int code, const char* role) {
  switch (code) {
    case kF32: return CUDA_R_32F;
    case kF64: return CUDA_R_64F;
    case kBF16: return CUDA_R_16BF;
    default: throw CudaError(std::string("matmul: ") + role + " dtype " + CodeName(code) + " is not supported (f32, f64, bf16)");
  }
}

int Alignment(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 1 && (v % a) != 0) a >>= 1;
  return a;
}

using Key = std::tuple<int, int, int, int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int, int, int, bool>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

std::map<Key, Plan>& Plans() {
  static std::map<Key, Plan> plans;
  return plans;
}

void DestroyPlan(Plan& p) {
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  if (p.la) cublasLtMatrixLayoutDestroy(p.la);
  if (p.lb) cublasLtMatrixLayoutDestroy(p.lb);
  if (p.lc) cublasLtMatrixLayoutDestroy(p.lc);
}

cublasLtMatrixLayout_t MakeLayout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  LtCheck(cublasLtMatrixLayoutCreate(&l, t, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld), "cublasLtMatrixLayoutCreate");
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    LtCheck(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count), "batch count");
    LtCheck(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride), "batch stride");
  }
  return l;
}

Napi::Value Matmul(CudaCall& c) {
  const int ab = static_cast<int>(c.i(1)), ct = static_cast<int>(c.i(2));
  const bool ta = c.flag(3), tb = c.flag(4);
  const int64_t m = c.i(5), n = c.i(6), k = c.i(7);
  const double alpha = c.num(8);
  const void* a = c.ptr(9);
  const int64_t lda = c.i(10), sa = c.i(11);
  const void* b = c.ptr(12);
  const int64_t ldb = c.i(13), sb = c.i(14);
  const double beta = c.num(15);
  void* out = c.ptr(16);
  const int64_t ldc = c.i(17), sc = c.i(18), batch = c.i(19);
  if (m <= 0 || n <= 0 || k <= 0 || batch <= 0) {
    throw CudaError("matmul: m, n, k and batch must be ≥ 1 (got m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" +
                    std::to_string(k) + " batch=" + std::to_string(batch) + "); empty products are handled by the caller");
  }
  const cudaDataType_t tab = DataType(ab, "operand"), tc = DataType(ct, "output");
  if (!((ab == kF32 && ct == kF32) || (ab == kF64 && ct == kF64) || (ab == kBF16 && (ct == kBF16 || ct == kF32)))) {
    throw CudaError(std::string("matmul: operands ") + CodeName(ab) + " with output " + CodeName(ct) +
                    " is not a supported combination (f32·f32→f32, f64·f64→f64, bf16·bf16→bf16 or f32)");
  }
  const bool f64 = ab == kF64;
  const Key key{c.ctx().device(), ab, ct, 0, ta, tb, m, n, k, lda, ldb, ldc, sa, sb, sc, batch, Alignment(a), Alignment(b), Alignment(out), beta != 0};
  auto& plans = Plans();
  auto it = plans.find(key);
  if (it == plans.end()) {
    if (plans.size() > 4096) {
      for (auto& [kk, p] : plans) DestroyPlan(p);
      plans.clear();
    }
    Plan p;
    const cublasComputeType_t compute = f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
    const cudaDataType_t scale = f64 ? CUDA_R_64F : CUDA_R_32F;
    LtCheck(cublasLtMatmulDescCreate(&p.desc, compute, scale), "cublasLtMatmulDescCreate");
    const cublasOperation_t opA = tb ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's A is our B
    const cublasOperation_t opB = ta ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's B is our A
    LtCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA), "transa");
    LtCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB), "transb");
    p.la = MakeLayout(tab, tb ? k : n, tb ? n : k, ldb, batch, sb);
    p.lb = MakeLayout(tab, ta ? m : k, ta ? k : m, lda, batch, sa);
    p.lc = MakeLayout(tc, n, m, ldc, batch, sc);
    cublasLtMatmulPreference_t pref = nullptr;
    LtCheck(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    const size_t ws = c.ctx().lt_workspace_bytes();
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    const uint32_t al_a = Alignment(b), al_b = Alignment(a), al_c = Alignment(out);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c);
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(reinterpret_cast<cublasLtHandle_t>(c.ctx().lt()), p.desc, p.la, p.lb, p.lc,
                                                             p.lc, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      DestroyPlan(p);
      throw CudaError("matmul: cuBLASLt found no algorithm for " + std::string(CodeName(ab)) + " [" + std::to_string(m) + "×" +
                      std::to_string(k) + "]·[" + std::to_string(k) + "×" + std::to_string(n) + "] batch " + std::to_string(batch) +
                      " (lda " + std::to_string(lda) + ", ldb " + std::to_string(ldb) + ", ldc " + std::to_string(ldc) +
                      (st != CUBLAS_STATUS_SUCCESS ? std::string(", ") + cublasLtGetStatusString(st) : std::string()) + ")");
    }
    p.algo = res.algo;
    it = plans.emplace(key, p).first;
  }
  const Plan& p = it->second;
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  const void* pa = f64 ? static_cast<const void*>(&alpha) : static_cast<const void*>(&alpha_f);
  const void* pb = f64 ? static_cast<const void*>(&beta) : static_cast<const void*>(&beta_f);
  LtCheck(cublasLtMatmul(reinterpret_cast<cublasLtHandle_t>(c.ctx().lt()), p.desc, pa, b, p.la, a, p.lb, pb, out, p.lc, out, p.lc,
                         &p.algo, c.ctx().lt_workspace(), c.ctx().lt_workspace_bytes(), c.stream()),
          "cublasLtMatmul");
  return c.env().Undefined();
}

}  // namespace

void RegisterCudaBlas(Napi::Env env, Napi::Object cuda) { DefineCudaOps(env, cuda, {{"matmul", Matmul}}); }

}  // namespace cuda
}  // namespace modulora
