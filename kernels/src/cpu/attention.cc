// Fused attention forward and backward (see attention.h for the contract).
//
// Forward (FlashAttention-2, Dao 2023, Algorithm 1), one task per (b, q head, block of query rows):
//   for each key block j (causal: only blocks with a visible key):
//     S = scale · Q_i K_jᵀ + mask                     [br, nb]   (sgemm/dgemm)
//     m' = max(m, rowmax S);  P = exp(S − m');  l = l·e^(m−m') + rowsum P;  O = O·e^(m−m') + P V_j
//   out = O / l,  lse = m + log l.
// Backward (Algorithm 2), from q, k, v, out, lse and dout, with Drow = rowsum(dout ∘ out):
//   P = exp(S − lse),  dP = dO_i V_jᵀ,  dS = P ∘ (dP − Drow)
//   dV_j += Pᵀ dO_i,  dK_j += scale · dSᵀ Q_i,  dQ_i += scale · dS K_j
// Every accumulation target is owned by exactly one task (see AttentionBackwardMode), so the
// backward is race-free and its result does not depend on the thread count.
#include "cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <new>

#include "cpu/cpu_features.h"
#include "cpu/gemm.h"
#include "cpu/storage.h"
#include "cpu/threadpool.h"

#if defined(MODULORA_X86_DISPATCH)
#include <immintrin.h>
#endif

namespace modulora {
namespace {

constexpr int64_t kBQ = kAttnBlockQ;
constexpr int64_t kFK = kAttnBlockKForward;   // keys per forward block (and ld of its score block)
constexpr int64_t kBK = kAttnBlockKBackward;  // keys per backward block (and ld of its blocks)

template <class T>
constexpr T kInf = std::numeric_limits<T>::infinity();

// ---- Row kernels: the exp over a row of scores is the one hot loop outside GEMM ----------------

// Row-wise work on a block of scores [rows, n] with leading dimension ld.
template <class T>
struct RowOps {
  // out[r] = max of row r (-inf for n == 0).
  void (*max)(const T* s, int64_t rows, int64_t n, int64_t ld, T* out);
  // s[r][j] = exp(s[r][j] - sub[r]); sums[r] = sum of the new row. sub[r] = +inf zeroes row r.
  void (*exp_rows)(T* s, int64_t rows, int64_t n, int64_t ld, const T* sub, T* sums);
};

// NaN propagates: a row holding a NaN score has max NaN (a NaN in q, k or the mask must reach the
// output, as it does in the reference, not be skipped by the comparison).
template <class T>
void MaxRef(const T* s, int64_t rows, int64_t n, int64_t ld, T* out) {
  for (int64_t r = 0; r < rows; r++) {
    const T* row = s + r * ld;
    T m = -kInf<T>;
    for (int64_t j = 0; j < n; j++) m = row[j] > m || row[j] != row[j] ? row[j] : m;
    out[r] = m;  // once NaN, m stays NaN (x > NaN is false)
  }
}

template <class T>
void ExpRowsRef(T* s, int64_t rows, int64_t n, int64_t ld, const T* sub, T* sums) {
  for (int64_t r = 0; r < rows; r++) {
    T* row = s + r * ld;
    const T m = sub[r];
    T sum = 0;
    for (int64_t j = 0; j < n; j++) {
      const T e = std::exp(row[j] - m);
      row[j] = e;
      sum += e;
    }
    sums[r] = sum;
  }
}

#if defined(MODULORA_X86_DISPATCH)
// Exp8 without the NaN case (see Exp8).
__attribute__((target("avx2,fma"))) inline __m256 Exp8Finite(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3365447505531f);
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(under, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

// exp for 8 floats (Cephes expf: Cody-Waite reduction by ln 2, degree-6 polynomial, 2^n by
// exponent bits). About 1 ulp on the inputs attention sees (x <= 0); exactly 0 below -87.3,
// which includes -inf (masked keys); NaN for NaN (the clamp below would otherwise turn it into
// a finite number).
__attribute__((target("avx2,fma"))) inline __m256 Exp8(__m256 x) {
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  const __m256 y = Exp8Finite(x);
  return _mm256_blendv_ps(y, x, nan);
}

// Lanes [0, n) set, for n < 8.
__attribute__((target("avx2,fma"))) inline __m256i TailMask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx);
}

__attribute__((target("avx2,fma"))) float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) void MaxAvx2(const float* s, int64_t rows, int64_t n, int64_t ld, float* out) {
  for (int64_t i = 0; i < rows; i++) {
    const float* row = s + i * ld;
    __m256 m = _mm256_set1_ps(-kInf<float>);
    __m256 nan = _mm256_setzero_ps();  // lanes that saw a NaN (max_ps drops NaN operands)
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 x = _mm256_loadu_ps(row + j);
      m = _mm256_max_ps(m, x);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float r = _mm256_movemask_ps(nan) ? std::numeric_limits<float>::quiet_NaN() : _mm_cvtss_f32(h);
    for (; j < n; j++) r = row[j] > r || row[j] != row[j] ? row[j] : r;
    out[i] = r;
  }
}

