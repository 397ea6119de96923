// Data movement kernels of the CUDA backend: the generic strided copy (contiguous, clone, reshape
// of a view, concat, broadcastTo, sliceGrad, assign), dtype cast between every pair of the 8
// dtypes, gather along an axis, and its gradient scatterAdd.
//
//  - CopyKernel: a grid-stride loop over the coalesced (src, dst) iteration space, one kernel per
//    element size (1, 2, 4, 8 bytes); a fully contiguous copy is one cudaMemcpyAsync; a transpose
//    of the two innermost dims (x.T.contiguous()) goes through 32×32 shared-memory tiles.
//  - CastKernel<S, D>: src read through strides, widened exactly to f64 and rounded once to the
//    destination (bit functions ported from kernels/src/cpu/copy.cc: f16/bf16 round to nearest even
//    with subnormals, overflow to Inf and quiet NaN keeping the top of the payload; integers truncate
//    toward zero). To an integer dtype CastCheckKernel first finds the first element that does not
//    fit (atomicMin of its index); the launcher reads it back and throws, writing nothing.
//  - GatherKernel: one thread per output element, x and idx read through strides.
//  - scatterAdd: a stable radix sort (CUB) of the (row, j) pairs groups each row's indices in
//    increasing j; ScatterSumKernel, one thread per output element, finds its row's run by binary
//    search and adds the gathered values in that order from 0 in Acc<T> (f32 for bf16, rounded
//    once): the CPU's exact sequence of additions, without atomics, fully parallel.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include <cub/device/device_radix_sort.cuh>

#include "cuda/common.cuh"
#include "cuda/elementwise.h"

namespace modulora {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <class I, int K>
__device__ __forceinline__ void Offsets(const Strided<K>& d, bool small, int64_t i, int64_t (&off)[K]) {
  if (small) StridedOffsets<uint32_t>(d, i, off);
  else StridedOffsets<int64_t>(d, i, off);
}

// --- copy -------------------------------------------------------------------------------------

template <class E>
__global__ void CopyKernel(Strided<2> d, bool small, const E* __restrict__ src, E* __restrict__ dst) {
  for (int64_t i = GlobalThread(); i < d.numel; i += GridThreads()) {
    int64_t off[2];
    Offsets<int64_t>(d, small, i, off);
    dst[off[1]] = src[off[0]];
  }
}

// Transpose of the two innermost dims (src contiguous along dim r-2, dst along dim r-1): 32×32
// tiles staged through shared memory, so both the reads and the writes are coalesced. Outer dims
// (any strides) are walked per tile; blocks of 32×8 threads, grid-stride over the tiles.
constexpr int kTile = 32, kTileRows = 8;
template <class E>
__global__ void __launch_bounds__(kTile * kTileRows) TransposeKernel(Strided<2> d, int64_t tiles_r, int64_t tiles_c,
                                                                     int64_t num_tiles, const E* __restrict__ src,
                                                                     E* __restrict__ dst) {
  __shared__ E tile[kTile][kTile + 1];  // [column][row] of the tile
  const int r = d.rank;
  const int64_t rows = d.shape[r - 2], cols = d.shape[r - 1];
  const int64_t s_col = d.stride[0][r - 1], d_row = d.stride[1][r - 2];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t t = blockIdx.x; t < num_tiles; t += gridDim.x) {
    int64_t outer = t / (tiles_r * tiles_c);
    const int64_t rem = t - outer * (tiles_r * tiles_c);
    const int64_t r0 = (rem / tiles_c) * kTile, c0 = (rem % tiles_c) * kTile;
    int64_t so = 0, dof = 0;
    for (int i = r - 3; i >= 0; i--) {
      const int64_t q = outer / d.shape[i], cidx = outer - q * d.shape[i];
      so += cidx * d.stride[0][i];
      dof += cidx * d.stride[1][i];
      outer = q;
    }
    const int64_t row = r0 + tx;
    for (int k = ty; k < kTile; k += kTileRows) {
      const int64_t col = c0 + k;
      if (row < rows && col < cols) tile[k][tx] = src[so + row + col * s_col];
    }
    __syncthreads();
    const int64_t wcol = c0 + tx;
    for (int k = ty; k < kTile; k += kTileRows) {
      const int64_t wrow = r0 + k;
      if (wrow < rows && wcol < cols) dst[dof + wrow * d_row + wcol] = tile[tx][k];
    }
    __syncthreads();  // the tile is reused by the next iteration
  }
}

