// CUDA kernels of the fused LLaMA-block ops (see nn.h): RMSNorm forward/backward, RoPE, SwiGLU
// forward/backward and dropout. The arithmetic follows src/cpu/nn.cc line by line; the sums are
// block reductions in a fixed order (deterministic), and the one sum across rows (RMSNorm's dw)
// goes through per-chunk partials added in chunk order (no float atomics).
#include <cmath>
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/nn.h"

namespace modulora {
namespace cuda {
namespace {

constexpr int kThreads = 256;        // threads per block of every kernel here

// RMSNorm dw: rows per chunk at least kDwMinChunkRows, at most kDwMaxChunks chunks.
constexpr int64_t kDwMinChunkRows = 16;
constexpr int64_t kDwMaxChunks = 256;


// Logistic as the CPU's Sigmoid: 1 / (1 + exp(-x)), exact in both tails.
template <class A>
__device__ __forceinline__ A sigmoid(A x) {
  return A(1) / (A(1) + exp_a(-x));
}

// --- RMSNorm ---------------------------------------------------------------------------------------

template <class T>
__global__ void __launch_bounds__(kThreads) rmsnorm_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                                    T* __restrict__ y, Acc<T>* __restrict__ rstd,
                                                                    int64_t rows, int64_t d, double eps) {
  using A = Acc<T>;
  __shared__ double sh[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    double acc = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const double v = static_cast<double>(ld(xr + j));
      acc += v * v;
    }
    const double ss = block_sum(acc, sh);
    const A rs = static_cast<A>(1.0 / sqrt(ss / static_cast<double>(d) + eps));
    if (threadIdx.x == 0) rstd[r] = rs;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) st(yr + j, ld(w + j) * (ld(xr + j) * rs));  // w * (x * rstd)
  }
}

// dx of one row per block; the dot Σ w*dy*x and the whole dx expression in f64 (as the CPU).
template <class T>
__global__ void __launch_bounds__(kThreads) rmsnorm_dx_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                               const Acc<T>* __restrict__ rstd, const T* __restrict__ dy,
                                                               T* __restrict__ dx, int64_t rows, int64_t d) {
  using A = Acc<T>;
  __shared__ double sh[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * d;
    const T* gr = dy + r * d;
    T* dxr = dx + r * d;
    double acc = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      acc += static_cast<double>(ld(w + j)) * static_cast<double>(ld(gr + j)) * static_cast<double>(ld(xr + j));
    }
    const double dot = block_sum(acc, sh);
    const double rs = static_cast<double>(rstd[r]);
    const double k = rs * rs * rs * dot / static_cast<double>(d);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const double v = rs * static_cast<double>(ld(w + j)) * static_cast<double>(ld(gr + j)) -
                       k * static_cast<double>(ld(xr + j));
      st(dxr + j, static_cast<A>(v));  // f64 → Acc<T> → T, the CPU's roundings
    }
  }
}

// Partial dw of chunk blockIdx.y for columns [blockIdx.x * blockDim.x, ...): Σ dy * (x * rs) in f64
// over the chunk's rows, in row order.
template <class T>
__global__ void __launch_bounds__(kThreads) rmsnorm_dw_partial_kernel(const T* __restrict__ x,
                                                                       const Acc<T>* __restrict__ rstd,
                                                                       const T* __restrict__ dy,
                                                                       double* __restrict__ part, int64_t rows,
                                                                       int64_t d, int64_t chunk_rows) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= d) return;
  const int64_t ch = blockIdx.y;
  const int64_t r0 = ch * chunk_rows;
  const int64_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  double acc = 0;
  for (int64_t r = r0; r < r1; r++) {
    const double rs = static_cast<double>(rstd[r]);
    const double xj = static_cast<double>(ld(x + r * d + j)), gj = static_cast<double>(ld(dy + r * d + j));
    acc += gj * (xj * rs);
  }
  part[ch * d + j] = acc;
}

template <class T>
__global__ void __launch_bounds__(kThreads) rmsnorm_dw_final_kernel(const double* __restrict__ part, T* __restrict__ dw,
                                                                     int64_t d, int64_t chunks) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < d;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0;
    for (int64_t ch = 0; ch < chunks; ch++) s += part[ch * d + j];
    st(dw + j, static_cast<Acc<T>>(s));
  }
}

// --- RoPE ------------------------------------------------------------------------------------------

