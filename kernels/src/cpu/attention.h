// Fused causal self-attention with grouped-query heads on the CPU (FlashAttention-style).
//
// Layouts (row-major, contiguous), straight out of the q/k/v projections:
//   q, out, dout, dq: [B, T, Hq, D]      k, v, dk, dv: [B, S, Hkv, D]      lse: [B, Hq, T]
// Query head h reads kv head h / (Hq / Hkv) (the LLaMA / HF `repeat_kv` convention).
//
//   scores[b,h,t,j] = scale * <q[b,t,h,:], k[b,j,h/G,:]> + mask[b,h,t,j]   (G = Hq / Hkv)
//   causal: key j is visible to query t iff j <= S - T + t (the T queries are the newest positions)
//   out[b,t,h,:] = softmax_j(scores[b,h,t,:]) · v[b,:,h/G,:]
//   lse[b,h,t]   = log sum_j exp(scores[b,h,t,j])
// A row whose keys are all masked (-inf) gives out = 0 and lse = +inf (so that the backward's
// exp(score - lse) is 0 there and its gradients are 0, not NaN), as PyTorch's SDPA gives 0 for
// fully masked rows. A NaN score (NaN in q, k or the mask) makes its row's out and lse NaN, and
// the gradients that depend on it NaN, as in the reference: a NaN never becomes a finite value.
// (A NaN in v at a key the row cannot see may still reach it through the block's P·V product,
// where that key's P is 0; a NaN in k there does not: its score is overwritten with -inf.)
//
// Memory: no [T, S] score matrix is ever built. Each task holds one block of query rows and
// streams over key blocks with an online softmax (running max and sum); scratch per thread is
// O(kAttnBlockQ * (kAttnBlockK + D)). The backward recomputes the scores block by block from q, k
// and lse, plus one [B, Hq, T] array of rowsum(dout ∘ out).
//
// Softmax and accumulation run in the input type (f32 for f32, f64 for f64). The block products
// use sgemm/dgemm (single-threaded inside the parallel tasks); the exp over a row uses AVX2+FMA
// when active_isa() allows it.
#pragma once
#include <cstdint>

namespace modulora {

// Rows of q per block, and keys per block in the forward and in the backward (measured on AVX-512:
// wider key blocks amortise the forward's per-block work; the backward's five products per block
// pair run best on 64 x 64 blocks).
constexpr int64_t kAttnBlockQ = 64;
constexpr int64_t kAttnBlockKForward = 128;
constexpr int64_t kAttnBlockKBackward = 64;

struct AttentionDims {
  int64_t B, T, S, Hq, Hkv, D;
  bool causal;
  double scale;
};

// Optional additive mask read as [B, Hq, T, S] through element strides (0 along broadcast dims).
template <class T>
struct AttentionMask {
  const T* data = nullptr;  // nullptr: no mask
  int64_t sb = 0, sh = 0, st = 0, ss = 0;
};

// How the backward splits its work over threads.
//   Fused: one task per (b, kv head) computes dk, dv of that head and dq of its query heads
//          (5 block products per block pair; parallel over B * Hkv only).
//   Split: one pass over (b, kv head, key block) for dk, dv and one over (b, q head, query block)
//          for dq (7 block products per block pair, but far more parallel tasks).
//   Auto:  Fused when B * Hkv keeps every thread busy, else Split.
enum class AttentionBackwardMode : int { Auto = 0, Fused = 1, Split = 2 };

// Writes out and lse. Requires Hq, Hkv, D >= 1, Hq % Hkv == 0 and, when causal, S >= T (the
// binding checks all of it).
template <class T>
void attention_forward(const AttentionDims& d, const T* q, const T* k, const T* v, const AttentionMask<T>& mask,
                       T* out, T* lse);

// Writes dq, dk, dv (overwritten, not accumulated) from the forward's out and lse and the output
// gradient dout.
template <class T>
void attention_backward(const AttentionDims& d, const T* q, const T* k, const T* v, const AttentionMask<T>& mask,
                        const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv,
                        AttentionBackwardMode mode);

// Which mode Auto picks for these dims with the current thread count.
AttentionBackwardMode attention_backward_mode(const AttentionDims& d);

}  // namespace modulora
