// Fused attention forward (FlashAttention-2, Dao 2023, Algorithm 1) on CUDA cores; see attention.h.
//
// One block of 128 threads per (b, q head, tile of BQ query rows). Q stays in shared memory; each
// key tile (BK keys of K and V) is staged in shared memory, then
//   S = scale · Q Kᵀ + mask (causally hidden and out-of-range keys at -inf)    [BQ, BK] in registers
//   m' = max(m, rowmax S); P = exp(S − m'); l = l · e^(m − m') + rowsum P; O = O · e^(m − m') + P V
// with P passed through shared memory for the P V product. Thread (rg, cg) owns query rows
// rg + 16 i and key columns cg + 8 j of S, and output columns cg·4 + 32 g + e of O; a row's 8
// lanes sit in one warp, so its max and sum are warp shuffles. Causal: the loop stops at the last
// key tile any row of the block can see.
#include "cuda/attention.h"

namespace modulora {
namespace cuda {
namespace attn {
namespace {

template <class E, int DP, bool VEC>
__global__ void __launch_bounds__(128) attention_fwd_kernel(Params<E> p) {
  using C = RowCfg<E, DP>;
  using A = Acc<E>;
  constexpr int RM = C::RM, BQ = C::BQ, BK = C::BK, LDD = C::LDD, LDP = C::LDP, NC = C::NC, NG = C::NG, RG = C::RG;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sQ = reinterpret_cast<A*>(smem_raw);
  A* sK = sQ + BQ * LDD;
  A* sV = sK + BK * LDD;
  A* sP = sV + BK * LDD;

  const int tid = threadIdx.x, cg = tid & 7, rg = tid >> 3;
  const int64_t BH = p.B * p.Hq, nqt = (p.T + BQ - 1) / BQ;
  const int64_t bid = blockIdx.x;
  const int64_t qt = nqt - 1 - bid / BH, bh = bid % BH;  // the last (heaviest under causal) tiles first
  const int64_t b = bh / p.Hq, h = bh % p.Hq, kv = h / p.group;
  const int64_t t0 = qt * BQ;
  const int D = static_cast<int>(p.D);
  const int qrows = static_cast<int>(imin(BQ, p.T - t0));
  const int64_t ldq = p.Hq * p.D, ldk = p.Hkv * p.D, off = p.S - p.T;

  load_rows<E, DP, VEC, C::NT>(sQ, LDD, p.q + ((b * p.T + t0) * p.Hq + h) * p.D, ldq, qrows, BQ, D);

  A o[RM][NG][4];
  A m[RM], l[RM];
#pragma unroll
  for (int i = 0; i < RM; i++) {
    m[i] = -inf<A>();
    l[i] = A(0);
#pragma unroll
    for (int g = 0; g < NG; g++)
#pragma unroll
      for (int e = 0; e < 4; e++) o[i][g][e] = A(0);
  }

  const int64_t kend = p.causal ? imin(p.S, off + t0 + qrows) : p.S;  // keys [0, kend) can be visible
  const E* kbase = p.k + b * p.S * ldk + kv * p.D;
  const E* vbase = p.v + b * p.S * ldk + kv * p.D;
  const E* mbase = p.mask ? p.mask + b * p.msb + h * p.msh : nullptr;
  for (int64_t j0 = 0; j0 < kend; j0 += BK) {
    __syncthreads();  // the previous tile's sK, sV, sP are consumed
    const int krows = static_cast<int>(imin(BK, p.S - j0));
    load_rows<E, DP, VEC, C::NT>(sK, LDD, kbase + j0 * ldk, ldk, krows, BK, D);
    load_rows<E, DP, VEC, C::NT>(sV, LDD, vbase + j0 * ldk, ldk, krows, BK, D);
    __syncthreads();

    A s[RM][NC];
#pragma unroll
    for (int i = 0; i < RM; i++)
#pragma unroll
      for (int j = 0; j < NC; j++) s[i][j] = A(0);
    mm_nt<RM, NC, DP, RG>(s, sQ, LDD, sK, LDD, rg, cg);

#pragma unroll
    for (int i = 0; i < RM; i++) {
      const int64_t t = t0 + rg + RG * i;
      A mx = -inf<A>();
#pragma unroll
      for (int j = 0; j < NC; j++) {
        const int64_t key = j0 + cg + 8 * j;
        A x = -inf<A>();
        if (t < p.T && key < p.S && (!p.causal || key <= off + t)) {
          x = s[i][j] * p.scale;
          if (mbase) x += ld(mbase + t * p.mst + key * p.mss);
        }
        s[i][j] = x;
        mx = nanmax(mx, x);
      }
      mx = group_max(nanmax(mx, m[i]));
      // A row with nothing visible yet subtracts +inf (its P row is 0) and keeps its state.
      const A sub = mx == -inf<A>() ? inf<A>() : mx;
      A sum = A(0);
#pragma unroll
      for (int j = 0; j < NC; j++) {
        const A e = ex(s[i][j] - sub);
        s[i][j] = e;
        sum += e;
      }
      sum = group_sum(sum);
      if (sub != inf<A>()) {
        const A alpha = ex(m[i] - sub);  // 0 on the row's first visible tile
        l[i] = l[i] * alpha + sum;
        m[i] = sub;
#pragma unroll
        for (int g = 0; g < NG; g++)
#pragma unroll
          for (int e = 0; e < 4; e++) o[i][g][e] *= alpha;
      }
#pragma unroll
      for (int j = 0; j < NC; j++) sP[(rg + RG * i) * LDP + cg + 8 * j] = s[i][j];
    }
    __syncthreads();
    mm_nn<RM, NG, BK, RG>(o, sP, LDP, sV, LDD, rg, cg);
  }

#pragma unroll
  for (int i = 0; i < RM; i++) {
    const int64_t t = t0 + rg + RG * i;
    if (t >= p.T) continue;
    // Every key hidden: out = 0, lse = +inf (the backward's P is then exactly 0). A NaN l (a NaN
    // score) gives NaN out and lse.
    const bool empty = l[i] == A(0);
    const A inv = empty ? A(0) : A(1) / l[i];
    E* dst = p.out + (b * p.T + t) * ldq + h * p.D;
    if (empty) {
#pragma unroll
      for (int g = 0; g < NG; g++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[i][g][e] = A(0);  // (0 · inf would be NaN)
    }
    store_row<E, NG, VEC>(dst, o[i], inv, cg, D);
    if (cg == 0) p.lse[(b * p.Hq + h) * p.T + t] = empty ? inf<A>() : m[i] + lg(l[i]);
  }
}

template <class E, int DP, bool VEC>
void LaunchForward(Context& c, const Params<E>& p) {
  using C = RowCfg<E, DP>;
  static unsigned long long done = 0;
  const void* f = reinterpret_cast<const void*>(&attention_fwd_kernel<E, DP, VEC>);
  EnsureSmem(f, C::kFwdSmem, c.device(), done);
  const int64_t blocks = p.B * p.Hq * ((p.T + C::BQ - 1) / C::BQ);
  if (blocks == 0) return;
  if (blocks > 0x7fffffffLL) throw CudaError("attention: too many query tiles for one launch");
  attention_fwd_kernel<E, DP, VEC><<<static_cast<unsigned>(blocks), C::NT, C::kFwdSmem, c.stream()>>>(p);
}

template <class E>
void Forward(Context& c, const AttnDims& d, const void* q, const void* k, const void* v, const AttnMask& mask,
             void* out, void* lse) {
  using A = Acc<E>;
  Params<E> p{};
  p.q = static_cast<const E*>(q);
  p.k = static_cast<const E*>(k);
  p.v = static_cast<const E*>(v);
  p.mask = static_cast<const E*>(mask.data);
  p.out = static_cast<E*>(out);
  p.lse = static_cast<A*>(lse);
  p.B = d.B, p.T = d.T, p.S = d.S, p.Hq = d.Hq, p.Hkv = d.Hkv, p.D = d.D, p.group = d.Hq / d.Hkv;
  p.msb = mask.sb, p.msh = mask.sh, p.mst = mask.st, p.mss = mask.ss;
  p.scale = static_cast<A>(d.scale);
  p.causal = d.causal;
  const bool aligned = Aligned4(q, sizeof(E)) && Aligned4(k, sizeof(E)) && Aligned4(v, sizeof(E)) && Aligned4(out, sizeof(E));
#define MODULORA_ATTN_FWD(DP, VEC) LaunchForward<E, DP, VEC>(c, p)
  MODULORA_ATTN_DISPATCH_D(d.D, aligned, "attention", MODULORA_ATTN_FWD);
#undef MODULORA_ATTN_FWD
}

}  // namespace
}  // namespace attn

void AttentionForward(Context& c, int dtype, const AttnDims& d, const void* q, const void* k, const void* v,
                      const AttnMask& mask, void* out, void* lse) {
  if (d.B <= 0 || d.T <= 0 || d.Hq <= 0) return;  // out and lse are empty
  if (d.Hkv <= 0 || d.D <= 0 || d.Hq % d.Hkv != 0) throw CudaError("attention: needs Hq, Hkv, D >= 1 and Hq % Hkv == 0");
  if (d.causal && d.S < d.T) throw CudaError("attention: causal attention needs S >= T");
  MODULORA_DISPATCH_FLOAT(dtype, "attention", E, attn::Forward<E>(c, d, q, k, v, mask, out, lse));
}

}  // namespace cuda
}  // namespace modulora