// One thread per (b, t, i < D/2): cos/sin of one angle, applied to every head.
template <class T>
__global__ void __launch_bounds__(kThreads) rope_kernel(const T* __restrict__ x, int64_t sb, int64_t stt, int64_t sh,
                                                         int64_t B, int64_t Tn, int64_t H, int64_t D,
                                                         const int32_t* __restrict__ pos, bool batched,
                                                         const double* __restrict__ inv_freq, bool inverse,
                                                         T* __restrict__ out) {
  using A = Acc<T>;
  const int64_t half = D / 2;
  const int64_t total = B * Tn * half;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < total;
       u += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = u / half, i = u - r * half;
    const int64_t bi = r / Tn, t = r - bi * Tn;
    const double p = static_cast<double>(batched ? pos[r] : pos[t]);
    const double a = p * inv_freq[i];  // the angle in f64, then cos/sin rounded once
    double sa, ca;
    sincos(a, &sa, &ca);
    const A c = static_cast<A>(ca);
    const A s = static_cast<A>(inverse ? -sa : sa);
    const T* xrow = x + bi * sb + t * stt;
    T* orow = out + r * H * D;
    for (int64_t h = 0; h < H; h++) {
      const T* xh = xrow + h * sh;
      T* oh = orow + h * D;
      const A x1 = ld(xh + i), x2 = ld(xh + half + i);
      st(oh + i, x1 * c - x2 * s);
      st(oh + half + i, x2 * c + x1 * s);
    }
  }
}

// --- SwiGLU ----------------------------------------------------------------------------------------

template <class T>
__global__ void __launch_bounds__(kThreads) swiglu_forward_kernel(const T* __restrict__ gate, const T* __restrict__ up,
                                                                   T* __restrict__ out, int64_t n) {
  using A = Acc<T>;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const A g = ld(gate + i);
    st(out + i, g * sigmoid(g) * ld(up + i));
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) swiglu_backward_kernel(const T* __restrict__ gate, const T* __restrict__ up,
                                                                    const T* __restrict__ dy, T* __restrict__ dgate,
                                                                    T* __restrict__ dup, int64_t n) {
  using A = Acc<T>;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const A g = ld(gate + i), u = ld(up + i), d = ld(dy + i);
    const A s = sigmoid(g);
    st(dup + i, d * (g * s));
    st(dgate + i, d * u * (s * (A(1) + g * (A(1) - s))));
  }
}

// --- Dropout ---------------------------------------------------------------------------------------

// One thread per Philox block of 4 elements.
template <class T>
__global__ void __launch_bounds__(kThreads) dropout_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t n,
                                                            uint32_t threshold, Acc<T> scale, uint32_t k0, uint32_t k1,
                                                            uint64_t offset) {
  using A = Acc<T>;
  const int64_t blocks = (n + 3) / 4;
  for (int64_t blk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; blk < blocks;
       blk += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t c = offset + static_cast<uint64_t>(blk);
    uint32_t w[4];
    philox4x32(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 2u /* kPhiloxStreamDropout */, 0u, k0, k1, w);
    const int64_t i0 = blk * 4;
    const int64_t len = n - i0 < 4 ? n - i0 : 4;
    for (int64_t k = 0; k < len; k++) {
      st(out + i0 + k, (w[k] >> 8) >= threshold ? ld(x + i0 + k) * scale : A(0));
    }
  }
}

}  // namespace

// --- launchers -------------------------------------------------------------------------------------

void RmsnormForward(Context& c, int code, const void* x, const void* w, void* y, void* rstd, int64_t rows, int64_t d,
                    double eps) {
  if (rows <= 0 || d <= 0) return;
  MODULORA_DISPATCH_FLOAT(code, "rmsnorm", T, {
    rmsnorm_forward_kernel<T><<<GridFor(rows), kThreads, 0, c.stream()>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<T*>(y), static_cast<Acc<T>*>(rstd), rows, d, eps);
  });
}

