// Decoders from the packed codes of the affine and codebook formats to f32 blocks of Ŵ or Ŵᵀ
// (see quant_detail::BlockFn in quant_matmul.h). Included by exactly one translation unit per ISA
// (quant_matmul.cc baseline, quant_matmul_avx2.cc, quant_matmul_avx512.cc), each compiled with
// its own flags: the inner loops are plain loops the compiler vectorises for that ISA.
//
// Everything here has internal linkage and uses no std:: templates: an out-of-line copy compiled
// with AVX-512 must never be merged (ODR) into a baseline caller.
//
// Each format has one direction its codes decode along cheaply:
//   affine:   along `out` (word w of consecutive rows j is contiguous: qweight[w·out + j], and so
//             are their scales and zeros), so Ŵᵀ blocks are written directly;
//   codebook: along `in` (each row is its own byte stream), so Ŵ blocks are written directly.
// The other direction decodes a strip of at most kTmpCols columns into `tmp` and transposes it.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/quant_matmul.h"

namespace modulora {
namespace quant_detail {
namespace {

inline int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }

// f16 bit pattern -> f32 value (exact).
inline float HalfToFloat(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: mant · 2^-24, exact in f32
      float f = static_cast<float>(mant) * 5.9604644775390625e-8f;
      std::memcpy(&bits, &f, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

inline void HalvesToFloats(const uint16_t* src, int64_t n, float* dst) {
  int64_t j = 0;
#if defined(__AVX512F__)
  for (; j + 16 <= n; j += 16)
    _mm512_storeu_ps(dst + j, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + j))));
#endif
#if defined(__F16C__)
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j))));
#endif
  for (; j < n; j++) dst[j] = HalfToFloat(src[j]);
}

// dst[p·ld + c] = src[c·lds + p] for p < rows, c < cols (cols <= kTmpCols), in 8 x 8 tiles.
inline void TransposeTile(const float* __restrict src, int64_t lds, int64_t cols, int64_t rows,
                          float* __restrict dst, int64_t ld) {
  for (int64_t p0 = 0; p0 < rows; p0 += 8) {
    const int64_t ph = Min(8, rows - p0);
    for (int64_t c0 = 0; c0 < cols; c0 += 8) {
      const int64_t cw = Min(8, cols - c0);
      if (ph == 8 && cw == 8) {
        for (int p = 0; p < 8; p++)
          for (int c = 0; c < 8; c++) dst[(p0 + p) * ld + c0 + c] = src[(c0 + c) * lds + p0 + p];
      } else {
        for (int64_t p = 0; p < ph; p++)
          for (int64_t c = 0; c < cw; c++) dst[(p0 + p) * ld + c0 + c] = src[(c0 + c) * lds + p0 + p];
      }
    }
  }
}

// ---- affine -----------------------------------------------------------------------------------

constexpr int64_t kAffineChunk = 512;  // columns j decoded per pass (scale/zero rows on the stack)

// Scales and zero points of group g for rows [j0, j0 + n), as f32.
inline void AffineLoadGroup(const AffineQuant& w, int64_t g, int64_t j0, int64_t n, float* sc, float* zc) {
  const int64_t o = g * w.out + j0;
  HalvesToFloats(w.scales + o, n, sc);
  if (w.zeros_real) {
    HalvesToFloats(w.zeros_real + o, n, zc);
  } else {
    const uint8_t* z = w.zeros_int + o;
    for (int64_t j = 0; j < n; j++) zc[j] = static_cast<float>(z[j]);
  }
}