__attribute__((target("avx2,fma"))) void ExpRowsAvx2(float* s, int64_t rows, int64_t n, int64_t ld, const float* sub,
                                                     float* sums) {
  const __m256i tail = TailMask(n % 8);
  for (int64_t i = 0; i < rows; i++) {
    float* row = s + i * ld;
    const __m256 vm = _mm256_set1_ps(sub[i]);
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
      _mm256_storeu_ps(row + j, e);
      acc = _mm256_add_ps(acc, e);
    }
    if (j < n) {  // the same polynomial on the tail, so every element is computed alike
      const __m256 e = _mm256_and_ps(Exp8(_mm256_sub_ps(_mm256_maskload_ps(row + j, tail), vm)), _mm256_castsi256_ps(tail));
      _mm256_maskstore_ps(row + j, tail, e);
      acc = _mm256_add_ps(acc, e);
    }
    sums[i] = HorizontalSum(acc);
  }
}
#endif

const RowOps<float>& Ops(float) {
  static const RowOps<float> ref{MaxRef<float>, ExpRowsRef<float>};
#if defined(MODULORA_X86_DISPATCH)
  static const RowOps<float> avx2{MaxAvx2, ExpRowsAvx2};
  if (active_isa() != Isa::Generic) return avx2;
#endif
  return ref;
}

// f64 runs for gradient checks and reference-quality results: plain loops and std::exp.
const RowOps<double>& Ops(double) {
  static const RowOps<double> ref{MaxRef<double>, ExpRowsRef<double>};
  return ref;
}

void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  dgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

// ---- Scratch and scheduling -----------------------------------------------------------------------

// One kernel-scratch block, counted by the storage stats. Allocated on the calling thread before
// any parallel region, so that a failed allocation throws where it can be reported.
template <class T>
class ScratchBlock {
 public:
  explicit ScratchBlock(int64_t count) : bytes_(static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(T)) {
    p_ = static_cast<T*>(scratch_alloc(bytes_));
    if (!p_) throw std::bad_alloc();
  }
  ~ScratchBlock() { scratch_free(p_, bytes_); }
  ScratchBlock(const ScratchBlock&) = delete;
  ScratchBlock& operator=(const ScratchBlock&) = delete;
  T* get() const { return p_; }

 private:
  size_t bytes_;
  T* p_;
};

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Threads worth using for `tasks` independent tasks.
int ThreadsFor(int64_t tasks) { return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), tasks))); }

// Runs f(task, thread) for every task in [0, n) on `nt` threads, handing tasks out in order from
// a shared counter (tasks differ in cost under the causal mask: list the heavy ones first).
template <class F>
void RunTasks(int64_t n, int nt, const F& f) {
  std::atomic<int64_t> next{0};
  parallel_tasks(nt, [&](int t, int) {
    for (;;) {
      const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) break;
      f(i, t);
    }
  });
}