// --- cast: bit-exact conversions (kernels/src/cpu/copy.cc) --------------------------------------

// Rounds a double to a binary float with E exponent bits and M stored mantissa bits (f16: 5/10,
// bf16: 8/7), round to nearest even, with subnormals, overflow to Inf and quiet NaN.
template <int E, int M>
__host__ __device__ __forceinline__ uint16_t F64ToSmall(double v) {
  uint64_t b;
  memcpy(&b, &v, sizeof b);
  const uint16_t sign = static_cast<uint16_t>((b >> 63) << (E + M));
  const int exp = static_cast<int>((b >> 52) & 0x7FF);
  const uint64_t frac = b & ((uint64_t{1} << 52) - 1);
  const uint64_t inf = ((uint64_t{1} << E) - 1) << M;
  if (exp == 0x7FF) {
    return static_cast<uint16_t>(sign | inf | (frac ? ((frac >> (52 - M)) | (uint64_t{1} << (M - 1))) : 0));
  }
  if (exp == 0) return sign;
  const int bias = (1 << (E - 1)) - 1;
  const int te = exp - 1023 + bias;
  const uint64_t m = (uint64_t{1} << 52) | frac;
  const int shift = 52 - M + (te <= 0 ? 1 - te : 0);
  if (shift >= 54) return sign;
  uint64_t q = m >> shift;
  const uint64_t rem = m & ((uint64_t{1} << shift) - 1), half = uint64_t{1} << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) q++;
  uint64_t bits = te > 0 ? (static_cast<uint64_t>(te - 1) << M) + q : q;
  if (bits > inf) bits = inf;
  return static_cast<uint16_t>(sign | bits);
}

__host__ __device__ __forceinline__ uint16_t F32ToBf16Fast(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((b >> 16) | 0x40);  // quiet NaN
  b += 0x7FFFu + ((b >> 16) & 1);
  return static_cast<uint16_t>(b >> 16);
}

__host__ __device__ __forceinline__ float Bf16BitsToF32(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  float f;
  memcpy(&f, &w, sizeof f);
  return f;
}

__host__ __device__ __forceinline__ float F16BitsToF32(uint16_t h) {
  const uint32_t shifted = static_cast<uint32_t>(h & 0x7FFF) << 13;
  const uint32_t exp = shifted & 0x0F800000u;
  const uint32_t normal = shifted + (112u << 23);
  const uint32_t special = normal + (112u << 23);
  const uint32_t sub_bits = normal + (1u << 23);
  float sub;
  memcpy(&sub, &sub_bits, sizeof sub);
  sub -= 6.103515625e-05f;  // exact
  uint32_t sub_w;
  memcpy(&sub_w, &sub, sizeof sub_w);
  uint32_t w = exp == 0x0F800000u ? special : (exp == 0 ? sub_w : normal);
  w |= static_cast<uint32_t>(h & 0x8000) << 16;
  float f;
  memcpy(&f, &w, sizeof f);
  return f;
}