// Natural direction: dst[(i − i0)·ld + (j − j0)] = Ŵ[j, i] for i in [i0, i0+ni), j in [j0, j0+nj).
template <int BITS>
void AffineDecodeT(const AffineQuant& w, int64_t i0, int64_t ni, int64_t j0, int64_t nj, float* __restrict dst,
                   int64_t ld) {
  constexpr uint32_t kMask = (1u << BITS) - 1;
  alignas(64) float sc[kAffineChunk];
  alignas(64) float zc[kAffineChunk];
  for (int64_t jc = 0; jc < nj; jc += kAffineChunk) {
    const int64_t n = Min(kAffineChunk, nj - jc);
    const int64_t jb = j0 + jc;
    // Group of input i: gIdx[i] (act-order), else ⌊i / groupSize⌋ tracked by its end.
    int64_t cur = -1;
    int64_t g = w.g_idx ? 0 : i0 / w.group_size;
    int64_t gEnd = w.g_idx ? 0 : (g + 1) * w.group_size;
    for (int64_t i = i0; i < i0 + ni; i++) {
      if (w.g_idx) {
        g = w.g_idx[i];
      } else if (i == gEnd) {
        g++;
        gEnd += w.group_size;
      }
      if (g != cur) {
        AffineLoadGroup(w, g, jb, n, sc, zc);
        cur = g;
      }
      const int64_t bit = i * BITS;
      const int s = static_cast<int>(bit & 31);
      const uint32_t* __restrict q0 = w.qweight + (bit >> 5) * w.out + jb;
      float* __restrict d = dst + (i - i0) * ld + jc;
      if (BITS == 3 && s > 29) {  // code i crosses into the next word
        const uint32_t* __restrict q1 = q0 + w.out;
        const int s1 = 32 - s;
        for (int64_t j = 0; j < n; j++) {
          const uint32_t q = ((q0[j] >> s) | (q1[j] << s1)) & kMask;
          d[j] = sc[j] * (static_cast<float>(static_cast<int32_t>(q)) - zc[j]);
        }
      } else {
        for (int64_t j = 0; j < n; j++) {
          const uint32_t q = (q0[j] >> s) & kMask;
          d[j] = sc[j] * (static_cast<float>(static_cast<int32_t>(q)) - zc[j]);
        }
      }
    }
  }
}

template <int BITS>
void AffineBlockBits(const AffineQuant& w, bool transposed, int64_t p0, int64_t kb, int64_t c0, int64_t cols,
                     float* dst, int64_t ld, float* tmp) {
  if (transposed) {  // B(p, c) = Ŵ[c0 + c, p0 + p]: rows p of dst run along out
    AffineDecodeT<BITS>(w, p0, kb, c0, cols, dst, ld);
    return;
  }
  for (int64_t ct = 0; ct < cols; ct += kTmpCols) {  // tmp[c·kb + p] = Ŵ[p0 + p, c0 + ct + c]
    const int64_t tw = Min(kTmpCols, cols - ct);
    AffineDecodeT<BITS>(w, c0 + ct, tw, p0, kb, tmp, kb);
    TransposeTile(tmp, kb, tw, kb, dst + ct, ld);
  }
}

void AffineBlock(const void* weight, bool transposed, int64_t p0, int64_t kb, int64_t c0, int64_t cols, float* dst,
                 int64_t ld, float* tmp) {
  const AffineQuant& w = *static_cast<const AffineQuant*>(weight);
  switch (w.bits) {
    case 2: AffineBlockBits<2>(w, transposed, p0, kb, c0, cols, dst, ld, tmp); break;
    case 3: AffineBlockBits<3>(w, transposed, p0, kb, c0, cols, dst, ld, tmp); break;
    case 4: AffineBlockBits<4>(w, transposed, p0, kb, c0, cols, dst, ld, tmp); break;
    default: AffineBlockBits<8>(w, transposed, p0, kb, c0, cols, dst, ld, tmp); break;
  }
}

// ---- codebook ---------------------------------------------------------------------------------

// Scale of global block b. The double-quantized form is offset + scale·code with two f32
// roundings, as the TS reference computes it; the volatile product keeps the compiler from
// contracting it into one FMA (one rounding) in the FMA-enabled translation units.
inline float CodebookAbsmax(const CodebookQuant& w, int64_t b) {
  if (w.absmax) return w.absmax[b];
  const int64_t s = b / kAbsmaxSuperblock;
  volatile float prod = w.absmax_scale[s] * static_cast<float>(w.absmax_codes[b]);
  return w.absmax_offset[s] + prod;
}

