// Fused LLaMA-block kernels (see nn.h): RMSNorm, RoPE, SwiGLU, dropout and the AdamW step.
// Every loop is split over rows or elements with parallel_for. The one sum across rows (dw of
// RMSNorm) goes through fixed chunks of rows whose partials are added in order, so no result
// depends on the number of threads.
#include "cpu/nn.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/philox.h"
#include "cpu/storage.h"
#include "cpu/threadpool.h"

namespace modulora {
namespace {

// Elements per parallel chunk for streaming work (about 64 KiB of f32), and for work with a
// transcendental function per element.
constexpr int64_t kGrain = 16384;
constexpr int64_t kTranscendentalGrain = 4096;
// RMSNorm dw: rows are summed in chunks of at least kDwMinChunkRows rows, at most kDwMaxChunks
// chunks (which bounds the scratch of partial sums to kDwMaxChunks * D doubles).
constexpr int64_t kDwMinChunkRows = 16;
constexpr int64_t kDwMaxChunks = 64;

// Rows per chunk so that a chunk holds about `grain` elements.
int64_t RowGrain(int64_t row_len, int64_t grain) { return std::max<int64_t>(1, grain / std::max<int64_t>(1, row_len)); }

// Logistic without a branch on the sign (a row of mixed signs would mispredict every other
// element). It stays exact in both tails: for x -> -inf, exp(-x) overflows to +inf and
// 1 / (1 + inf) = 0, the right limit, with no inf/inf or 0*inf; for x -> +inf, exp(-x) -> 0 and
// the result rounds to 1. In between the relative error is a few ulps.
template <class T>
inline T Sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// Sum of squares of a row in double, four accumulators (fixed order: deterministic).
template <class T>
double SumSquares(const T* x, int64_t d) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t j = 0;
  for (; j + 4 <= d; j += 4) {
    const double x0 = x[j], x1 = x[j + 1], x2 = x[j + 2], x3 = x[j + 3];
    a0 += x0 * x0;
    a1 += x1 * x1;
    a2 += x2 * x2;
    a3 += x3 * x3;
  }
  for (; j < d; j++) a0 += static_cast<double>(x[j]) * x[j];
  return (a0 + a1) + (a2 + a3);
}

// sum_j w_j dy_j x_j in double, four accumulators (fixed order).
template <class T>
double DotWdyX(const T* w, const T* dy, const T* x, int64_t d) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t j = 0;
  for (; j + 4 <= d; j += 4) {
    a0 += static_cast<double>(w[j]) * dy[j] * x[j];
    a1 += static_cast<double>(w[j + 1]) * dy[j + 1] * x[j + 1];
    a2 += static_cast<double>(w[j + 2]) * dy[j + 2] * x[j + 2];
    a3 += static_cast<double>(w[j + 3]) * dy[j + 3] * x[j + 3];
  }
  for (; j < d; j++) a0 += static_cast<double>(w[j]) * dy[j] * x[j];
  return (a0 + a1) + (a2 + a3);
}

// RAII kernel scratch, counted in memoryStats().scratchBytes; data() is null if allocation failed.
class Scratch {
 public:
  explicit Scratch(size_t bytes) : bytes_(bytes), p_(bytes ? scratch_alloc(bytes) : nullptr) {}
  ~Scratch() {
    if (p_) scratch_free(p_, bytes_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  double* data() const { return static_cast<double*>(p_); }

 private:
  size_t bytes_;
  void* p_;
};

}  // namespace

// --- RMSNorm ------------------------------------------------------------------------------------

template <class T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t d, double eps) {
  parallel_for(rows, RowGrain(d, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const T* xr = x + r * d;
      T* yr = y + r * d;
      const T rs = static_cast<T>(1.0 / std::sqrt(SumSquares(xr, d) / static_cast<double>(d) + eps));
      rstd[r] = rs;
      for (int64_t j = 0; j < d; j++) yr[j] = w[j] * (xr[j] * rs);  // HF order: weight * (x * rstd)
    }
  });
}