// Element traits per dtype code: stored type, exact widening to double, narrowing store (integer
// stores assume the check passed: in range, truncation toward zero), integer range.
template <int D> struct Tr;
template <> struct Tr<kF32> {
  using E = float;
  static __host__ __device__ double load(E v) { return v; }
  static __device__ E store(double v) { return static_cast<float>(v); }
};
template <> struct Tr<kF64> {
  using E = double;
  static __host__ __device__ double load(E v) { return v; }
  static __device__ E store(double v) { return v; }
};
template <> struct Tr<kBF16> {
  using E = uint16_t;
  static __host__ __device__ double load(E v) { return Bf16BitsToF32(v); }
  static __device__ E store(double v) { return F64ToSmall<8, 7>(v); }
};
template <> struct Tr<kF16> {
  using E = uint16_t;
  static __host__ __device__ double load(E v) { return F16BitsToF32(v); }
  static __device__ E store(double v) { return F64ToSmall<5, 10>(v); }
};
template <> struct Tr<kI32> {
  using E = int32_t;
  static constexpr double lo = -2147483648.0, hi = 2147483647.0;
  static __host__ __device__ double load(E v) { return v; }
  static __device__ E store(double v) { return static_cast<E>(v); }
};
template <> struct Tr<kI8> {
  using E = int8_t;
  static constexpr double lo = -128, hi = 127;
  static __host__ __device__ double load(E v) { return v; }
  static __device__ E store(double v) { return static_cast<E>(static_cast<int32_t>(v)); }
};
template <> struct Tr<kU8> {
  using E = uint8_t;
  static constexpr double lo = 0, hi = 255;
  static __host__ __device__ double load(E v) { return v; }
  static __device__ E store(double v) { return static_cast<E>(static_cast<uint32_t>(v)); }
};
template <> struct Tr<kU32> {
  using E = uint32_t;
  static constexpr double lo = 0, hi = 4294967295.0;
  static __host__ __device__ double load(E v) { return v; }
  static __device__ E store(double v) { return static_cast<E>(v); }
};

constexpr bool IsInt(int d) { return d >= kI32; }

template <int S, int D>
__device__ __forceinline__ typename Tr<D>::E Convert(typename Tr<S>::E v) {
  if constexpr (S == kF32 && D == kBF16) {
    return F32ToBf16Fast(v);
  } else if constexpr (S == kBF16 && D == kF32) {
    return Bf16BitsToF32(v);
  } else if constexpr (S == kF16 && D == kF32) {
    return F16BitsToF32(v);
  } else {
    return Tr<D>::store(Tr<S>::load(v));
  }
}

template <int S, int D>
__global__ void CastKernel(Strided<2> d, bool small, const typename Tr<S>::E* __restrict__ src,
                           typename Tr<D>::E* __restrict__ dst) {
  for (int64_t i = GlobalThread(); i < d.numel; i += GridThreads()) {
    int64_t off[2];
    Offsets<int64_t>(d, small, i, off);
    dst[off[1]] = Convert<S, D>(src[off[0]]);
  }
}