// ---- The problem: index helpers, masking and score blocks --------------------------------------

template <class T>
struct Problem {
  AttentionDims d;
  const T* q;
  const T* k;
  const T* v;
  AttentionMask<T> mask;
  int64_t group, ldq, ldk, off;
  T scale;

  Problem(const AttentionDims& dims, const T* q_, const T* k_, const T* v_, const AttentionMask<T>& m)
      : d(dims), q(q_), k(k_), v(v_), mask(m), group(dims.Hq / dims.Hkv), ldq(dims.Hq * dims.D),
        ldk(dims.Hkv * dims.D), off(dims.S - dims.T), scale(static_cast<T>(dims.scale)) {}

  // Offsets of row (b, t, h) of a [B, T, Hq, D] array and row (b, j, kv) of a [B, S, Hkv, D] array.
  int64_t QRow(int64_t b, int64_t t, int64_t h) const { return ((b * d.T + t) * d.Hq + h) * d.D; }
  int64_t KRow(int64_t b, int64_t j, int64_t kv) const { return ((b * d.S + j) * d.Hkv + kv) * d.D; }
  int64_t LseIndex(int64_t b, int64_t h, int64_t t) const { return (b * d.Hq + h) * d.T + t; }

  // Keys [0, KeyEnd) can be visible to queries up to t_last.
  int64_t KeyEnd(int64_t t_last) const { return d.causal ? std::min(d.S, off + t_last + 1) : d.S; }
  // The first query row that can see key j0.
  int64_t QueryBegin(int64_t j0) const { return d.causal ? std::min(d.T, std::max<int64_t>(0, j0 - off)) : 0; }

  // s = scale · Q[t0 : t0+br] K[j0 : j0+nb]ᵀ + mask, with causally hidden keys at -inf. [br, nb], ld ld.
  void Scores(T* s, int64_t ld, int64_t b, int64_t h, int64_t t0, int64_t br, int64_t j0, int64_t nb) const {
    Gemm(false, true, br, nb, d.D, scale, q + QRow(b, t0, h), ldq, k + KRow(b, j0, h / group), ldk, T(0), s, ld);
    for (int64_t r = 0; r < br; r++) {
      T* row = s + r * ld;
      const int64_t t = t0 + r;
      if (mask.data) {
        const T* m = mask.data + b * mask.sb + h * mask.sh + t * mask.st + j0 * mask.ss;
        if (mask.ss == 1) {
          for (int64_t c = 0; c < nb; c++) row[c] += m[c];
        } else {
          for (int64_t c = 0; c < nb; c++) row[c] += m[c * mask.ss];
        }
      }
      if (d.causal) {
        for (int64_t c = std::max<int64_t>(0, off + t - j0 + 1); c < nb; c++) row[c] = -kInf<T>;
      }
    }
  }
};

// ---- Forward -------------------------------------------------------------------------------------

// Scratch of one forward thread: a score block, the output accumulator, the running max and sum,
// and per-row temporaries (block max, then the value subtracted before exp; block sum).
template <class T>
struct ForwardScratch {
  T *s, *o, *m, *l, *mx, *sum;
  static int64_t Size(int64_t D) { return kBQ * kFK + kBQ * D + 4 * kBQ; }
  ForwardScratch(T* base, int64_t D)
      : s(base), o(base + kBQ * kFK), m(o + kBQ * D), l(m + kBQ), mx(l + kBQ), sum(mx + kBQ) {}
};

