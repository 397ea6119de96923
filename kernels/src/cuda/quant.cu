// Dequantization of the `affine` and `codebook` weight formats on the device, and the Philox byte
// fill (see quant.h). The f32 value of every ŵ is computed exactly as src/cpu/quant_decode.h
// computes it: affine scale·(q − zero) with one rounding; codebook absmax·level, the
// double-quantized absmax offset + scale·code with two roundings (__fmul_rn/__fadd_rn keep nvcc
// from contracting them into one FMA).
#include <algorithm>
#include <string>

#include "cuda/common.cuh"
#include "cuda/quant.h"

namespace modulora {
namespace cuda {
namespace {

// ---- affine -------------------------------------------------------------------------------------

constexpr int kTileRows = 32;   // rows j of Ŵ per tile: one warp's lanes when loading words
constexpr int kTileIn = 128;    // inputs i per tile: 4 runs of 32 codes (32 codes fill `bits` words)
constexpr int kBlockY = 8;      // warps per block

__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

// One block per (row tile, input tile), grid-stride over both. Phase 1: the tile's word rows
// W = i0/32·BITS + lw (lw < 4·BITS) of rows j0..j0+31 into shared memory, lane = row (qweight is
// [words, out]: coalesced). Phase 2: warp ty decodes rows ty, ty+8, ... of the tile along `in`,
// lane = input (the writes to the row-major output are coalesced). The shared rows are padded to
// 33 words so that the 32 lanes of a warp, reading word rows lw(i) of one row, hit distinct banks.
template <int BITS, class T>
__global__ void __launch_bounds__(kTileRows * kBlockY)
    affine_dequantize_kernel(AffineDevice w, int64_t r0, int64_t rows, T* __restrict__ dst, int64_t row_tiles,
                             int64_t in_tiles) {
  constexpr int kWords = kTileIn / 32 * BITS;
  constexpr uint32_t kMask = (1u << BITS) - 1;
  __shared__ uint32_t words[kWords][kTileRows + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t total_words = (w.in + 31) / 32 * BITS;
  const bool per_input_group = w.g_idx != nullptr;
  for (int64_t rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
    const int64_t jl0 = rt * kTileRows;  // first row of the tile, relative to r0
    for (int64_t it = blockIdx.x; it < in_tiles; it += gridDim.x) {
      const int64_t i0 = it * kTileIn;
      const int64_t wbase = i0 / 32 * BITS;
      __syncthreads();  // the previous tile's words are no longer read
      {
        const int64_t jl = jl0 + tx;
        for (int lw = ty; lw < kWords; lw += kBlockY) {
          const int64_t W = wbase + lw;
          uint32_t v = 0;
          if (W < total_words && jl < rows) v = __ldg(w.qweight + W * w.out + r0 + jl);
          words[lw][tx] = v;
        }
      }
      __syncthreads();
      for (int jr = ty; jr < kTileRows; jr += kBlockY) {
        const int64_t jl = jl0 + jr;
        if (jl >= rows) break;
        const int64_t j = r0 + jl;
        T* out_row = dst + jl * w.in;
#pragma unroll
        for (int c = 0; c < kTileIn / 32; c++) {
          const int li = tx + 32 * c;  // input i0 + li; its code starts at bit li·BITS of the tile
          const int64_t i = i0 + li;
          if (i >= w.in) break;
          const int bit = li * BITS;
          const int lw = bit >> 5, s = bit & 31;
          uint32_t q = words[lw][jr] >> s;
          if (BITS == 3 && s > 29) q |= words[lw + 1][jr] << (32 - s);  // the code continues in the next word
          q &= kMask;
          const int64_t g = per_input_group ? static_cast<int64_t>(__ldg(w.g_idx + i))
                                            : static_cast<int64_t>(static_cast<int32_t>(i) / static_cast<int32_t>(w.group_size));
          float v;
          if (g < 0 || g >= w.groups) {
            v = quiet_nan();
          } else {
            const int64_t o = g * w.out + j;
            const float sc = __half2float(__ushort_as_half(__ldg(w.scales + o)));
            const float z = w.zeros_real ? __half2float(__ushort_as_half(__ldg(w.zeros_real + o)))
                                         : static_cast<float>(__ldg(w.zeros_int + o));
            v = __fmul_rn(sc, __fsub_rn(static_cast<float>(static_cast<int32_t>(q)), z));
          }
          st<T>(out_row + i, v);
        }
      }
    }
  }
}

template <int BITS, class T>
void LaunchAffine(cudaStream_t stream, const AffineDevice& w, int64_t r0, int64_t rows, T* dst) {
  const int64_t row_tiles = (rows + kTileRows - 1) / kTileRows;
  const int64_t in_tiles = (w.in + kTileIn - 1) / kTileIn;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(in_tiles, 1 << 20)),
                  static_cast<unsigned>(std::min<int64_t>(row_tiles, 65535)));
  const dim3 block(kTileRows, kBlockY);
  affine_dequantize_kernel<BITS, T><<<grid, block, 0, stream>>>(w, r0, rows, dst, row_tiles, in_tiles);
}

template <class T>
void DispatchAffineBits(cudaStream_t stream, const AffineDevice& w, int64_t r0, int64_t rows, T* dst) {
  switch (w.bits) {
    case 2: LaunchAffine<2, T>(stream, w, r0, rows, dst); break;
    case 3: LaunchAffine<3, T>(stream, w, r0, rows, dst); break;
    case 4: LaunchAffine<4, T>(stream, w, r0, rows, dst); break;
    case 8: LaunchAffine<8, T>(stream, w, r0, rows, dst); break;
    default: throw CudaError("affine dequantize: bits must be 2, 3, 4 or 8, got " + std::to_string(w.bits));
  }
}

// ---- codebook -----------------------------------------------------------------------------------

constexpr int kCodebookThreads = 256;

// Scale of global block b, as CodebookAbsmax in quant_decode.h (two f32 roundings when double-quantized).
__device__ __forceinline__ float codebook_absmax(const CodebookDevice& w, int64_t b) {
  if (w.absmax) return __ldg(w.absmax + b);
  const int64_t s = b >> 8;  // b / kAbsmaxSuperblock (256)
  return __fadd_rn(__ldg(w.absmax_offset + s), __fmul_rn(__ldg(w.absmax_scale + s), static_cast<float>(__ldg(w.absmax_codes + b))));
}

// Rows grid-stride over blockIdx.y, inputs grid-stride over x: one thread per output element, the
// codes (row j's byte stream along `in`) and the output both read/written along `in`.
template <int BITS, class T>
__global__ void __launch_bounds__(kCodebookThreads)
    codebook_dequantize_kernel(CodebookDevice w, int64_t r0, int64_t rows, T* __restrict__ dst) {
  constexpr uint32_t kMask = (1u << BITS) - 1;
  __shared__ float levels[1 << BITS];
  if (threadIdx.x < (1u << BITS)) levels[threadIdx.x] = w.levels[threadIdx.x];
  __syncthreads();
  const int64_t per_row = w.in / w.block_size;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t jl = blockIdx.y; jl < rows; jl += gridDim.y) {
    const int64_t j = r0 + jl;
    const uint8_t* row = w.codes + j * w.stride;
    T* out_row = dst + jl * w.in;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < w.in; i += step) {
      const int64_t bit = i * BITS;
      const int s = static_cast<int>(bit & 7);
      uint32_t q = static_cast<uint32_t>(__ldg(row + (bit >> 3))) >> s;
      if (s + BITS > 8) q |= static_cast<uint32_t>(__ldg(row + (bit >> 3) + 1)) << (8 - s);
      q &= kMask;
      // in < 2^31: the block of i by a 32-bit division
      const float a = codebook_absmax(w, j * per_row + static_cast<int32_t>(i) / static_cast<int32_t>(w.block_size));
      st<T>(out_row + i, __fmul_rn(a, levels[q]));
    }
  }
}

