// Fused attention on CUDA (FlashAttention-2 style): the host launchers (declared for
// bind_attention.cc) and, for the .cu files only, the tile machinery the kernels share.
//
// The contract is the CPU kernel's (src/cpu/attention.h, the specification):
//   q, out, dout, dq: [B, T, Hq, D]   k, v, dk, dv: [B, S, Hkv, D]   lse, drow: [B, Hq, T]
//   (all contiguous), query head h reads kv head h / (Hq / Hkv).
//   scores[b,h,t,j] = scale · <q[b,t,h,:], k[b,j,h/G,:]> + mask[b,h,t,j]   (additive mask,
//   read as [B, Hq, T, S] through element strides; 0 strides broadcast)
//   causal: key j is visible to query t iff j <= S - T + t.
//   out = softmax(scores) · v, lse = log Σ_j exp(scores) (natural log of the scaled, masked
//   scores); a row with no visible key gives out = 0 and lse = +inf (so the backward's P is 0).
// Dtypes: f32 (f32 math), f64 (f64 throughout), bf16 (loaded as f32, f32 accumulation, outputs
// rounded once; lse is f32). lse has the accumulation type: f32 for f32/bf16, f64 for f64.
//
// Work decomposition (every output element has exactly one writer: no atomics, deterministic):
//   forward   one block per (b, q head, tile of query rows); streams key tiles through shared
//             memory with an online softmax (running max and sum); causal: only key tiles with a
//             visible key are visited. No [T, S] matrix ever reaches global memory.
//   backward  drow = rowsum(dout ∘ out) (one warp per row), then
//             pass 1: one block per (b, kv head, key tile): dK, dV in registers while it loops over
//                     the G query heads of the group and their query tiles (GQA needs no atomics);
//             pass 2: one block per (b, q head, query tile): dQ, looping over key tiles.
//             Both passes recompute P = exp(S − lse) per tile; dS = P ∘ (dP − drow).
// Head dims: any D in [1, 256]. D is padded to DP ∈ {32, 64, 128, 256} in shared memory (zero
// filled); D = 64 and 128 with 16-byte-aligned rows take vectorized global loads and stores.
#pragma once
#include <cstdint>

#include "cuda/runtime.h"

namespace modulora {
namespace cuda {

/** The shape and options of one attention call (the CPU's AttentionDims). */
struct AttnDims {
  int64_t B, T, S, Hq, Hkv, D;
  bool causal;
  double scale;
};

/** The optional additive mask: element strides of its [B, Hq, T, S] view (0 on broadcast dims). */
struct AttnMask {
  const void* data = nullptr;  // nullptr: no mask; else the mask's first element, of the inputs' dtype
  int64_t sb = 0, sh = 0, st = 0, ss = 0;
};

/** Largest head dim the kernels take. */
constexpr int64_t kAttnMaxHeadDim = 256;

// Writes out [B, T, Hq, D] (dtype) and lse [B, Hq, T] (f32, or f64 for f64) on c.stream().
void AttentionForward(Context& c, int dtype, const AttnDims& d, const void* q, const void* k, const void* v,
                      const AttnMask& mask, void* out, void* lse);

// Writes dq, dk, dv (overwritten) from the forward's out and lse (lse of the accumulation type).
void AttentionBackward(Context& c, int dtype, const AttnDims& d, const void* q, const void* k, const void* v,
                       const void* out, const void* lse, const void* dout, const AttnMask& mask, void* dq, void* dk,
                       void* dv);

}  // namespace cuda
}  // namespace modulora

#if defined(__CUDACC__)
#include <cstring>
#include <string>

#include "cuda/common.cuh"