void RmsnormBackward(Context& c, int code, const void* x, const void* w, const void* rstd, const void* dy, void* dx,
                     void* dw, int64_t rows, int64_t d) {
  if (d <= 0) return;
  if (rows <= 0) {
    if (dw) MODULORA_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(d) * CodeSize(code), c.stream()));  // a sum over no rows
    return;
  }
  MODULORA_DISPATCH_FLOAT(code, "rmsnormGrad", T, {
    rmsnorm_dx_kernel<T><<<GridFor(rows), kThreads, 0, c.stream()>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const Acc<T>*>(rstd), static_cast<const T*>(dy),
        static_cast<T*>(dx), rows, d);
    if (dw) {
      int64_t chunk_rows = (rows + kDwMaxChunks - 1) / kDwMaxChunks;
      if (chunk_rows < kDwMinChunkRows) chunk_rows = kDwMinChunkRows;
      const int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
      Scratch part(c, static_cast<size_t>(chunks * d) * sizeof(double));
      const int64_t col_blocks = (d + kThreads - 1) / kThreads;
      if (col_blocks > 0x7fffffffLL) throw CudaError("rmsnormGrad: the normalized dim is too large");
      const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks));
      rmsnorm_dw_partial_kernel<T><<<grid, kThreads, 0, c.stream()>>>(
          static_cast<const T*>(x), static_cast<const Acc<T>*>(rstd), static_cast<const T*>(dy), part.as<double>(), rows,
          d, chunk_rows);
      rmsnorm_dw_final_kernel<T><<<GridFor(col_blocks), kThreads, 0, c.stream()>>>(part.as<double>(), static_cast<T*>(dw),
                                                                                      d, chunks);
    }
  });
}

void Rope(Context& c, int code, const void* x, const int64_t xs[3], int64_t B, int64_t Tn, int64_t H, int64_t D,
          const int32_t* pos, bool batched, const std::vector<double>& inv_freq, bool inverse, void* out) {
  const int64_t half = D / 2;
  if (B <= 0 || Tn <= 0 || H <= 0 || half <= 0) return;
  if (static_cast<int64_t>(inv_freq.size()) != half) {
    throw CudaError("rope: invFreq holds " + std::to_string(inv_freq.size()) + " values; head dim " + std::to_string(D) +
                    " needs D/2 = " + std::to_string(half));
  }
  Scratch freq(c, static_cast<size_t>(half) * sizeof(double));
  c.write(freq.get(), inv_freq.data(), static_cast<size_t>(half) * sizeof(double));
  const int64_t units = B * Tn * half;
  MODULORA_DISPATCH_FLOAT(code, "rope", T, {
    rope_kernel<T><<<GridFor((units + kThreads - 1) / kThreads), kThreads, 0, c.stream()>>>(
        static_cast<const T*>(x), xs[0], xs[1], xs[2], B, Tn, H, D, pos, batched, freq.as<double>(), inverse,
        static_cast<T*>(out));
  });
}

void SwigluForward(Context& c, int code, const void* gate, const void* up, void* out, int64_t n) {
  if (n <= 0) return;
  MODULORA_DISPATCH_FLOAT(code, "swiglu", T, {
    swiglu_forward_kernel<T><<<GridFor((n + kThreads - 1) / kThreads), kThreads, 0, c.stream()>>>(
        static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(out), n);
  });
}

void SwigluBackward(Context& c, int code, const void* gate, const void* up, const void* dy, void* dgate, void* dup,
                    int64_t n) {
  if (n <= 0) return;
  MODULORA_DISPATCH_FLOAT(code, "swigluGrad", T, {
    swiglu_backward_kernel<T><<<GridFor((n + kThreads - 1) / kThreads), kThreads, 0, c.stream()>>>(
        static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<const T*>(dy), static_cast<T*>(dgate),
        static_cast<T*>(dup), n);
  });
}

void Dropout(Context& c, int code, const void* x, void* out, int64_t n, double p, uint32_t k0, uint32_t k1,
             uint64_t offset) {
  if (n <= 0) return;
  // u = (w >> 8) / 2^24 >= p  <=>  (w >> 8) >= ceil(p * 2^24), as the CPU.
  const uint32_t threshold = static_cast<uint32_t>(std::ceil(p * 16777216.0));
  const int64_t blocks = (n + 3) / 4;
  MODULORA_DISPATCH_FLOAT(code, "dropout", T, {
    const Acc<T> scale = static_cast<Acc<T>>(1.0 / (1.0 - p));
    dropout_kernel<T><<<GridFor((blocks + kThreads - 1) / kThreads), kThreads, 0, c.stream()>>>(
        static_cast<const T*>(x), static_cast<T*>(out), n, threshold, scale, k0, k1, offset);
  });
}

}  // namespace cuda
}  // namespace modulora