template <int BITS, class T>
void LaunchCodebook(cudaStream_t stream, const CodebookDevice& w, int64_t r0, int64_t rows, T* dst) {
  const int64_t xblocks = (w.in + kCodebookThreads - 1) / kCodebookThreads;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(xblocks, 1 << 16)),
                  static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  codebook_dequantize_kernel<BITS, T><<<grid, kCodebookThreads, 0, stream>>>(w, r0, rows, dst);
}

template <class T>
void DispatchCodebookBits(cudaStream_t stream, const CodebookDevice& w, int64_t r0, int64_t rows, T* dst) {
  switch (w.bits) {
    case 1: LaunchCodebook<1, T>(stream, w, r0, rows, dst); break;
    case 2: LaunchCodebook<2, T>(stream, w, r0, rows, dst); break;
    case 3: LaunchCodebook<3, T>(stream, w, r0, rows, dst); break;
    case 4: LaunchCodebook<4, T>(stream, w, r0, rows, dst); break;
    default: throw CudaError("codebook dequantize: bits must be 1, 2, 3 or 4, got " + std::to_string(w.bits));
  }
}

// ---- random bits --------------------------------------------------------------------------------

// Thread per 16-byte chunk c (grid-stride): the four Philox words of counter c. `aligned`: the
// buffer starts on a 16-byte boundary, so whole chunks are one 16-byte store.
template <bool kAligned>
__global__ void random_bits_kernel(uint8_t* __restrict__ p, int64_t bytes, uint32_t k0, uint32_t k1) {
  const int64_t chunks = (bytes + 15) / 16;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks; c += step) {
    uint32_t r[4];
    philox4x32(static_cast<uint32_t>(c), static_cast<uint32_t>(static_cast<uint64_t>(c) >> 32), kPhiloxStreamBits, 0, k0, k1, r);
    const int64_t b0 = c * 16;
    if (kAligned && b0 + 16 <= bytes) {
      *reinterpret_cast<uint4*>(p + b0) = make_uint4(r[0], r[1], r[2], r[3]);
    } else {
      for (int k = 0; k < 16 && b0 + k < bytes; k++) p[b0 + k] = static_cast<uint8_t>(r[k >> 2] >> (8 * (k & 3)));
    }
  }
}

}  // namespace

