// OPTQ/GPTQ column loop and the inverse-Hessian factor (see optq.h).
//
// Layout: W is copied to f64 [out, in] in processing order (permuted by act-order). Every row is
// independent once Hinv is known, so the in-block column loop runs over rows on the thread pool;
// the trailing update of a block, W[:, e:] −= Err[:, b:e] · Hinv[b:e, e:], is one DGEMM.
#include "cpu/optq.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/threadpool.h"

namespace modulora {
namespace {

// Σ a[k] b[k] with four partial sums (lets the compiler keep two SSE lanes busy).
double Dot(const double* a, const double* b, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    s0 += a[k] * b[k];
    s1 += a[k + 1] * b[k + 1];
    s2 += a[k + 2] * b[k + 2];
    s3 += a[k + 3] * b[k + 3];
  }
  for (; k < n; k++) s0 += a[k] * b[k];
  return (s0 + s1) + (s2 + s3);
}

// GPTQ's min-max rule in f32 (the same rule as @modulora/quantizer-rtn): the range contains 0,
// both 0 → [−1, 1]; round half to even (nearbyint in the default rounding mode).
struct GroupParams {
  float scale;
  int zero;
};

GroupParams MinMaxParams(float xmin, float xmax, int bits, bool symmetric) {
  const int maxq = (1 << bits) - 1;
  xmin = std::min(xmin, 0.0f);
  xmax = std::max(xmax, 0.0f);
  if (symmetric) {
    xmax = std::max(std::fabs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  const float range = xmax - xmin;
  const float scale = range / static_cast<float>(maxq);
  const int zero = symmetric ? (maxq + 1) / 2 : static_cast<int>(std::nearbyint(-xmin / scale));
  return {scale, zero};
}

inline int Code(float w, GroupParams g, int maxq) {
  const int q = static_cast<int>(std::nearbyint(w / g.scale)) + g.zero;
  return std::min(std::max(q, 0), maxq);
}

}  // namespace

bool cholesky_lower(double* a, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double* li = a + i * n;
    for (int64_t j = 0; j < i; j++) li[j] = (li[j] - Dot(li, a + j * n, j)) / a[j * n + j];
    const double d = li[i] - Dot(li, li, i);
    if (!(d > 0) || !std::isfinite(d)) return false;
    li[i] = std::sqrt(d);
    std::fill(li + i + 1, li + n, 0.0);
  }
  return true;
}

bool optq_hessian_inverse(const double* h, int64_t n, double* hinv) {
  std::vector<double> l(h, h + n * n);
  if (!cholesky_lower(l.data(), n)) return false;
  // X = L⁻¹ (lower), row by row: X[i, :] = (e_i − Σ_{k<i} L[i,k] X[k, :]) / L[i,i].
  std::vector<double> x(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; i++) {
    double* xi = x.data() + i * n;
    xi[i] = 1.0;
    const double* li = l.data() + i * n;
    for (int64_t k = 0; k < i; k++) {
      const double c = li[k];
      const double* xk = x.data() + k * n;
      for (int64_t j = 0; j <= k; j++) xi[j] -= c * xk[j];
    }
    const double inv = 1.0 / li[i];
    for (int64_t j = 0; j <= i; j++) xi[j] *= inv;
  }
  // H⁻¹ = Xᵀ X, then its lower factor; the upper factor is that one transposed.
  dgemm(true, false, n, n, n, 1.0, x.data(), n, x.data(), n, 0.0, l.data(), n);
  if (!cholesky_lower(l.data(), n)) return false;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) hinv[i * n + j] = j >= i ? l[j * n + i] : 0.0;
  return true;
}