template <class T>
bool rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, T* dx, T* dw, int64_t rows, int64_t d) {
  // dw is summed in fixed chunks of rows (the chunking depends on `rows` only, never on the thread
  // count): each chunk's partial sum goes to its own row of scratch, then the partials are added
  // in chunk order. One pass over x and dy serves both dx and dw.
  const int64_t chunk_rows = std::max(kDwMinChunkRows, (rows + kDwMaxChunks - 1) / kDwMaxChunks);
  const int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
  Scratch partial(dw ? static_cast<size_t>(chunks * d) * sizeof(double) : 0);
  if (dw && chunks > 0 && !partial.data()) return false;
  double* part = partial.data();
  parallel_for(chunks, RowGrain(chunk_rows * d, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t ch = b; ch < e; ch++) {
      double* acc = dw ? part + ch * d : nullptr;
      if (acc) std::fill(acc, acc + d, 0.0);
      const int64_t r1 = std::min(rows, (ch + 1) * chunk_rows);
      for (int64_t r = ch * chunk_rows; r < r1; r++) {
        const T* xr = x + r * d;
        const T* gr = dy + r * d;
        T* dxr = dx + r * d;
        // y_j = w_j x_j r with r = (mean(x^2) + eps)^-1/2 and dr/dx_k = -r^3 x_k / d, so
        // dx_k = r w_k dy_k - x_k r^3 / d * sum_j w_j dy_j x_j.
        const double rs = rstd[r];
        const double k = rs * rs * rs * DotWdyX(w, gr, xr, d) / static_cast<double>(d);
        if (acc) {  // one loop for both, so the row streams from memory once
          for (int64_t j = 0; j < d; j++) {
            const double xj = xr[j], gj = gr[j];
            dxr[j] = static_cast<T>(rs * w[j] * gj - k * xj);
            acc[j] += gj * (xj * rs);
          }
        } else {
          for (int64_t j = 0; j < d; j++) dxr[j] = static_cast<T>(rs * w[j] * gr[j] - k * xr[j]);
        }
      }
    }
  });
  if (!dw) return true;
  parallel_for(d, RowGrain(chunks, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; j++) {
      double s = 0;
      for (int64_t ch = 0; ch < chunks; ch++) s += part[ch * d + j];
      dw[j] = static_cast<T>(s);
    }
  });
  return true;
}

// --- RoPE ---------------------------------------------------------------------------------------

template <class T>
void rope_kernel(const T* x, const int64_t xs[3], int64_t B, int64_t Tn, int64_t H, int64_t D, const int32_t* pos,
                 bool pos_batched, const double* inv_freq, bool inverse, T* out) {
  const int64_t half = D / 2;
  const int64_t sb = xs[0], st = xs[1], sh = xs[2];
  parallel_for(B * Tn, RowGrain(H * D, kGrain), [&](int64_t b, int64_t e) {
    std::vector<T> cs(static_cast<size_t>(D));  // cos [0, half), sin [half, D) of one position
    for (int64_t r = b; r < e; r++) {
      const int64_t bi = r / Tn, t = r % Tn;
      const double p = pos_batched ? pos[r] : pos[t];
      for (int64_t i = 0; i < half; i++) {
        const double a = p * inv_freq[i];  // the angle in double, then cos/sin rounded once
        cs[i] = static_cast<T>(std::cos(a));
        cs[half + i] = static_cast<T>(inverse ? -std::sin(a) : std::sin(a));
      }
      const T* xrow = x + bi * sb + t * st;
      T* orow = out + r * H * D;
      for (int64_t h = 0; h < H; h++) {
        const T* xh = xrow + h * sh;
        T* oh = orow + h * D;
        for (int64_t i = 0; i < half; i++) {
          const T x1 = xh[i], x2 = xh[half + i], c = cs[i], s = cs[half + i];
          oh[i] = x1 * c - x2 * s;
          oh[half + i] = x2 * c + x1 * s;
        }
      }
    }
  });
}

// --- SwiGLU -------------------------------------------------------------------------------------

template <class T>
void swiglu_forward(const T* gate, const T* up, T* out, int64_t n) {
  parallel_for(n, kTranscendentalGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const T g = gate[i];
      out[i] = g * Sigmoid(g) * up[i];
    }
  });
}

template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dy, T* dgate, T* dup, int64_t n) {
  parallel_for(n, kTranscendentalGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const T g = gate[i], u = up[i], d = dy[i];
      const T s = Sigmoid(g);
      dup[i] = d * (g * s);
      dgate[i] = d * u * (s * (T(1) + g * (T(1) - s)));
    }
  });
}

// --- Dropout ------------------------------------------------------------------------------------

// Philox blocks per batch: independent counters side by side, so the ten rounds of several blocks
// overlap (and vectorise: each round is 32x32->64-bit multiplies and xors).
constexpr int kPhiloxLanes = 8;