// first = min(first, i) over the elements whose truncation toward zero does not fit D.
template <int S, int D>
__global__ void CastCheckKernel(Strided<2> d, bool small, const typename Tr<S>::E* __restrict__ src,
                                unsigned long long* first) {
  for (int64_t i = GlobalThread(); i < d.numel; i += GridThreads()) {
    int64_t off[2];
    Offsets<int64_t>(d, small, i, off);
    const double t = trunc(Tr<S>::load(src[off[0]]));
    if (!(t >= Tr<D>::lo && t <= Tr<D>::hi)) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

__global__ void SetU64Kernel(unsigned long long* p, unsigned long long v) { *p = v; }

// Whether every value of integer dtype S fits integer dtype D (no check needed).
template <int S, int D>
constexpr bool IntFits() {
  if constexpr (IsInt(S) && IsInt(D)) return Tr<S>::lo >= Tr<D>::lo && Tr<S>::hi <= Tr<D>::hi;
  else return false;
}

double HostLoad(int code, const unsigned char* bytes) {
  switch (code) {
    case kF32: { float v; std::memcpy(&v, bytes, 4); return v; }
    case kF64: { double v; std::memcpy(&v, bytes, 8); return v; }
    case kBF16: { uint16_t v; std::memcpy(&v, bytes, 2); return Bf16BitsToF32(v); }
    case kF16: { uint16_t v; std::memcpy(&v, bytes, 2); return F16BitsToF32(v); }
    case kI32: { int32_t v; std::memcpy(&v, bytes, 4); return v; }
    case kI8: { int8_t v; std::memcpy(&v, bytes, 1); return v; }
    case kU8: return bytes[0];
    case kU32: { uint32_t v; std::memcpy(&v, bytes, 4); return v; }
  }
  return 0;
}

std::string NumStr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// Element offset of flat row-major index i of (shape, strides).
int64_t HostOffset(const Dims& shape, const Dims& strides, int64_t i) {
  int64_t off = 0;
  for (int64_t r = static_cast<int64_t>(shape.size()) - 1; r >= 0; r--) {
    off += (i % shape[r]) * strides[r];
    i /= shape[r];
  }
  return off;
}

template <int S, int D>
void CastPair(Context& c, const Strided<2>& d, const Dims& shape, const Dims& src_strides, const void* src, void* dst) {
  using SE = typename Tr<S>::E;
  using DE = typename Tr<D>::E;
  const unsigned grid = Blocks(d.numel, kThreads);
  const bool small = Small(d.numel);
  if constexpr (IsInt(D) && !IntFits<S, D>()) {
    Scratch first(c, sizeof(unsigned long long));
    auto* f = first.as<unsigned long long>();
    SetU64Kernel<<<1, 1, 0, c.stream()>>>(f, std::numeric_limits<unsigned long long>::max());
    CastCheckKernel<S, D><<<grid, kThreads, 0, c.stream()>>>(d, small, static_cast<const SE*>(src), f);
    MODULORA_CUDA_CHECK(cudaGetLastError());
    unsigned long long bad = 0;
    c.read(&bad, f, sizeof bad);
    if (bad != std::numeric_limits<unsigned long long>::max()) {
      const int64_t i = static_cast<int64_t>(bad);
      unsigned char bytes[8] = {};
      c.read(bytes, static_cast<const SE*>(src) + HostOffset(shape, src_strides, i), sizeof(SE));
      throw CudaError("element " + std::to_string(i) + " of 'src' (" + NumStr(HostLoad(S, bytes)) + ", " + CodeName(S) +
                      ") cannot be converted to " + CodeName(D) +
                      ": NaN, infinities and values out of range after truncation toward zero are rejected");
    }
  }
  CastKernel<S, D><<<grid, kThreads, 0, c.stream()>>>(d, small, static_cast<const SE*>(src), static_cast<DE*>(dst));
}

template <int S>
void CastFrom(Context& c, int dst_code, const Strided<2>& d, const Dims& shape, const Dims& ss, const void* src, void* dst) {
  switch (dst_code) {
    case kF32: return CastPair<S, kF32>(c, d, shape, ss, src, dst);
    case kF64: return CastPair<S, kF64>(c, d, shape, ss, src, dst);
    case kBF16: return CastPair<S, kBF16>(c, d, shape, ss, src, dst);
    case kF16: return CastPair<S, kF16>(c, d, shape, ss, src, dst);
    case kI32: return CastPair<S, kI32>(c, d, shape, ss, src, dst);
    case kI8: return CastPair<S, kI8>(c, d, shape, ss, src, dst);
    case kU8: return CastPair<S, kU8>(c, d, shape, ss, src, dst);
    case kU32: return CastPair<S, kU32>(c, d, shape, ss, src, dst);
    default: throw CudaError("cast: unknown destination dtype code " + std::to_string(dst_code));
  }
}

// --- gather / scatterAdd ----------------------------------------------------------------------

// y[o, j, k] = x[outer o, idx[j], inner k]; an index outside [0, n) gives zero (and is recorded).
template <class E>
__global__ void GatherKernel(Strided<1> outer, int64_t axis_stride, int64_t n, Strided<1> inner, Strided<1> idx,
                             bool small, const E* __restrict__ x, const int32_t* __restrict__ ip,
                             E* __restrict__ y, int64_t total, unsigned long long* bad) {
  const int64_t m = idx.numel, in = inner.numel;
  for (int64_t i = GlobalThread(); i < total; i += GridThreads()) {
    int64_t k, rest;
    if (small) {
      const uint32_t ui = static_cast<uint32_t>(i), uin = static_cast<uint32_t>(in);
      rest = ui / uin;
      k = ui - static_cast<uint32_t>(rest) * uin;
    } else {
      rest = i / in;
      k = i - rest * in;
    }
    const int64_t o = rest / m, j = rest - o * m;
    int64_t io[1], oo[1], ko[1];
    Offsets<int64_t>(idx, small, j, io);
    const int64_t r = ip[io[0]];
    if (r < 0 || r >= n) {
      y[i] = E{};
      if (bad) atomicMin(bad, static_cast<unsigned long long>(j));
      continue;
    }
    Offsets<int64_t>(outer, small, o, oo);
    Offsets<int64_t>(inner, small, k, ko);
    y[i] = x[oo[0] + r * axis_stride + ko[0]];
  }
}

// The accumulator stored: f32/f64 as they are; bf16 rounded once with the CPU's f32 → bf16 rounding.
template <class T> __device__ __forceinline__ T StoreScatter(Acc<T> v) { return v; }
template <> __device__ __forceinline__ bf16 StoreScatter<bf16>(float v) {
  const uint16_t h = F32ToBf16Fast(v);
  bf16 out;
  memcpy(&out, &h, sizeof out);
  return out;
}

// Sort keys of scatterAdd: key[j] = idx[j] for a valid index, n (sorted after every row) for a bad
// one (recorded when `bad` is set); val[j] = j.
__global__ void ScatterKeysKernel(Strided<1> idx, bool small, const int32_t* __restrict__ ip, int64_t n,
                                  uint32_t* __restrict__ keys, uint32_t* __restrict__ vals, unsigned long long* bad) {
  for (int64_t j = GlobalThread(); j < idx.numel; j += GridThreads()) {
    int64_t io[1];
    Offsets<int64_t>(idx, small, j, io);
    const int64_t r = ip[io[0]];
    const bool ok = r >= 0 && r < n;
    if (!ok && bad) atomicMin(bad, static_cast<unsigned long long>(j));
    keys[j] = static_cast<uint32_t>(ok ? r : n);
    vals[j] = static_cast<uint32_t>(j);
  }
}

// First position p of the sorted keys[0, m) with keys[p] >= r.
__device__ __forceinline__ int64_t LowerBound(const uint32_t* keys, int64_t m, uint32_t r) {
  int64_t lo = 0, hi = m;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    if (keys[mid] < r) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// y[o, r, k] = sum of src[o, j, k] over the j with idx[j] = r, in increasing j (the stable sort
// keeps them in order), accumulated in Acc<T> from 0 and rounded once: the CPU's additions.
template <class T>
__global__ void ScatterSumKernel(int64_t outer, int64_t n, int64_t inner, int64_t m, Strided<1> src_l, bool small,
                                 const T* __restrict__ src, const uint32_t* __restrict__ keys,
                                 const uint32_t* __restrict__ vals, T* __restrict__ y) {
  const int64_t total = outer * n * inner;
  for (int64_t i = GlobalThread(); i < total; i += GridThreads()) {
    const int64_t rest = i / inner, k = i - rest * inner;
    const int64_t o = rest / n, r = rest - o * n;
    const int64_t lo = LowerBound(keys, m, static_cast<uint32_t>(r));
    Acc<T> acc = Acc<T>(0);
    for (int64_t p = lo; p < m && keys[p] == static_cast<uint32_t>(r); p++) {
      int64_t so[1];
      Offsets<int64_t>(src_l, small, (o * m + vals[p]) * inner + k, so);
      acc += ld(src + so[0]);
    }
    y[i] = StoreScatter<T>(acc);
  }
}

int64_t Product(const Dims& s, size_t b, size_t e) {
  int64_t p = 1;
  for (size_t i = b; i < e; i++) p *= s[i];
  return p;
}

// Under MODULORA_CUDA_SYNC=1: reads the first bad index position back and throws naming it.
void ThrowBadIndex(Context& c, const char* op, unsigned long long* bad, const Dims& idx_shape, const Dims& idx_strides,
                   const void* idx, int64_t n) {
  unsigned long long j = 0;
  c.read(&j, bad, sizeof j);
  if (j == std::numeric_limits<unsigned long long>::max()) return;
  int32_t v = 0;
  c.read(&v, static_cast<const int32_t*>(idx) + HostOffset(idx_shape, idx_strides, static_cast<int64_t>(j)), sizeof v);
  throw CudaError(std::string(op) + ": idx[" + std::to_string(j) + "] = " + std::to_string(v) +
                  " is out of range for n = " + std::to_string(n) +
                  (n > 0 ? " (valid: 0.." + std::to_string(n - 1) + ")" : " (no valid index)"));
}

}  // namespace

void EwCopyLaunch(Context& c, size_t elem_size, const Dims& shape, const void* src, const Dims& src_strides,
                  void* dst, const Dims& dst_strides) {
  const Strided<2> d = MakeStrided<2>(shape, {&src_strides, &dst_strides}, "copy");
  if (d.numel == 0) return;
  if (d.rank <= 1 && (d.rank == 0 || (d.stride[0][0] == 1 && d.stride[1][0] == 1))) {
    MODULORA_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(d.numel) * elem_size, cudaMemcpyDeviceToDevice, c.stream()));
    return;
  }
  const int r = d.rank;
  if (r >= 2 && d.stride[1][r - 1] == 1 && d.stride[0][r - 2] == 1 && d.stride[0][r - 1] != 1 &&
      d.shape[r - 1] >= 8 && d.shape[r - 2] >= 8) {
    const int64_t tiles_r = (d.shape[r - 2] + kTile - 1) / kTile, tiles_c = (d.shape[r - 1] + kTile - 1) / kTile;
    const int64_t num_tiles = d.numel / (d.shape[r - 2] * d.shape[r - 1]) * tiles_r * tiles_c;
    const dim3 block(kTile, kTileRows);
    const unsigned tgrid = Blocks(num_tiles, 1);
    switch (elem_size) {
      case 1: TransposeKernel<uint8_t><<<tgrid, block, 0, c.stream()>>>(d, tiles_r, tiles_c, num_tiles, static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst)); return;
      case 2: TransposeKernel<uint16_t><<<tgrid, block, 0, c.stream()>>>(d, tiles_r, tiles_c, num_tiles, static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst)); return;
      case 4: TransposeKernel<uint32_t><<<tgrid, block, 0, c.stream()>>>(d, tiles_r, tiles_c, num_tiles, static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst)); return;
      case 8: TransposeKernel<uint64_t><<<tgrid, block, 0, c.stream()>>>(d, tiles_r, tiles_c, num_tiles, static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst)); return;
      default: break;  // refused below
    }
  }
  const unsigned grid = Blocks(d.numel, kThreads);
  const bool small = Small(d.numel);
  switch (elem_size) {
    case 1: CopyKernel<uint8_t><<<grid, kThreads, 0, c.stream()>>>(d, small, static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst)); break;
    case 2: CopyKernel<uint16_t><<<grid, kThreads, 0, c.stream()>>>(d, small, static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst)); break;
    case 4: CopyKernel<uint32_t><<<grid, kThreads, 0, c.stream()>>>(d, small, static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst)); break;
    case 8: CopyKernel<uint64_t><<<grid, kThreads, 0, c.stream()>>>(d, small, static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst)); break;
    default: throw CudaError("copy: element size " + std::to_string(elem_size) + " is not 1, 2, 4 or 8");
  }
}