template <class T>
void ForwardBlock(const Problem<T>& p, const RowOps<T>& ops, int64_t b, int64_t h, int64_t t0, int64_t br,
                  const ForwardScratch<T>& w, T* out, T* lse) {
  const int64_t D = p.d.D;
  std::fill(w.o, w.o + br * D, T(0));
  std::fill(w.m, w.m + br, -kInf<T>);
  std::fill(w.l, w.l + br, T(0));
  const int64_t kend = p.KeyEnd(t0 + br - 1);
  for (int64_t j0 = 0; j0 < kend; j0 += kFK) {
    const int64_t nb = std::min(kFK, kend - j0);
    p.Scores(w.s, kFK, b, h, t0, br, j0, nb);
    ops.max(w.s, br, nb, kFK, w.mx);
    // New running max per row; a row with nothing visible yet subtracts +inf (its P row is 0).
    // NaN (a NaN score in this block or an earlier one) stays NaN, so the row's output is NaN.
    for (int64_t r = 0; r < br; r++) {
      const T a = w.mx[r], b = w.m[r];
      const T mx = a != a || b != b ? std::numeric_limits<T>::quiet_NaN() : std::max(a, b);
      w.mx[r] = mx == -kInf<T> ? kInf<T> : mx;
    }
    ops.exp_rows(w.s, br, nb, kFK, w.mx, w.sum);
    for (int64_t r = 0; r < br; r++) {
      if (w.mx[r] == kInf<T>) continue;
      const T alpha = std::exp(w.m[r] - w.mx[r]);  // 0 on the row's first visible block
      w.l[r] = w.l[r] * alpha + w.sum[r];
      w.m[r] = w.mx[r];
      if (alpha != T(1)) {
        T* o = w.o + r * D;
        for (int64_t c = 0; c < D; c++) o[c] *= alpha;
      }
    }
    Gemm(false, false, br, D, nb, T(1), w.s, kFK, p.v + p.KRow(b, j0, h / p.group), p.ldk, T(1), w.o, D);
  }
  for (int64_t r = 0; r < br; r++) {
    T* dst = out + p.QRow(b, t0 + r, h);
    const T* o = w.o + r * D;
    const T l = w.l[r];
    if (l == T(0)) {  // every key masked: output 0, and lse = +inf makes the backward's P exactly 0
      std::fill(dst, dst + D, T(0));
      lse[p.LseIndex(b, h, t0 + r)] = kInf<T>;
    } else {  // (a NaN l — a NaN score — gives NaN out and lse, as the reference does)
      const T inv = T(1) / l;
      for (int64_t c = 0; c < D; c++) dst[c] = o[c] * inv;
      lse[p.LseIndex(b, h, t0 + r)] = w.m[r] + std::log(l);
    }
  }
}

// ---- Backward ------------------------------------------------------------------------------------

template <class T>
struct BackwardScratch {
  T *p, *ds, *sum;  // sum: unused row sums of the exp
  static int64_t Size() { return 2 * kBQ * kBK + kBQ; }
  explicit BackwardScratch(T* base) : p(base), ds(base + kBQ * kBK), sum(ds + kBQ * kBK) {}
};

template <class T>
struct BackwardArgs {
  const T* lse;
  const T* drow;  // [B, Hq, T]: rowsum(dout ∘ out)
  const T* dout;
  T *dq, *dk, *dv;
};

// One block pair (query rows [t0, t0+br) of head h, keys [j0, j0+nb)): P and dS into scratch,
// then dV_j and dK_j (and dQ_i when with_dq) updated in place.
template <class T>
void BackwardBlock(const Problem<T>& p, const RowOps<T>& ops, const BackwardArgs<T>& a, int64_t b, int64_t h,
                   int64_t t0, int64_t br, int64_t j0, int64_t nb, const BackwardScratch<T>& w, bool with_dkdv,
                   bool with_dq) {
  const int64_t D = p.d.D, kv = h / p.group;
  const int64_t qo = p.QRow(b, t0, h), ko = p.KRow(b, j0, kv);
  p.Scores(w.p, kBK, b, h, t0, br, j0, nb);
  ops.exp_rows(w.p, br, nb, kBK, a.lse + p.LseIndex(b, h, t0), w.sum);
  Gemm(false, true, br, nb, D, T(1), a.dout + qo, p.ldq, p.v + ko, p.ldk, T(0), w.ds, kBK);  // dP
  for (int64_t r = 0; r < br; r++) {
    const T di = a.drow[p.LseIndex(b, h, t0 + r)];
    const T* pr = w.p + r * kBK;
    T* dr = w.ds + r * kBK;
    for (int64_t c = 0; c < nb; c++) dr[c] = pr[c] * (dr[c] - di);
  }
  if (with_dkdv) {
    Gemm(true, false, nb, D, br, T(1), w.p, kBK, a.dout + qo, p.ldq, T(1), a.dv + ko, p.ldk);
    Gemm(true, false, nb, D, br, p.scale, w.ds, kBK, p.q + qo, p.ldq, T(1), a.dk + ko, p.ldk);
  }
  if (with_dq) Gemm(false, false, br, D, nb, p.scale, w.ds, kBK, p.k + ko, p.ldk, T(1), a.dq + qo, p.ldq);
}