void AffineDequantize(cudaStream_t stream, const AffineDevice& w, int64_t r0, int64_t r1, void* dst, int dst_code) {
  const int64_t rows = r1 - r0;
  if (rows <= 0 || w.in <= 0) return;
  if (dst_code == kF32) DispatchAffineBits<float>(stream, w, r0, rows, static_cast<float*>(dst));
  else if (dst_code == kBF16) DispatchAffineBits<bf16>(stream, w, r0, rows, static_cast<bf16*>(dst));
  else throw CudaError(std::string("affine dequantize: the output must be f32 or bf16, got ") + CodeName(dst_code));
}

void CodebookDequantize(cudaStream_t stream, const CodebookDevice& w, int64_t r0, int64_t r1, void* dst, int dst_code) {
  const int64_t rows = r1 - r0;
  if (rows <= 0 || w.in <= 0) return;
  if (dst_code == kF32) DispatchCodebookBits<float>(stream, w, r0, rows, static_cast<float*>(dst));
  else if (dst_code == kBF16) DispatchCodebookBits<bf16>(stream, w, r0, rows, static_cast<bf16*>(dst));
  else throw CudaError(std::string("codebook dequantize: the output must be f32 or bf16, got ") + CodeName(dst_code));
}

void RandomBits(cudaStream_t stream, void* ptr, int64_t bytes, uint32_t k0, uint32_t k1) {
  if (bytes <= 0) return;
  const int64_t chunks = (bytes + 15) / 16;
  const unsigned blocks = Blocks(chunks, 256);
  auto* p = static_cast<uint8_t*>(ptr);
  if (reinterpret_cast<uintptr_t>(p) % 16 == 0) random_bits_kernel<true><<<blocks, 256, 0, stream>>>(p, bytes, k0, k1);
  else random_bits_kernel<false><<<blocks, 256, 0, stream>>>(p, bytes, k0, k1);
}

}  // namespace cuda
}  // namespace modulora