void EwCastLaunch(Context& c, int src_code, int dst_code, const Dims& shape, const void* src,
                  const Dims& src_strides, void* dst) {
  if (CodeSize(src_code) == 0 || CodeSize(dst_code) == 0) {
    throw CudaError("cast: unknown dtype code " + std::to_string(CodeSize(src_code) == 0 ? src_code : dst_code));
  }
  Dims ds(shape.size());
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1, s = 1; i >= 0; i--) {
    ds[i] = s;
    s *= shape[i];
  }
  if (src_code == dst_code) return EwCopyLaunch(c, CodeSize(src_code), shape, src, src_strides, dst, ds);
  const Strided<2> d = MakeStrided<2>(shape, {&src_strides, &ds}, "cast");
  if (d.numel == 0) return;
  switch (src_code) {
    case kF32: return CastFrom<kF32>(c, dst_code, d, shape, src_strides, src, dst);
    case kF64: return CastFrom<kF64>(c, dst_code, d, shape, src_strides, src, dst);
    case kBF16: return CastFrom<kBF16>(c, dst_code, d, shape, src_strides, src, dst);
    case kF16: return CastFrom<kF16>(c, dst_code, d, shape, src_strides, src, dst);
    case kI32: return CastFrom<kI32>(c, dst_code, d, shape, src_strides, src, dst);
    case kI8: return CastFrom<kI8>(c, dst_code, d, shape, src_strides, src, dst);
    case kU8: return CastFrom<kU8>(c, dst_code, d, shape, src_strides, src, dst);
    case kU32: return CastFrom<kU32>(c, dst_code, d, shape, src_strides, src, dst);
  }
}