OptqStatus optq_quantize(const float* w, double* h, int64_t out, int64_t in, const OptqParams& p, uint8_t* codes,
                         float* scales, uint8_t* zeros, int32_t* g_idx) {
  const int maxq = (1 << p.bits) - 1;
  const int64_t gs = p.group_size;
  const int64_t groups = in / gs;

  // Dead inputs (never active in calibration): H[i,i] = 1, W[:, i] = 0.
  std::vector<char> dead(static_cast<size_t>(in));
  for (int64_t i = 0; i < in; i++) {
    dead[i] = h[i * in + i] == 0.0;
    if (dead[i]) h[i * in + i] = 1.0;
  }
  // Processing order: descending diag(H) with act-order (stable, so ties keep column order).
  std::vector<int64_t> perm(static_cast<size_t>(in));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (p.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return h[a * in + a] > h[b * in + b]; });
  }

  // Static groups: parameters of every group of original columns, from the original W.
  std::vector<GroupParams> fixed;
  if (p.static_groups) {
    fixed.resize(static_cast<size_t>(out * groups));
    for (int64_t r = 0; r < out; r++)
      for (int64_t g = 0; g < groups; g++) {
        float lo = 0, hi = 0;
        for (int64_t c = g * gs; c < (g + 1) * gs; c++) {
          const float v = dead[c] ? 0.0f : w[r * in + c];
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
        fixed[r * groups + g] = MinMaxParams(lo, hi, p.bits, p.symmetric);
      }
  }

  // W and H in processing order, f64; damping.
  std::vector<double> wp(static_cast<size_t>(out * in));
  for (int64_t r = 0; r < out; r++)
    for (int64_t j = 0; j < in; j++) wp[r * in + j] = dead[perm[j]] ? 0.0 : static_cast<double>(w[r * in + perm[j]]);
  std::vector<double> hp(static_cast<size_t>(in * in));
  double mean_diag = 0;
  for (int64_t i = 0; i < in; i++) {
    for (int64_t j = 0; j < in; j++) hp[i * in + j] = h[perm[i] * in + perm[j]];
    mean_diag += hp[i * in + i];
  }
  mean_diag /= static_cast<double>(in);
  for (int64_t i = 0; i < in; i++) hp[i * in + i] += p.percdamp * mean_diag;
  std::vector<double> hinv(static_cast<size_t>(in * in));
  if (!optq_hessian_inverse(hp.data(), in, hinv.data())) return OptqStatus::kNotPositiveDefinite;
  hp.clear();
  hp.shrink_to_fit();

  // g_idx: group of each original column.
  for (int64_t j = 0; j < in; j++) g_idx[perm[j]] = static_cast<int32_t>(p.static_groups || !p.act_order ? perm[j] / gs : j / gs);
  if (p.static_groups)
    for (int64_t i = 0; i < out * groups; i++) {
      scales[i] = fixed[i].scale;
      zeros[i] = static_cast<uint8_t>(fixed[i].zero);
    }

  const int64_t bsz = std::max<int64_t>(1, p.block_size);
  std::vector<double> err(static_cast<size_t>(out * bsz));
  for (int64_t b = 0; b < in; b += bsz) {
    const int64_t e = std::min(in, b + bsz);
    const int64_t cnt = e - b;
    parallel_for(out, std::max<int64_t>(1, 4096 / (cnt * cnt + 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r++) {
        double* wr = wp.data() + r * in;
        double* er = err.data() + r * bsz;
        GroupParams gp{1.0f, 0};
        for (int64_t i = b; i < e; i++) {
          if (p.static_groups) {
            gp = fixed[r * groups + perm[i] / gs];
          } else if (i % gs == 0) {
            // The group's weights as they are now: columns of this block carry the in-block
            // updates; later ones still lack this block's pending lazy update, added here, so the
            // parameters are those of the unblocked algorithm.
            float lo = 0, hi = 0;
            for (int64_t c = i; c < i + gs; c++) {
              double v = wr[c];
              if (c >= e)
                for (int64_t k = b; k < i; k++) v -= er[k - b] * hinv[k * in + c];
              lo = std::min(lo, static_cast<float>(v));
              hi = std::max(hi, static_cast<float>(v));
            }
            gp = MinMaxParams(lo, hi, p.bits, p.symmetric);
            scales[r * groups + i / gs] = gp.scale;
            zeros[r * groups + i / gs] = static_cast<uint8_t>(gp.zero);
          } else if (i == b) {
            gp = {scales[r * groups + i / gs], zeros[r * groups + i / gs]};  // a group begun in an earlier block
          }
          const float wf = static_cast<float>(wr[i]);
          const int q = Code(wf, gp, maxq);
          codes[r * in + perm[i]] = static_cast<uint8_t>(q);
          const float deq = gp.scale * static_cast<float>(q - gp.zero);
          const double* hrow = hinv.data() + i * in;
          const double ei = (wr[i] - static_cast<double>(deq)) / hrow[i];
          er[i - b] = ei;
          for (int64_t c = i + 1; c < e; c++) wr[c] -= ei * hrow[c];
        }
      }
    });
    if (e < in) dgemm(false, false, out, in - e, cnt, -1.0, err.data(), bsz, hinv.data() + b * in + e, in, 1.0, wp.data() + e, in);
  }
  return OptqStatus::kOk;
}

}  // namespace modulora