// dk, dv of key block [j0, j0+nb) of kv head `kv`, summed over its query heads; also dq when with_dq.
template <class T>
void BackwardKeyBlock(const Problem<T>& p, const RowOps<T>& ops, const BackwardArgs<T>& a, int64_t b, int64_t kv,
                      int64_t j0, int64_t nb, const BackwardScratch<T>& w, bool with_dq) {
  const int64_t tbegin = p.QueryBegin(j0) / kBQ * kBQ;
  for (int64_t g = 0; g < p.group; g++) {
    const int64_t h = kv * p.group + g;
    for (int64_t t0 = tbegin; t0 < p.d.T; t0 += kBQ) {
      BackwardBlock(p, ops, a, b, h, t0, std::min(kBQ, p.d.T - t0), j0, nb, w, true, with_dq);
    }
  }
}

// dq of query rows [t0, t0+br) of head h.
template <class T>
void BackwardQueryBlock(const Problem<T>& p, const RowOps<T>& ops, const BackwardArgs<T>& a, int64_t b, int64_t h,
                        int64_t t0, int64_t br, const BackwardScratch<T>& w) {
  const int64_t kend = p.KeyEnd(t0 + br - 1);
  for (int64_t j0 = 0; j0 < kend; j0 += kBK) BackwardBlock(p, ops, a, b, h, t0, br, j0, std::min(kBK, kend - j0), w, false, true);
}

}  // namespace

AttentionBackwardMode attention_backward_mode(const AttentionDims& d) {
  const int64_t nt = num_threads(), groups = d.B * d.Hkv;
  return nt <= 1 || groups % nt == 0 || groups >= 4 * nt ? AttentionBackwardMode::Fused : AttentionBackwardMode::Split;
}

template <class T>
void attention_forward(const AttentionDims& d, const T* q, const T* k, const T* v, const AttentionMask<T>& mask,
                       T* out, T* lse) {
  const Problem<T> p(d, q, k, v, mask);
  const RowOps<T>& ops = Ops(T());
  const int64_t heads = d.B * d.Hq, qblocks = CeilDiv(d.T, kBQ), tasks = heads * qblocks;
  if (tasks == 0) return;
  const int nt = ThreadsFor(tasks);
  const int64_t per = ForwardScratch<T>::Size(d.D);
  ScratchBlock<T> scratch(per * nt);
  // Task i: query block (qblocks - 1 - i / heads) of head i % heads: the last (heaviest) blocks first.
  RunTasks(tasks, nt, [&](int64_t i, int t) {
    const int64_t bh = i % heads, qb = qblocks - 1 - i / heads;
    const int64_t t0 = qb * kBQ;
    ForwardBlock(p, ops, bh / d.Hq, bh % d.Hq, t0, std::min(kBQ, d.T - t0), ForwardScratch<T>(scratch.get() + t * per, d.D),
                 out, lse);
  });
}