namespace modulora {
namespace cuda {
namespace attn {

// Kernel arguments (passed by value). E: the storage type, A = Acc<E>.
template <class E>
struct Params {
  using A = Acc<E>;
  const E *q, *k, *v, *o, *dout, *mask;
  const A* lse_in;  // backward
  const A* drow;    // backward
  A* lse;           // forward output
  E *out, *dq, *dk, *dv;
  int64_t B, T, S, Hq, Hkv, D, group;
  int64_t msb, msh, mst, mss;
  A scale;
  bool causal;
};

template <class A>
__device__ __forceinline__ A inf();
template <>
__device__ __forceinline__ float inf<float>() {
  return __int_as_float(0x7f800000);
}
template <>
__device__ __forceinline__ double inf<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// max that propagates NaN from either side (as the CPU's row max does).
template <class A>
__device__ __forceinline__ A nanmax(A a, A b) {
  return (a > b || a != a) ? a : b;
}
__device__ __forceinline__ float ex(float x) { return expf(x); }
__device__ __forceinline__ double ex(double x) { return exp(x); }
__device__ __forceinline__ float lg(float x) { return logf(x); }
__device__ __forceinline__ double lg(double x) { return log(x); }

// Sum / NaN-propagating max over the 8 lanes of a row group (lanes 8k .. 8k+7 of a warp).
template <class A>
__device__ __forceinline__ A group_sum(A x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  x += __shfl_xor_sync(0xffffffffu, x, 4);
  return x;
}
template <class A>
__device__ __forceinline__ A group_max(A x) {
  x = nanmax(x, __shfl_xor_sync(0xffffffffu, x, 1));
  x = nanmax(x, __shfl_xor_sync(0xffffffffu, x, 2));
  x = nanmax(x, __shfl_xor_sync(0xffffffffu, x, 4));
  return x;
}

// ---- 4-wide shared-memory and global accesses -------------------------------------------------

__device__ __forceinline__ void lds4(const float* p, float (&r)[4]) {
  const float4 t = *reinterpret_cast<const float4*>(p);
  r[0] = t.x, r[1] = t.y, r[2] = t.z, r[3] = t.w;
}
__device__ __forceinline__ void lds4(const double* p, double (&r)[4]) {
  const double2 a = *reinterpret_cast<const double2*>(p);
  const double2 b = *reinterpret_cast<const double2*>(p + 2);
  r[0] = a.x, r[1] = a.y, r[2] = b.x, r[3] = b.y;
}
__device__ __forceinline__ void sts4(float* p, const float (&r)[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(r[0], r[1], r[2], r[3]);
}
__device__ __forceinline__ void sts4(double* p, const double (&r)[4]) {
  *reinterpret_cast<double2*>(p) = make_double2(r[0], r[1]);
  *reinterpret_cast<double2*>(p + 2) = make_double2(r[2], r[3]);
}
// Global loads/stores of 4 consecutive elements (the address is 4-element aligned).
__device__ __forceinline__ void ldg4(const float* p, float (&r)[4]) {
  const float4 t = __ldg(reinterpret_cast<const float4*>(p));
  r[0] = t.x, r[1] = t.y, r[2] = t.z, r[3] = t.w;
}
__device__ __forceinline__ void ldg4(const double* p, double (&r)[4]) {
  const double2 a = __ldg(reinterpret_cast<const double2*>(p));
  const double2 b = __ldg(reinterpret_cast<const double2*>(p + 2));
  r[0] = a.x, r[1] = a.y, r[2] = b.x, r[3] = b.y;
}
__device__ __forceinline__ void ldg4(const bf16* p, float (&r)[4]) {
  const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
  __nv_bfloat162 lo, hi;
  memcpy(&lo, &u.x, 4);
  memcpy(&hi, &u.y, 4);
  const float2 a = __bfloat1622float2(lo), b = __bfloat1622float2(hi);
  r[0] = a.x, r[1] = a.y, r[2] = b.x, r[3] = b.y;
}
__device__ __forceinline__ void stg4(float* p, const float (&r)[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(r[0], r[1], r[2], r[3]);
}
__device__ __forceinline__ void stg4(double* p, const double (&r)[4]) {
  *reinterpret_cast<double2*>(p) = make_double2(r[0], r[1]);
  *reinterpret_cast<double2*>(p + 2) = make_double2(r[2], r[3]);
}
__device__ __forceinline__ void stg4(bf16* p, const float (&r)[4]) {
  bf16 h[4] = {cvt<bf16>(r[0]), cvt<bf16>(r[1]), cvt<bf16>(r[2]), cvt<bf16>(r[3])};
  uint2 u;
  memcpy(&u, h, 8);
  *reinterpret_cast<uint2*>(p) = u;
}

// Copies rows [0, rows) of a strided row array (row r at src + r * stride, D elements) into a
// shared tile [rows][ld] as the accumulation type; columns [D, DP) and rows [nvalid, rows) are
// zero. VEC: D == DP and every row 4-element aligned.
template <class E, int DP, bool VEC, int NT>
__device__ __forceinline__ void load_rows(Acc<E>* dst, int ldd, const E* src, int64_t stride, int nvalid, int rows,
                                          int D) {
  using A = Acc<E>;
  const int tid = threadIdx.x;
  if constexpr (VEC) {
    constexpr int Q = DP / 4;
    for (int idx = tid; idx < rows * Q; idx += NT) {
      const int r = idx / Q, d = (idx - r * Q) * 4;
      A v[4] = {A(0), A(0), A(0), A(0)};
      if (r < nvalid) ldg4(src + r * stride + d, v);
      sts4(dst + r * ldd + d, v);
    }
  } else {
    for (int idx = tid; idx < rows * DP; idx += NT) {
      const int r = idx / DP, d = idx - r * DP;
      A v = A(0);
      if (r < nvalid && d < D) v = ld(src + r * stride + d);
      dst[r * ldd + d] = v;
    }
  }
}

// ---- Block products out of shared memory -------------------------------------------------------
// Threads form row groups rg (tid / 8) of 8 lanes cg (tid % 8); RG = threads / 8. A thread owns
// rows rg + RG * i (i < RM) of the product.

// NT: c[i][j] += Σ_k a[(rg + RG i) * lda + k] · b[(cg + 8 j) * ldb + k], k < K (K % 4 == 0).
template <int RM, int NC, int K, int RG, class A>
__device__ __forceinline__ void mm_nt(A (&c)[RM][NC], const A* sa, int lda, const A* sb, int ldb, int rg, int cg) {
#pragma unroll 2
  for (int k = 0; k < K; k += 4) {
    A a[RM][4], b[NC][4];
#pragma unroll
    for (int i = 0; i < RM; i++) lds4(sa + (rg + RG * i) * lda + k, a[i]);
#pragma unroll
    for (int j = 0; j < NC; j++) lds4(sb + (cg + 8 * j) * ldb + k, b[j]);
#pragma unroll
    for (int e = 0; e < 4; e++)
#pragma unroll
      for (int i = 0; i < RM; i++)
#pragma unroll
        for (int j = 0; j < NC; j++) c[i][j] = fma(a[i][e], b[j][e], c[i][j]);
  }
}

// NN: c[i][g][e] += Σ_k a[(rg + RG i) * lda + k] · b[k * ldb + cg * 4 + 32 g + e], k < K (K % 4 == 0).
template <int RM, int NG, int K, int RG, class A>
__device__ __forceinline__ void mm_nn(A (&c)[RM][NG][4], const A* sa, int lda, const A* sb, int ldb, int rg, int cg) {
#pragma unroll 1
  for (int k = 0; k < K; k += 4) {
    A a[RM][4];
#pragma unroll
    for (int i = 0; i < RM; i++) lds4(sa + (rg + RG * i) * lda + k, a[i]);
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      A b[NG][4];
#pragma unroll
      for (int g = 0; g < NG; g++) lds4(sb + (k + kk) * ldb + cg * 4 + 32 * g, b[g]);
#pragma unroll
      for (int i = 0; i < RM; i++)
#pragma unroll
        for (int g = 0; g < NG; g++)
#pragma unroll
          for (int e = 0; e < 4; e++) c[i][g][e] = fma(a[i][kk], b[g][e], c[i][g][e]);
    }
  }
}

// Writes row fragment v[g][e] (columns cg * 4 + 32 g + e) times `mul` to dst[0, D).
template <class E, int NG, bool VEC>
__device__ __forceinline__ void store_row(E* dst, const Acc<E> (&v)[NG][4], Acc<E> mul, int cg, int D) {
  using A = Acc<E>;
#pragma unroll
  for (int g = 0; g < NG; g++) {
    const int d = cg * 4 + 32 * g;
    A r[4] = {v[g][0] * mul, v[g][1] * mul, v[g][2] * mul, v[g][3] * mul};
    if constexpr (VEC) {
      stg4(dst + d, r);
    } else {
#pragma unroll
      for (int e = 0; e < 4; e++)
        if (d + e < D) st(dst + d + e, r[e]);
    }
  }
}

// ---- Tile configurations -----------------------------------------------------------------------

// Forward and dQ pass: 128 threads (16 row groups), RM query rows per thread, BQ rows per block,
// BK keys per tile. Register budget: RM · DP / 8 accumulators (64 f32 or 32 f64 at most).
template <class E, int DP>
struct RowCfg {
  using A = Acc<E>;
  static constexpr int NT = 128, RG = NT / 8;
  static constexpr int RMmax = (sizeof(A) == 4 ? 512 : 256) / DP;
  static constexpr int RM = RMmax > 4 ? 4 : (RMmax < 1 ? 1 : RMmax);
  static constexpr int BQ = RG * RM;
  static constexpr int BK = DP <= 64 ? 64 : 32;
  static constexpr int LDD = DP + 4;  // ld of [rows][DP] tiles (keeps float4 rows aligned, spreads banks)
  static constexpr int LDP = BK + 4;  // ld of [BQ][BK] tiles
  static constexpr int NC = BK / 8;   // score columns per thread
  static constexpr int NG = DP / 32;  // 4-column groups of the accumulator per thread
  static constexpr size_t kFwdSmem = sizeof(A) * (size_t(BQ) * LDD + 2 * size_t(BK) * LDD + size_t(BQ) * LDP);
  // The dQ pass holds two score tiles (S, dP): narrower key tiles keep it in registers.
  static constexpr int BKq = 32, LDPq = BKq + 4, NCq = BKq / 8;
  static constexpr size_t kDqSmem = sizeof(A) * (2 * size_t(BQ) * LDD + 2 * size_t(BKq) * LDD + size_t(BQ) * LDPq);
  static_assert(kFwdSmem <= 227 * 1024 && kDqSmem <= 227 * 1024, "attention tile exceeds shared memory");
};

// dK/dV pass: 256 threads (32 row groups), RM key rows per thread, BKc keys per block, BQc query
// rows per inner tile. Accumulators: 2 · RM · DP / 8.
template <class E, int DP>
struct KeyCfg {
  using A = Acc<E>;
  static constexpr int NT = 256, RG = NT / 8;
  static constexpr int RM = sizeof(A) == 4 ? (DP <= 128 ? 2 : 1) : (DP <= 64 ? 2 : 1);
  static constexpr int BKc = RG * RM;
  static constexpr int BQc = sizeof(A) == 4 ? (DP <= 128 ? 64 : 32) : (DP <= 128 ? 32 : 16);
  static constexpr int LDD = DP + 4;
  static constexpr int LDP = BQc + 4;
  static constexpr int NC = BQc / 8;
  static constexpr int NG = DP / 32;
  static constexpr size_t kSmem =
      sizeof(A) * (2 * size_t(BKc) * LDD + 2 * size_t(BQc) * LDD + 2 * size_t(BKc) * LDP + 2 * size_t(BQc));
  static_assert(kSmem <= 227 * 1024, "attention tile exceeds shared memory");
};

// Opts kernel `f` into `bytes` of dynamic shared memory on `device` (once per device and kernel:
// `done` is the caller's per-instantiation flag word).
inline void EnsureSmem(const void* f, size_t bytes, int device, unsigned long long& done) {
  const unsigned long long bit = device < 64 ? (1ull << device) : 0;
  if (bit && (done & bit)) return;
  if (bytes > 48 * 1024) {
    Check(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
          "cudaFuncSetAttribute(attention, MaxDynamicSharedMemorySize)");
  }
  done |= bit;
}

inline bool Aligned4(const void* p, size_t elem) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % (4 * elem) == 0;
}

// Expands CALL(DP, VEC) for head dim D: D = 64 / 128 with 4-element-aligned rows take the
// vectorized path, every other D (<= 256) the generic path padded to DP ∈ {32, 64, 128, 256}.
#define MODULORA_ATTN_DISPATCH_D(D, aligned, op, CALL)                                                       \
  do {                                                                                                    \
    if ((D) == 64 && (aligned)) {                                                                         \
      CALL(64, true);                                                                                     \
    } else if ((D) == 128 && (aligned)) {                                                                 \
      CALL(128, true);                                                                                    \
    } else if ((D) <= 32) {                                                                               \
      CALL(32, false);                                                                                    \
    } else if ((D) <= 64) {                                                                               \
      CALL(64, false);                                                                                    \
    } else if ((D) <= 128) {                                                                              \
      CALL(128, false);                                                                                   \
    } else if ((D) <= 256) {                                                                              \
      CALL(256, false);                                                                                   \
    } else {                                                                                              \
      throw ::modulora::cuda::CudaError(std::string(op) + ": head dim D = " + std::to_string(D) +          \
                                        " is above the cuda kernels' limit of 256");                      \
    }                                                                                                     \
  } while (0)

}  // namespace attn
}  // namespace cuda
}  // namespace modulora
#endif
