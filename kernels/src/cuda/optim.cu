// CUDA kernels of the optimizer (see nn.h): the fused AdamW step over one or many tensors in one
// launch, and the fused gradient-norm statistics [Σ x², Σ (x − x)] over many tensors.
//
// AdamW follows src/cpu/nn.cc's adamw_step: scalars formed in f64 on the host and rounded to T,
// the per-element arithmetic in T with every product, sum, quotient and square root rounded on its
// own (the _rn intrinsics keep nvcc from contracting a*b + c into an FMA), so a step on the device
// gives the CPU's bits.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/nn.h"

namespace modulora {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 4096;       // elements per block of the multi-tensor kernels
constexpr int kFinalThreads = 1024;    // threads of the block that adds the norm partials
constexpr int64_t kMaxGrid = 1 << 20;  // blocks of a single-tensor grid-stride launch, at most

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float sqrt_rn(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double sqrt_rn(double a) { return __dsqrt_rn(a); }

// The step's scalars in T, formed exactly as the CPU forms them.
template <class T>
struct AdamwScalars {
  T decay, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps;
};

template <class T>
AdamwScalars<T> MakeScalars(const AdamwParams& h) {
  const double t = static_cast<double>(h.step);
  AdamwScalars<T> s;
  s.decay = static_cast<T>(1.0 - h.lr * h.weight_decay);
  s.b1 = static_cast<T>(h.beta1);
  s.c1 = static_cast<T>(1.0 - h.beta1);
  s.b2 = static_cast<T>(h.beta2);
  s.c2 = static_cast<T>(1.0 - h.beta2);
  s.step_size = static_cast<T>(h.lr / (1.0 - std::pow(h.beta1, t)));
  s.inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(h.beta2, t)));
  s.eps = static_cast<T>(h.eps);
  return s;
}

template <class T>
__device__ __forceinline__ void adamw_element(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                                              T* __restrict__ v, int64_t i, const AdamwScalars<T>& s) {
  const T gi = g[i];
  const T mi = add_rn(mul_rn(s.b1, m[i]), mul_rn(s.c1, gi));
  const T vi = add_rn(mul_rn(s.b2, v[i]), mul_rn(s.c2, mul_rn(gi, gi)));
  m[i] = mi;
  v[i] = vi;
  // param * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
  const T den = add_rn(mul_rn(sqrt_rn(vi), s.inv_sqrt_bc2), s.eps);
  p[i] = sub_rn(mul_rn(p[i], s.decay), div_rn(mul_rn(s.step_size, mi), den));
}

template <class T>
__global__ void __launch_bounds__(kThreads) adamw_one_kernel(T* __restrict__ p, const T* __restrict__ g,
                                                              T* __restrict__ m, T* __restrict__ v, int64_t n,
                                                              AdamwScalars<T> s) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    adamw_element(p, g, m, v, i, s);
  }
}

// The entry of block b: the last e with start[e] <= b (start[0] = 0, start[count] = total blocks).
__device__ __forceinline__ int64_t entry_of(const int64_t* __restrict__ start, int64_t count, int64_t b) {
  int64_t lo = 0, hi = count - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (start[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

template <class T>
__global__ void __launch_bounds__(kThreads) adamw_many_kernel(const AdamwEntry* __restrict__ entries,
                                                               const int64_t* __restrict__ start, int64_t count,
                                                               AdamwScalars<T> s) {
  const int64_t b = blockIdx.x;
  const int64_t e = entry_of(start, count, b);
  const AdamwEntry en = entries[e];
  const int64_t i0 = (b - start[e]) * kChunk;
  const int64_t i1 = i0 + kChunk < en.n ? i0 + kChunk : en.n;
  T* p = static_cast<T*>(en.param);
  const T* g = static_cast<const T*>(en.grad);
  T* m = static_cast<T*>(en.m);
  T* v = static_cast<T*>(en.v);
  for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) adamw_element(p, g, m, v, i, s);
}

// --- gradient-norm statistics --------------------------------------------------------------------


template <class T>
__device__ __forceinline__ void norm_range(const T* __restrict__ x, int64_t i0, int64_t i1, double& sq, bool& bad) {
  for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
    const double v = static_cast<double>(ld(x + i));
    sq += v * v;
    if (!isfinite(v)) bad = true;
  }
}

// Block b writes part[2b] = Σ x² and part[2b + 1] = Σ (x − x) (0, or NaN when an element of its
// chunk is NaN or ±Inf) over its chunk.
__global__ void __launch_bounds__(kThreads) norm_partial_kernel(const NormEntry* __restrict__ entries,
                                                                const int64_t* __restrict__ start, int64_t count,
                                                                double* __restrict__ part) {
  __shared__ double sh[33];
  const int64_t b = blockIdx.x;
  const int64_t e = entry_of(start, count, b);
  const NormEntry en = entries[e];
  const int64_t i0 = (b - start[e]) * kChunk;
  const int64_t i1 = i0 + kChunk < en.n ? i0 + kChunk : en.n;
  double sq = 0;
  bool bad = false;
  switch (en.code) {  // uniform over the block
    case kF32: norm_range(static_cast<const float*>(en.data), i0, i1, sq, bad); break;
    case kF64: norm_range(static_cast<const double*>(en.data), i0, i1, sq, bad); break;
    case kBF16: norm_range(static_cast<const bf16*>(en.data), i0, i1, sq, bad); break;
    default: bad = true; break;  // refused on the host; never reached
  }
  const double s = block_sum(sq, sh);
  const double nbad = block_sum(bad ? 1.0 : 0.0, sh);
  if (threadIdx.x == 0) {
    part[2 * b] = s;
    part[2 * b + 1] = nbad > 0 ? __longlong_as_double(0x7ff8000000000000LL) : 0.0;
  }
}

// One block: thread k adds partials k, k + blockDim, ... in order, then a fixed tree.
__global__ void __launch_bounds__(kFinalThreads) norm_final_kernel(const double* __restrict__ part, int64_t blocks,
                                                                   double* __restrict__ out) {
  __shared__ double sh[33];
  double sq = 0, probe = 0;
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) {
    sq += part[2 * b];
    probe += part[2 * b + 1];
  }
  sq = block_sum(sq, sh);
  probe = block_sum(probe, sh);
  if (threadIdx.x == 0) {
    out[0] = sq;
    out[1] = probe;
  }
}