template <class T>
void attention_backward(const AttentionDims& d, const T* q, const T* k, const T* v, const AttentionMask<T>& mask,
                        const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv, AttentionBackwardMode mode) {
  const Problem<T> p(d, q, k, v, mask);
  const RowOps<T>& ops = Ops(T());
  std::fill(dq, dq + d.B * d.T * d.Hq * d.D, T(0));
  std::fill(dk, dk + d.B * d.S * d.Hkv * d.D, T(0));
  std::fill(dv, dv + d.B * d.S * d.Hkv * d.D, T(0));
  if (d.B * d.T * d.S * d.D == 0) return;

  // Drow[b, h, t] = <dout[b, t, h, :], out[b, t, h, :]>
  ScratchBlock<T> drow(d.B * d.Hq * d.T);
  parallel_for(d.B * d.T, std::max<int64_t>(1, 4096 / (d.Hq * d.D)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t b = r / d.T, t = r % d.T;
      for (int64_t h = 0; h < d.Hq; h++) {
        const T* x = dout + p.QRow(b, t, h);
        const T* y = out + p.QRow(b, t, h);
        T s = 0;
        for (int64_t c = 0; c < d.D; c++) s += x[c] * y[c];
        drow.get()[p.LseIndex(b, h, t)] = s;
      }
    }
  });
  const BackwardArgs<T> a{lse, drow.get(), dout, dq, dk, dv};
  const int64_t kblocks = CeilDiv(d.S, kBK), qblocks = CeilDiv(d.T, kBQ), groups = d.B * d.Hkv;
  if (mode == AttentionBackwardMode::Auto) mode = attention_backward_mode(d);

  if (mode == AttentionBackwardMode::Fused) {
    // Task (b, kv): owns dk, dv of that kv head and dq of its query heads.
    const int nt = ThreadsFor(groups);
    ScratchBlock<T> scratch(BackwardScratch<T>::Size() * nt);
    RunTasks(groups, nt, [&](int64_t i, int t) {
      const BackwardScratch<T> w(scratch.get() + t * BackwardScratch<T>::Size());
      for (int64_t j0 = 0; j0 < d.S; j0 += kBK) BackwardKeyBlock(p, ops, a, i / d.Hkv, i % d.Hkv, j0, std::min(kBK, d.S - j0), w, true);
    });
    return;
  }
  // Split. Pass 1, task (b, kv, key block): dk, dv. Early key blocks see the most queries: first.
  const int64_t tasks1 = groups * kblocks, heads = d.B * d.Hq, tasks2 = heads * qblocks;
  const int nt = ThreadsFor(std::max(tasks1, tasks2));
  ScratchBlock<T> scratch(BackwardScratch<T>::Size() * nt);
  RunTasks(tasks1, ThreadsFor(tasks1), [&](int64_t i, int t) {
    const int64_t g = i % groups, j0 = i / groups * kBK;
    BackwardKeyBlock(p, ops, a, g / d.Hkv, g % d.Hkv, j0, std::min(kBK, d.S - j0),
                     BackwardScratch<T>(scratch.get() + t * BackwardScratch<T>::Size()), false);
  });
  // Pass 2, task (b, h, query block): dq. Late query blocks see the most keys: first.
  RunTasks(tasks2, ThreadsFor(tasks2), [&](int64_t i, int t) {
    const int64_t bh = i % heads, t0 = (qblocks - 1 - i / heads) * kBQ;
    BackwardQueryBlock(p, ops, a, bh / d.Hq, bh % d.Hq, t0, std::min(kBQ, d.T - t0),
                       BackwardScratch<T>(scratch.get() + t * BackwardScratch<T>::Size()));
  });
}

template void attention_forward<float>(const AttentionDims&, const float*, const float*, const float*,
                                       const AttentionMask<float>&, float*, float*);
template void attention_forward<double>(const AttentionDims&, const double*, const double*, const double*,
                                        const AttentionMask<double>&, double*, double*);
template void attention_backward<float>(const AttentionDims&, const float*, const float*, const float*,
                                        const AttentionMask<float>&, const float*, const float*, const float*, float*,
                                        float*, float*, AttentionBackwardMode);
template void attention_backward<double>(const AttentionDims&, const double*, const double*, const double*,
                                         const AttentionMask<double>&, const double*, const double*, const double*,
                                         double*, double*, double*, AttentionBackwardMode);

}  // namespace modulora