template <class T>
void dropout_kernel(const T* x, T* out, int64_t n, double p, uint32_t k0, uint32_t k1, uint64_t offset) {
  // u = (w >> 8) / 2^24 >= p  <=>  (w >> 8) >= p * 2^24, exactly, in double; as an integer
  // threshold: (w >> 8) >= ceil(p * 2^24).
  const uint32_t threshold = static_cast<uint32_t>(std::ceil(p * 16777216.0));
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  const int64_t blocks = (n + 3) / 4;
  parallel_for(blocks, kGrain / 4, [&](int64_t b, int64_t e) {
    uint32_t c0[kPhiloxLanes], c1[kPhiloxLanes], c2[kPhiloxLanes], c3[kPhiloxLanes];
    for (int64_t blk = b; blk < e; blk += kPhiloxLanes) {
      const int lanes = static_cast<int>(std::min<int64_t>(kPhiloxLanes, e - blk));
      for (int j = 0; j < kPhiloxLanes; j++) {
        const uint64_t c = offset + static_cast<uint64_t>(blk + j);
        c0[j] = static_cast<uint32_t>(c);
        c1[j] = static_cast<uint32_t>(c >> 32);
        c2[j] = kPhiloxStreamDropout;
        c3[j] = 0;
      }
      uint32_t key0 = k0, key1 = k1;
      for (int r = 0; r < 10; r++) {  // philox4x32 (philox.h), one round for all lanes
        for (int j = 0; j < kPhiloxLanes; j++) {
          const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0[j];
          const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2[j];
          const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[j] ^ key0;
          const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[j] ^ key1;
          c1[j] = static_cast<uint32_t>(p1);
          c3[j] = static_cast<uint32_t>(p0);
          c0[j] = n0;
          c2[j] = n2;
        }
        key0 += 0x9E3779B9u;
        key1 += 0xBB67AE85u;
      }
      for (int j = 0; j < lanes; j++) {
        const uint32_t w[4] = {c0[j], c1[j], c2[j], c3[j]};
        const int64_t i0 = (blk + j) * 4, len = std::min<int64_t>(4, n - i0);
        for (int64_t k = 0; k < len; k++) out[i0 + k] = (w[k] >> 8) >= threshold ? x[i0 + k] * scale : T(0);
      }
    }
  });
}

// --- AdamW --------------------------------------------------------------------------------------

template <class T>
void adamw_step(T* param, const T* grad, T* m, T* v, int64_t n, const AdamwHyper& h) {
  const double t = static_cast<double>(h.step);
  const T decay = static_cast<T>(1.0 - h.lr * h.weight_decay);
  const T b1 = static_cast<T>(h.beta1), c1 = static_cast<T>(1.0 - h.beta1);
  const T b2 = static_cast<T>(h.beta2), c2 = static_cast<T>(1.0 - h.beta2);
  const T step_size = static_cast<T>(h.lr / (1.0 - std::pow(h.beta1, t)));
  const T inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(h.beta2, t)));
  const T eps = static_cast<T>(h.eps);
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const T g = grad[i];
      const T mi = b1 * m[i] + c1 * g;
      const T vi = b2 * v[i] + c2 * (g * g);
      m[i] = mi;
      v[i] = vi;
      param[i] = param[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
    }
  });
}

// --- instantiations -----------------------------------------------------------------------------

#define MODULORA_NN_INSTANTIATE(T)                                                                          \
  template void rmsnorm_forward<T>(const T*, const T*, T*, T*, int64_t, int64_t, double);                   \
  template bool rmsnorm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t, int64_t);      \
  template void rope_kernel<T>(const T*, const int64_t[3], int64_t, int64_t, int64_t, int64_t,              \
                               const int32_t*, bool, const double*, bool, T*);                              \
  template void swiglu_forward<T>(const T*, const T*, T*, int64_t);                                         \
  template void swiglu_backward<T>(const T*, const T*, const T*, T*, T*, int64_t);                          \
  template void dropout_kernel<T>(const T*, T*, int64_t, double, uint32_t, uint32_t, uint64_t);             \
  template void adamw_step<T>(T*, const T*, T*, T*, int64_t, const AdamwHyper&);

MODULORA_NN_INSTANTIATE(float)
MODULORA_NN_INSTANTIATE(double)
#undef MODULORA_NN_INSTANTIATE

}  // namespace modulora