void EwGatherLaunch(Context& c, size_t elem_size, const Dims& x_shape, const void* x, const Dims& x_strides,
                    int axis, const Dims& idx_shape, const void* idx, const Dims& idx_strides, void* y) {
  if (axis < 0 || static_cast<size_t>(axis) >= x_shape.size() || x_strides.size() != x_shape.size()) {
    throw CudaError("gather: axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(x_shape.size()));
  }
  const Dims os(x_shape.begin(), x_shape.begin() + axis), ost(x_strides.begin(), x_strides.begin() + axis);
  const Dims is(x_shape.begin() + axis + 1, x_shape.end()), ist(x_strides.begin() + axis + 1, x_strides.end());
  const Strided<1> outer = MakeStrided<1>(os, {&ost}, "gather");
  const Strided<1> inner = MakeStrided<1>(is, {&ist}, "gather");
  const Strided<1> il = MakeStrided<1>(idx_shape, {&idx_strides}, "gather");
  const int64_t total = outer.numel * il.numel * inner.numel;
  if (total == 0) return;
  const int64_t n = x_shape[axis], as = x_strides[axis];
  const unsigned grid = Blocks(total, kThreads);
  const bool small = Small(total);
  const bool sync = SyncEveryOp();
  Scratch flag(c, sync ? sizeof(unsigned long long) : 0);
  unsigned long long* bad = sync ? flag.as<unsigned long long>() : nullptr;
  if (bad) SetU64Kernel<<<1, 1, 0, c.stream()>>>(bad, std::numeric_limits<unsigned long long>::max());
  const auto* ip = static_cast<const int32_t*>(idx);
  switch (elem_size) {
    case 1: GatherKernel<uint8_t><<<grid, kThreads, 0, c.stream()>>>(outer, as, n, inner, il, small, static_cast<const uint8_t*>(x), ip, static_cast<uint8_t*>(y), total, bad); break;
    case 2: GatherKernel<uint16_t><<<grid, kThreads, 0, c.stream()>>>(outer, as, n, inner, il, small, static_cast<const uint16_t*>(x), ip, static_cast<uint16_t*>(y), total, bad); break;
    case 4: GatherKernel<uint32_t><<<grid, kThreads, 0, c.stream()>>>(outer, as, n, inner, il, small, static_cast<const uint32_t*>(x), ip, static_cast<uint32_t*>(y), total, bad); break;
    case 8: GatherKernel<uint64_t><<<grid, kThreads, 0, c.stream()>>>(outer, as, n, inner, il, small, static_cast<const uint64_t*>(x), ip, static_cast<uint64_t*>(y), total, bad); break;
    default: throw CudaError("gather: element size " + std::to_string(elem_size) + " is not 1, 2, 4 or 8");
  }
  if (bad) {
    MODULORA_CUDA_CHECK(cudaGetLastError());
    ThrowBadIndex(c, "gather", bad, idx_shape, idx_strides, idx, n);
  }
}

void EwScatterAddLaunch(Context& c, int dtype, const Dims& shape, int axis, const void* src, const Dims& src_shape,
                        const Dims& src_strides, const Dims& idx_shape, const void* idx, const Dims& idx_strides,
                        void* y) {
  if (axis < 0 || static_cast<size_t>(axis) >= shape.size()) {
    throw CudaError("scatterAdd: axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(shape.size()));
  }
  const int64_t outer = Product(shape, 0, axis), n = shape[axis], inner = Product(shape, axis + 1, shape.size());
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  const Strided<1> il = MakeStrided<1>(idx_shape, {&idx_strides}, "scatterAdd");
  const Strided<1> sl = MakeStrided<1>(src_shape, {&src_strides}, "scatterAdd");
  if (sl.numel != outer * il.numel * inner) {
    throw CudaError("scatterAdd: src has " + std::to_string(sl.numel) + " elements, not outer·m·inner = " +
                    std::to_string(outer * il.numel * inner));
  }
  const int64_t m = il.numel;
  if (dtype != kF32 && dtype != kF64 && dtype != kBF16) {
    throw CudaError(std::string("scatterAdd: dtype ") + CodeName(dtype) + " is not computed on cuda (f32, f64 and bf16 are)");
  }
  if (m == 0) {  // nothing gathered: zeros
    MODULORA_CUDA_CHECK(cudaMemsetAsync(y, 0, static_cast<size_t>(total) * CodeSize(dtype), c.stream()));
    return;
  }
  if (n >= 0xFFFFFFFFLL || m > 0x7FFFFFFFLL) throw CudaError("scatterAdd: more than 2^32 rows or 2^31 indices");
  const bool sync = SyncEveryOp();
  Scratch flag(c, sync ? sizeof(unsigned long long) : 0);
  unsigned long long* bad = sync ? flag.as<unsigned long long>() : nullptr;
  if (bad) SetU64Kernel<<<1, 1, 0, c.stream()>>>(bad, std::numeric_limits<unsigned long long>::max());
  // Stable radix sort of (row, j) pairs: each row's indices end up contiguous and in increasing j.
  Scratch pairs(c, static_cast<size_t>(m) * 4 * sizeof(uint32_t));
  uint32_t* keys_in = pairs.as<uint32_t>();
  uint32_t* vals_in = keys_in + m;
  uint32_t* keys_out = vals_in + m;
  uint32_t* vals_out = keys_out + m;
  ScatterKeysKernel<<<Blocks(m, kThreads), kThreads, 0, c.stream()>>>(il, Small(m), static_cast<const int32_t*>(idx), n,
                                                                       keys_in, vals_in, bad);
  int end_bit = 1;
  while (end_bit < 32 && (static_cast<uint64_t>(n) >> end_bit) != 0) end_bit++;  // keys are in [0, n]
  size_t temp_bytes = 0;
  MODULORA_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, vals_in, vals_out,
                                                      static_cast<int>(m), 0, end_bit, c.stream()));
  Scratch temp(c, temp_bytes);
  MODULORA_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, keys_in, keys_out, vals_in, vals_out,
                                                      static_cast<int>(m), 0, end_bit, c.stream()));
  const bool small = Small(sl.numel);
  const unsigned grid = Blocks(total, kThreads);
  MODULORA_DISPATCH_FLOAT(dtype, "scatterAdd", T, {
    ScatterSumKernel<T><<<grid, kThreads, 0, c.stream()>>>(outer, n, inner, m, sl, small, static_cast<const T*>(src),
                                                           keys_out, vals_out, static_cast<T*>(y));
  });
  if (bad) {
    MODULORA_CUDA_CHECK(cudaGetLastError());
    ThrowBadIndex(c, "scatterAdd", bad, idx_shape, idx_strides, idx, n);
  }
}

}  // namespace cuda
}  // namespace modulora