// Block starts of the entries (chunks of kChunk elements; empty entries get no block).
template <class E>
std::vector<int64_t> BlockStarts(const std::vector<E>& entries, int64_t& total) {
  std::vector<int64_t> start(entries.size() + 1);
  total = 0;
  for (size_t k = 0; k < entries.size(); k++) {
    start[k] = total;
    total += (entries[k].n + kChunk - 1) / kChunk;
  }
  start[entries.size()] = total;
  return start;
}

// Entries and block starts in one device table: [entries..., pad to 8 bytes, starts...].
template <class E>
struct DeviceTable {
  DeviceTable(Context& c, const std::vector<E>& entries, const std::vector<int64_t>& start)
      : bytes_entries((entries.size() * sizeof(E) + 7) / 8 * 8),
        scratch(c, bytes_entries + start.size() * sizeof(int64_t)) {
    std::vector<unsigned char> host(bytes_entries + start.size() * sizeof(int64_t), 0);
    std::memcpy(host.data(), entries.data(), entries.size() * sizeof(E));
    std::memcpy(host.data() + bytes_entries, start.data(), start.size() * sizeof(int64_t));
    c.write(scratch.get(), host.data(), host.size());
  }
  const E* entries() const { return scratch.as<E>(); }
  const int64_t* start() const {
    return reinterpret_cast<const int64_t*>(static_cast<const unsigned char*>(scratch.get()) + bytes_entries);
  }
  size_t bytes_entries;
  Scratch scratch;
};

}  // namespace

void AdamwStep(Context& c, int code, const std::vector<AdamwEntry>& all, const AdamwParams& h) {
  std::vector<AdamwEntry> entries;
  for (const AdamwEntry& e : all) {
    if (e.n > 0) entries.push_back(e);
  }
  if (entries.empty()) return;
  if (code != kF32 && code != kF64) {
    throw CudaError(std::string("adamwStep: dtype ") + CodeName(code) + " is not updated in place (f32 and f64 are)");
  }
  const auto run = [&](auto zero) {
    using T = decltype(zero);
    const AdamwScalars<T> s = MakeScalars<T>(h);
    if (entries.size() == 1) {
      const AdamwEntry& e = entries[0];
      int64_t blocks = (e.n + kThreads - 1) / kThreads;
      if (blocks > kMaxGrid) blocks = kMaxGrid;
      adamw_one_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, c.stream()>>>(
          static_cast<T*>(e.param), static_cast<const T*>(e.grad), static_cast<T*>(e.m), static_cast<T*>(e.v), e.n, s);
      return;
    }
    int64_t total = 0;
    const std::vector<int64_t> start = BlockStarts(entries, total);
    if (total > 0x7fffffffLL) throw CudaError("adamwStepMany: too many elements for one launch");
    DeviceTable<AdamwEntry> table(c, entries, start);
    adamw_many_kernel<T><<<static_cast<unsigned>(total), kThreads, 0, c.stream()>>>(
        table.entries(), table.start(), static_cast<int64_t>(entries.size()), s);
  };
  if (code == kF32) run(0.0f);
  else run(0.0);
}

void GradNormStats(Context& c, const std::vector<NormEntry>& all, double* out) {
  std::vector<NormEntry> entries;
  for (const NormEntry& e : all) {
    if (e.code != kF32 && e.code != kF64 && e.code != kBF16) {
      throw CudaError(std::string("gradNormStats: dtype ") + CodeName(e.code) + " is not a gradient dtype (f32, f64, bf16)");
    }
    if (e.n > 0) entries.push_back(e);
  }
  if (entries.empty()) {
    MODULORA_CUDA_CHECK(cudaMemsetAsync(out, 0, 2 * sizeof(double), c.stream()));  // f64 zeros
    return;
  }
  int64_t total = 0;
  const std::vector<int64_t> start = BlockStarts(entries, total);
  if (total > 0x7fffffffLL) throw CudaError("gradNormStats: too many elements for one launch");
  DeviceTable<NormEntry> table(c, entries, start);
  Scratch part(c, static_cast<size_t>(total) * 2 * sizeof(double));
  norm_partial_kernel<<<static_cast<unsigned>(total), kThreads, 0, c.stream()>>>(
      table.entries(), table.start(), static_cast<int64_t>(entries.size()), part.as<double>());
  norm_final_kernel<<<1, kFinalThreads, 0, c.stream()>>>(part.as<double>(), total, out);
}

}  // namespace cuda
}  // namespace modulora