template <int BITS>
inline uint32_t CodeAt(const uint8_t* row, int64_t i) {
  const int64_t bit = i * BITS;
  const int s = static_cast<int>(bit & 7);
  uint32_t v = row[bit >> 3] >> s;
  if (s + BITS > 8) v |= static_cast<uint32_t>(row[(bit >> 3) + 1]) << (8 - s);
  return v & ((1u << BITS) - 1);
}

// Natural direction: dst[(j − j0)·ld + (i − i0)] = Ŵ[j, i] for j in [j0, j0+nj), i in [i0, i0+ni).
template <int BITS>
void CodebookDecode(const CodebookQuant& w, int64_t j0, int64_t nj, int64_t i0, int64_t ni, float* __restrict dst,
                    int64_t ld) {
  constexpr int kLevels = 1 << BITS;
  constexpr uint32_t kMask = kLevels - 1;
  const int64_t perRow = w.in / w.block_size;
  const int64_t iEnd = i0 + ni;
  for (int64_t j = j0; j < j0 + nj; j++) {
    const uint8_t* row = w.codes + j * w.stride;
    float* __restrict d = dst + (j - j0) * ld;  // d[i − i0]
    for (int64_t i = i0; i < iEnd;) {
      const int64_t b = i / w.block_size;
      const int64_t segEnd = Min(iEnd, (b + 1) * w.block_size);
      // absmax · level for every code of this block: the same f32 product the reference rounds.
      const float a = CodebookAbsmax(w, j * perRow + b);
      float lut[kLevels];
      for (int q = 0; q < kLevels; q++) lut[q] = a * w.levels[q];
      for (; i < segEnd && (i & 7); i++) d[i - i0] = lut[CodeAt<BITS>(row, i)];
      for (; i + 8 <= segEnd; i += 8) {  // 8 codes fill exactly BITS bytes (little-endian load)
        uint32_t v = 0;
        std::memcpy(&v, row + (i >> 3) * BITS, BITS);
        for (int k = 0; k < 8; k++) d[i - i0 + k] = lut[(v >> (k * BITS)) & kMask];
      }
      for (; i < segEnd; i++) d[i - i0] = lut[CodeAt<BITS>(row, i)];
    }
  }
}

template <int BITS>
void CodebookBlockBits(const CodebookQuant& w, bool transposed, int64_t p0, int64_t kb, int64_t c0, int64_t cols,
                       float* dst, int64_t ld, float* tmp) {
  if (!transposed) {  // B(p, c) = Ŵ[p0 + p, c0 + c]: rows p of dst run along in
    CodebookDecode<BITS>(w, p0, kb, c0, cols, dst, ld);
    return;
  }
  for (int64_t ct = 0; ct < cols; ct += kTmpCols) {  // tmp[c·kb + p] = Ŵ[c0 + ct + c, p0 + p]
    const int64_t tw = Min(kTmpCols, cols - ct);
    CodebookDecode<BITS>(w, c0 + ct, tw, p0, kb, tmp, kb);
    TransposeTile(tmp, kb, tw, kb, dst + ct, ld);
  }
}

void CodebookBlock(const void* weight, bool transposed, int64_t p0, int64_t kb, int64_t c0, int64_t cols, float* dst,
                   int64_t ld, float* tmp) {
  const CodebookQuant& w = *static_cast<const CodebookQuant*>(weight);
  switch (w.bits) {
    case 1: CodebookBlockBits<1>(w, transposed, p0, kb, c0, cols, dst, ld, tmp); break;
    case 2: CodebookBlockBits<2>(w, transposed, p0, kb, c0, cols, dst, ld, tmp); break;
    case 3: CodebookBlockBits<3>(w, transposed, p0, kb, c0, cols, dst, ld, tmp); break;
    default: CodebookBlockBits<4>(w, transposed, p0, kb, c0, cols, dst, ld, tmp); break;
  }
}

}  // namespace
}  // namespace quant_detail
}  // namespace modulora
