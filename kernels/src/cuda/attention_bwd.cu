// Fused attention backward (FlashAttention-2, Dao 2023, Algorithm 2) on CUDA cores; see attention.h.
//
//   drow[b,h,t] = <dout[b,t,h,:], out[b,t,h,:]>                       (one warp per row)
//   per tile pair: S = scale · Q Kᵀ + mask, P = exp(S − lse), dP = dO Vᵀ, dS = P ∘ (dP − drow)
//   pass 1 (dK, dV): one block of 256 threads per (b, kv head, tile of BKc keys). K and V stay in
//     shared memory; for each query head of the group and each query tile (causal: from the first
//     query that sees the tile's first key) it stages Q, dO, lse, drow, computes Sᵀ and dPᵀ
//     (keys × queries) in registers, passes Pᵀ and dSᵀ through shared memory, and accumulates
//     dV += Pᵀ dO and dK += dSᵀ Q in registers. dK is scaled once at the end.
//   pass 2 (dQ): one block of 128 threads per (b, q head, tile of BQ query rows), Q and dO in
//     shared memory, streaming key tiles as the forward does: dQ += dS K, scaled at the end.
// Every output element is written by exactly one thread (no atomics): deterministic results.
#include "cuda/attention.h"

namespace modulora {
namespace cuda {
namespace attn {
namespace {

// drow[(b * Hq + h) * T + t] = Σ_d dout · out over row (b, t, h), one warp per row.
template <class E>
__global__ void __launch_bounds__(256) attention_drow_kernel(Params<E> p, Acc<E>* drow) {
  using A = Acc<E>;
  const int lane = threadIdx.x & 31;
  const int64_t rows = p.B * p.T * p.Hq;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    const E* x = p.dout + r * p.D;
    const E* y = p.o + r * p.D;
    A s = A(0);
    for (int64_t d = lane; d < p.D; d += 32) s = fma(ld(x + d), ld(y + d), s);
#pragma unroll
    for (int w = 16; w >= 1; w >>= 1) s += __shfl_xor_sync(0xffffffffu, s, w);
    if (lane == 0) {
      const int64_t h = r % p.Hq, bt = r / p.Hq, t = bt % p.T, b = bt / p.T;
      drow[(b * p.Hq + h) * p.T + t] = s;
    }
  }
}

// Pass 1: dK, dV of one key tile of one (b, kv head).
template <class E, int DP, bool VEC>
__global__ void __launch_bounds__(256) attention_dkdv_kernel(Params<E> p) {
  using C = KeyCfg<E, DP>;
  using A = Acc<E>;
  constexpr int RM = C::RM, BKc = C::BKc, BQc = C::BQc, LDD = C::LDD, LDP = C::LDP, NC = C::NC, NG = C::NG, RG = C::RG;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sK = reinterpret_cast<A*>(smem_raw);
  A* sV = sK + BKc * LDD;
  A* sQ = sV + BKc * LDD;
  A* sO = sQ + BQc * LDD;  // dO
  A* sP = sO + BQc * LDD;  // Pᵀ  [BKc][LDP]
  A* sS = sP + BKc * LDP;  // dSᵀ [BKc][LDP]
  A* sL = sS + BKc * LDP;  // lse  [BQc]
  A* sD = sL + BQc;        // drow [BQc]

  const int tid = threadIdx.x, cg = tid & 7, rg = tid >> 3;
  const int64_t BK = p.B * p.Hkv;
  const int64_t bid = blockIdx.x;
  const int64_t kt = bid / BK, bkv = bid % BK;  // key tile 0 (the most queries under causal) first
  const int64_t b = bkv / p.Hkv, kv = bkv % p.Hkv;
  const int64_t j0 = kt * BKc;
  const int D = static_cast<int>(p.D);
  const int krows = static_cast<int>(imin(BKc, p.S - j0));
  const int64_t ldq = p.Hq * p.D, ldk = p.Hkv * p.D, off = p.S - p.T;

  load_rows<E, DP, VEC, C::NT>(sK, LDD, p.k + (b * p.S + j0) * ldk + kv * p.D, ldk, krows, BKc, D);
  load_rows<E, DP, VEC, C::NT>(sV, LDD, p.v + (b * p.S + j0) * ldk + kv * p.D, ldk, krows, BKc, D);

  A dk[RM][NG][4], dv[RM][NG][4];
#pragma unroll
  for (int i = 0; i < RM; i++)
#pragma unroll
    for (int g = 0; g < NG; g++)
#pragma unroll
      for (int e = 0; e < 4; e++) dk[i][g][e] = dv[i][g][e] = A(0);

  // Causal: queries before the first one that sees key j0 see nothing of this tile.
  const int64_t tbegin = p.causal ? imin(p.T, imax(0, j0 - off)) : 0;
  for (int64_t g = 0; g < p.group; g++) {
    const int64_t h = kv * p.group + g;
    const E* mbase = p.mask ? p.mask + b * p.msb + h * p.msh : nullptr;
    const A* lrow = p.lse_in + (b * p.Hq + h) * p.T;
    const A* drow = p.drow + (b * p.Hq + h) * p.T;
    for (int64_t t0 = tbegin; t0 < p.T; t0 += BQc) {
      __syncthreads();  // the previous tile's sQ, sO, sP, sS, sL, sD are consumed
      const int qrows = static_cast<int>(imin(BQc, p.T - t0));
      load_rows<E, DP, VEC, C::NT>(sQ, LDD, p.q + (b * p.T + t0) * ldq + h * p.D, ldq, qrows, BQc, D);
      load_rows<E, DP, VEC, C::NT>(sO, LDD, p.dout + (b * p.T + t0) * ldq + h * p.D, ldq, qrows, BQc, D);
      for (int r = tid; r < BQc; r += C::NT) {
        sL[r] = r < qrows ? lrow[t0 + r] : inf<A>();
        sD[r] = r < qrows ? drow[t0 + r] : A(0);
      }
      __syncthreads();

      A s[RM][NC], dp[RM][NC];
#pragma unroll
      for (int i = 0; i < RM; i++)
#pragma unroll
        for (int j = 0; j < NC; j++) s[i][j] = dp[i][j] = A(0);
      mm_nt<RM, NC, DP, RG>(s, sK, LDD, sQ, LDD, rg, cg);   // Sᵀ (unscaled)
      mm_nt<RM, NC, DP, RG>(dp, sV, LDD, sO, LDD, rg, cg);  // dPᵀ

#pragma unroll
      for (int i = 0; i < RM; i++) {
        const int kr = rg + RG * i;
        const int64_t key = j0 + kr;
#pragma unroll
        for (int j = 0; j < NC; j++) {
          const int qc = cg + 8 * j;
          const int64_t t = t0 + qc;
          const bool inr = key < p.S && qc < qrows;
          A pr = A(0), ds = A(0);
          if (inr) {
            A x = -inf<A>();
            if (!p.causal || key <= off + t) {
              x = s[i][j] * p.scale;
              if (mbase) x += ld(mbase + t * p.mst + key * p.mss);
            }
            pr = ex(x - sL[qc]);
            ds = pr * (dp[i][j] - sD[qc]);
          }
          sP[kr * LDP + qc] = pr;
          sS[kr * LDP + qc] = ds;
        }
      }
      __syncthreads();
      mm_nn<RM, NG, BQc, RG>(dv, sP, LDP, sO, LDD, rg, cg);  // dV += Pᵀ dO
      mm_nn<RM, NG, BQc, RG>(dk, sS, LDP, sQ, LDD, rg, cg);  // dK += dSᵀ Q
    }
  }

#pragma unroll
  for (int i = 0; i < RM; i++) {
    const int64_t key = j0 + rg + RG * i;
    if (key >= p.S) continue;
    const int64_t o = (b * p.S + key) * ldk + kv * p.D;
    store_row<E, NG, VEC>(p.dk + o, dk[i], p.scale, cg, D);
    store_row<E, NG, VEC>(p.dv + o, dv[i], A(1), cg, D);
  }
}

// Pass 2: dQ of one query tile of one (b, q head).
template <class E, int DP, bool VEC>
__global__ void __launch_bounds__(128) attention_dq_kernel(Params<E> p) {
  using C = RowCfg<E, DP>;
  using A = Acc<E>;
  constexpr int RM = C::RM, BQ = C::BQ, BK = C::BKq, LDD = C::LDD, LDP = C::LDPq, NC = C::NCq, NG = C::NG, RG = C::RG;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sQ = reinterpret_cast<A*>(smem_raw);
  A* sO = sQ + BQ * LDD;  // dO
  A* sK = sO + BQ * LDD;
  A* sV = sK + BK * LDD;
  A* sS = sV + BK * LDD;  // dS [BQ][LDP]

  const int tid = threadIdx.x, cg = tid & 7, rg = tid >> 3;
  const int64_t BH = p.B * p.Hq, nqt = (p.T + BQ - 1) / BQ;
  const int64_t bid = blockIdx.x;
  const int64_t qt = nqt - 1 - bid / BH, bh = bid % BH;
  const int64_t b = bh / p.Hq, h = bh % p.Hq, kv = h / p.group;
  const int64_t t0 = qt * BQ;
  const int D = static_cast<int>(p.D);
  const int qrows = static_cast<int>(imin(BQ, p.T - t0));
  const int64_t ldq = p.Hq * p.D, ldk = p.Hkv * p.D, off = p.S - p.T;

  load_rows<E, DP, VEC, C::NT>(sQ, LDD, p.q + (b * p.T + t0) * ldq + h * p.D, ldq, qrows, BQ, D);
  load_rows<E, DP, VEC, C::NT>(sO, LDD, p.dout + (b * p.T + t0) * ldq + h * p.D, ldq, qrows, BQ, D);
  A lse[RM], dr[RM], dq[RM][NG][4];
#pragma unroll
  for (int i = 0; i < RM; i++) {
    const int r = rg + RG * i;
    lse[i] = r < qrows ? p.lse_in[(b * p.Hq + h) * p.T + t0 + r] : inf<A>();
    dr[i] = r < qrows ? p.drow[(b * p.Hq + h) * p.T + t0 + r] : A(0);
#pragma unroll
    for (int g = 0; g < NG; g++)
#pragma unroll
      for (int e = 0; e < 4; e++) dq[i][g][e] = A(0);
  }

  const int64_t kend = p.causal ? imin(p.S, off + t0 + qrows) : p.S;
  const E* kbase = p.k + b * p.S * ldk + kv * p.D;
  const E* vbase = p.v + b * p.S * ldk + kv * p.D;
  const E* mbase = p.mask ? p.mask + b * p.msb + h * p.msh : nullptr;
  for (int64_t j0 = 0; j0 < kend; j0 += BK) {
    __syncthreads();  // the previous tile's sK, sV, sS are consumed
    const int krows = static_cast<int>(imin(BK, p.S - j0));
    load_rows<E, DP, VEC, C::NT>(sK, LDD, kbase + j0 * ldk, ldk, krows, BK, D);
    load_rows<E, DP, VEC, C::NT>(sV, LDD, vbase + j0 * ldk, ldk, krows, BK, D);
    __syncthreads();

    A s[RM][NC], dp[RM][NC];
#pragma unroll
    for (int i = 0; i < RM; i++)
#pragma unroll
      for (int j = 0; j < NC; j++) s[i][j] = dp[i][j] = A(0);
    mm_nt<RM, NC, DP, RG>(s, sQ, LDD, sK, LDD, rg, cg);
    mm_nt<RM, NC, DP, RG>(dp, sO, LDD, sV, LDD, rg, cg);

#pragma unroll
    for (int i = 0; i < RM; i++) {
      const int r = rg + RG * i;
      const int64_t t = t0 + r;
#pragma unroll
      for (int j = 0; j < NC; j++) {
        const int kc = cg + 8 * j;
        const int64_t key = j0 + kc;
        A ds = A(0);
        if (r < qrows && kc < krows) {
          A x = -inf<A>();
          if (!p.causal || key <= off + t) {
            x = s[i][j] * p.scale;
            if (mbase) x += ld(mbase + t * p.mst + key * p.mss);
          }
          ds = ex(x - lse[i]) * (dp[i][j] - dr[i]);
        }
        sS[r * LDP + kc] = ds;
      }
    }
    __syncthreads();
    mm_nn<RM, NG, BK, RG>(dq, sS, LDP, sK, LDD, rg, cg);  // dQ += dS K
  }

#pragma unroll
  for (int i = 0; i < RM; i++) {
    const int r = rg + RG * i;
    if (r >= qrows) continue;
    store_row<E, NG, VEC>(p.dq + (b * p.T + t0 + r) * ldq + h * p.D, dq[i], p.scale, cg, D);
  }
}

template <class E, int DP, bool VEC>
void LaunchBackward(Context& c, const Params<E>& p) {
  using KC = KeyCfg<E, DP>;
  using RC = RowCfg<E, DP>;
  static unsigned long long done1 = 0, done2 = 0;
  EnsureSmem(reinterpret_cast<const void*>(&attention_dkdv_kernel<E, DP, VEC>), KC::kSmem, c.device(), done1);
  EnsureSmem(reinterpret_cast<const void*>(&attention_dq_kernel<E, DP, VEC>), RC::kDqSmem, c.device(), done2);
  const int64_t blocks1 = p.B * p.Hkv * ((p.S + KC::BKc - 1) / KC::BKc);
  const int64_t blocks2 = p.B * p.Hq * ((p.T + RC::BQ - 1) / RC::BQ);
  if (blocks1 > 0x7fffffffLL || blocks2 > 0x7fffffffLL) throw CudaError("attentionBackward: too many tiles for one launch");
  if (blocks1 > 0) attention_dkdv_kernel<E, DP, VEC><<<static_cast<unsigned>(blocks1), KC::NT, KC::kSmem, c.stream()>>>(p);
  if (blocks2 > 0) attention_dq_kernel<E, DP, VEC><<<static_cast<unsigned>(blocks2), RC::NT, RC::kDqSmem, c.stream()>>>(p);
}

template <class E>
void Backward(Context& c, const AttnDims& d, const void* q, const void* k, const void* v, const void* out,
              const void* lse, const void* dout, const AttnMask& mask, void* dq, void* dk, void* dv) {
  using A = Acc<E>;
  Params<E> p{};
  p.q = static_cast<const E*>(q);
  p.k = static_cast<const E*>(k);
  p.v = static_cast<const E*>(v);
  p.o = static_cast<const E*>(out);
  p.dout = static_cast<const E*>(dout);
  p.mask = static_cast<const E*>(mask.data);
  p.lse_in = static_cast<const A*>(lse);
  p.dq = static_cast<E*>(dq);
  p.dk = static_cast<E*>(dk);
  p.dv = static_cast<E*>(dv);
  p.B = d.B, p.T = d.T, p.S = d.S, p.Hq = d.Hq, p.Hkv = d.Hkv, p.D = d.D, p.group = d.Hq / d.Hkv;
  p.msb = mask.sb, p.msh = mask.sh, p.mst = mask.st, p.mss = mask.ss;
  p.scale = static_cast<A>(d.scale);
  p.causal = d.causal;

  const int64_t rows = d.B * d.T * d.Hq;
  Scratch drow(c, static_cast<size_t>(rows) * sizeof(A));
  p.drow = drow.as<A>();
  attention_drow_kernel<E><<<Blocks(rows * 32, 256), 256, 0, c.stream()>>>(p, drow.as<A>());

  const size_t es = sizeof(E);
  const bool aligned = Aligned4(q, es) && Aligned4(k, es) && Aligned4(v, es) && Aligned4(dout, es) &&
                       Aligned4(dq, es) && Aligned4(dk, es) && Aligned4(dv, es);
#define MODULORA_ATTN_BWD(DP, VEC) LaunchBackward<E, DP, VEC>(c, p)
  MODULORA_ATTN_DISPATCH_D(d.D, aligned, "attentionBackward", MODULORA_ATTN_BWD);
#undef MODULORA_ATTN_BWD
}

}  // namespace
}  // namespace attn

void AttentionBackward(Context& c, int dtype, const AttnDims& d, const void* q, const void* k, const void* v,
                       const void* out, const void* lse, const void* dout, const AttnMask& mask, void* dq, void* dk,
                       void* dv) {
  if (d.Hkv <= 0 || d.Hq <= 0 || d.D <= 0 || d.Hq % d.Hkv != 0) {
    throw CudaError("attentionBackward: needs Hq, Hkv, D >= 1 and Hq % Hkv == 0");
  }
  if (d.causal && d.S < d.T) throw CudaError("attentionBackward: causal attention needs S >= T");
  const size_t es = CodeSize(dtype);
  if (d.B <= 0 || d.T <= 0 || d.S <= 0) {  // no query or no key: every gradient is 0 (all-zero bits)
    const size_t nq = static_cast<size_t>(d.B * d.T * d.Hq * d.D) * es, nk = static_cast<size_t>(d.B * d.S * d.Hkv * d.D) * es;
    if (nq) Check(cudaMemsetAsync(dq, 0, nq, c.stream()), "cudaMemsetAsync(dq)");
    if (nk) Check(cudaMemsetAsync(dk, 0, nk, c.stream()), "cudaMemsetAsync(dk)");
    if (nk) Check(cudaMemsetAsync(dv, 0, nk, c.stream()), "cudaMemsetAsync(dv)");
    return;
  }
  MODULORA_DISPATCH_FLOAT(dtype, "attentionBackward", E, attn::Backward<E>(c, d, q, k, v, out, lse, dout, mask, dq, dk, dv));
}

}  // namespace cuda
}  // namespace modulora
