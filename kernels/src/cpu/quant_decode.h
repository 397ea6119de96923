// Decoders from the packed codes of the affine and codebook formats to f32 blocks of Ŵ or Ŵᵀ in
// the gemm micro-kernel's panel layout (see quant_detail::BlockFn in quant_matmul.h). Included by
// exactly one translation unit per ISA (quant_matmul.cc baseline, quant_matmul_avx2.cc,
// quant_matmul_avx512.cc), each compiled with its own flags: the affine loops are plain loops the
// compiler vectorises for that ISA; the codebook lookup and the 8 x 8 transposes have intrinsics
// paths under __AVX512F__ / __AVX2__ with a portable fallback.
//
// Everything here has internal linkage and uses no std:: templates: an out-of-line copy compiled
// with AVX-512 must never be merged (ODR) into a baseline caller.
//
// Each format has one direction its codes decode along cheaply:
//   affine:   along `out` (word w of consecutive rows j is contiguous, qweight[w·out + j], and so
//             are their scales and zeros), so Ŵᵀ blocks are written directly;
//   codebook: along `in` (each row is its own byte stream), so Ŵ blocks are written directly.
// The other direction decodes strips of at most kTmpCols columns into `tmp`, then transposes.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) || defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/quant_matmul.h"

namespace modulora {
namespace quant_detail {
namespace {

inline int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }

// ---- f16 ----------------------------------------------------------------------------------------

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
      const float f = static_cast<float>(mant) * 5.9604644775390625e-8f;
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

// ---- panel layout and transposes ----------------------------------------------------------------
//
// A kb x cols block in panel layout: element (p, c) at dst[(c / nr)·nr·kb + p·nr + c % nr], the
// nr-wide column panels of the micro-kernel one after another. With nr >= cols it is a plain
// row-major block with leading dimension nr.

// dst[p·ld + c] = src[c·lds + p] for p, c < 8.
inline void Transpose8x8(const float* __restrict src, int64_t lds, float* __restrict dst, int64_t ld) {
#if defined(__AVX2__)
  __m256 r[8], t[8];
  for (int c = 0; c < 8; c++) r[c] = _mm256_loadu_ps(src + c * lds);
  for (int k = 0; k < 4; k++) {
    t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  for (int k = 0; k < 2; k++) {
    r[4 * k + 0] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
    r[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
    r[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
    r[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
  }
  for (int q = 0; q < 4; q++) {
    _mm256_storeu_ps(dst + q * ld, _mm256_permute2f128_ps(r[q], r[4 + q], 0x20));
    _mm256_storeu_ps(dst + (q + 4) * ld, _mm256_permute2f128_ps(r[q], r[4 + q], 0x31));
  }
#else
  for (int p = 0; p < 8; p++)
    for (int c = 0; c < 8; c++) dst[p * ld + c] = src[c * lds + p];
#endif
}

// dst[p·ld + c] = src[c·lds + p] for p < rows, c < cols.
inline void TransposeTile(const float* __restrict src, int64_t lds, int64_t cols, int64_t rows,
                          float* __restrict dst, int64_t ld) {
  int64_t p0 = 0;
  for (; p0 + 8 <= rows; p0 += 8) {
    int64_t c0 = 0;
    for (; c0 + 8 <= cols; c0 += 8) Transpose8x8(src + c0 * lds + p0, lds, dst + p0 * ld + c0, ld);
    for (int64_t p = p0; p < p0 + 8; p++)
      for (int64_t c = c0; c < cols; c++) dst[p * ld + c] = src[c * lds + p];
  }
  for (int64_t p = p0; p < rows; p++)
    for (int64_t c = 0; c < cols; c++) dst[p * ld + c] = src[c * lds + p];
}

// Columns [ct, ct + tw) of a kb x cols panel-layout block from tmp[(c − ct)·kb + p].
inline void TransposeIntoPanels(const float* tmp, int64_t kb, int64_t ct, int64_t tw, float* dst, int64_t nr) {
  for (int64_t a = 0; a < tw;) {
    const int64_t c = ct + a, off = c % nr, len = Min(tw - a, nr - off);
    TransposeTile(tmp + a * kb, kb, len, kb, dst + (c / nr) * nr * kb + off, nr);
    a += len;
  }
}

// Strip width for the transposing direction: as many columns of depth kb as `tmp` holds (at
// least kTmpCols), in whole panels when they are narrow. Shallow blocks (dequantize's row tasks)
// get wide strips, so each output row is written in long runs.
inline int64_t StripCols(int64_t nr, int64_t kb) {
  const int64_t fit = kTmpCols * kTmpDepth / (kb > 0 ? kb : 1);
  return nr < fit ? fit / nr * nr : fit;
}

// ---- affine -------------------------------------------------------------------------------------

constexpr int64_t kAffineChunk = 512;  // columns j decoded per pass (scale/zero rows on the stack)
static_assert(kTmpDepth <= kAffineChunk, "a transposition strip must fit one affine chunk");

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

// n values of one input's codes along out: d[j] = sc[j]·(q − zc[j]), q from word row q0 (and q1
// when the code crosses into the next word) at bit offset s.
template <int BITS, bool CROSS>
inline void AffineRun(const uint32_t* __restrict q0, const uint32_t* __restrict q1, int s, const float* __restrict sc,
                      const float* __restrict zc, float* __restrict d, int64_t n) {
  constexpr uint32_t kMask = (1u << BITS) - 1;
  for (int64_t j = 0; j < n; j++) {
    const uint32_t q = CROSS ? ((q0[j] >> s) | (q1[j] << (32 - s))) & kMask : (q0[j] >> s) & kMask;
    d[j] = sc[j] * (static_cast<float>(static_cast<int32_t>(q)) - zc[j]);
  }
}

// Ŵᵀ block: element (i − i0, j − j0) = Ŵ[j, i] for i in [i0, i0+ni), j in [j0, j0+nj), in panel
// layout of width nr (nr <= kAffineChunk). Inputs i outermost: each word row of qweight is read
// once per block, sequentially across all its panels.
template <int BITS>
void AffineDecodeT(const AffineQuant& w, int64_t i0, int64_t ni, int64_t j0, int64_t nj, float* dst, int64_t nr) {
  alignas(64) float sc[kAffineChunk];
  alignas(64) float zc[kAffineChunk];
  const int64_t ps = nr * ni;  // panel stride
  const int64_t chunk = kAffineChunk / nr * nr;
  const int64_t words = (w.in + 31) / 32 * BITS;  // word rows of qweight
  for (int64_t jc = 0; jc < nj; jc += chunk) {
    const int64_t n = Min(chunk, nj - jc);
    const int64_t jb = j0 + jc;
    float* base = dst + (jc / nr) * ps;
    // Group of input i: gIdx[i] (act-order), else ⌊i / groupSize⌋ tracked by its end.
    int64_t cur = -1, lastWord = -1;
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
      const uint32_t* q0 = w.qweight + (bit >> 5) * w.out + jb;
      if ((bit >> 5) != lastWord) {  // entering a word row: fetch the next one (out·4 bytes away,
        lastWord = bit >> 5;         // too far for the hardware prefetchers to guess)
        if (lastWord + 1 < words)
          for (int64_t j = 0; j < n; j += 16) __builtin_prefetch(q0 + w.out + j);
      }
      const bool cross = BITS == 3 && s > 29;  // code i continues in the next word
      float* row = base + (i - i0) * nr;
      for (int64_t jp = 0; jp < n; jp += nr, row += ps) {
        const int64_t len = Min(nr, n - jp);
        if (cross) AffineRun<BITS, true>(q0 + jp, q0 + w.out + jp, s, sc + jp, zc + jp, row, len);
        else AffineRun<BITS, false>(q0 + jp, q0, s, sc + jp, zc + jp, row, len);
      }
    }
  }
}

template <int BITS>
void AffineBlockBits(const AffineQuant& w, bool transposed, int64_t p0, int64_t kb, int64_t c0, int64_t cols,
                     int64_t nr, float* dst, float* tmp) {
  if (transposed) {  // B(p, c) = Ŵ[c0 + c, p0 + p]: the codes' own direction
    AffineDecodeT<BITS>(w, p0, kb, c0, cols, dst, nr);
    return;
  }
  const int64_t strip = StripCols(nr, kb);
  for (int64_t ct = 0; ct < cols; ct += strip) {  // tmp[c·kb + p] = Ŵ[p0 + p, c0 + ct + c]
    const int64_t tw = Min(strip, cols - ct);
    AffineDecodeT<BITS>(w, c0 + ct, tw, p0, kb, tmp, kb);
    TransposeIntoPanels(tmp, kb, ct, tw, dst, nr);
  }
}

void AffineBlock(const void* weight, bool transposed, int64_t p0, int64_t kb, int64_t c0, int64_t cols, int64_t nr,
                 float* dst, float* tmp) {
  const AffineQuant& w = *static_cast<const AffineQuant*>(weight);
  switch (w.bits) {
    case 2: AffineBlockBits<2>(w, transposed, p0, kb, c0, cols, nr, dst, tmp); break;
    case 3: AffineBlockBits<3>(w, transposed, p0, kb, c0, cols, nr, dst, tmp); break;
    case 4: AffineBlockBits<4>(w, transposed, p0, kb, c0, cols, nr, dst, tmp); break;
    default: AffineBlockBits<8>(w, transposed, p0, kb, c0, cols, nr, dst, tmp); break;
  }
}

// ---- codebook -----------------------------------------------------------------------------------

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

// Lanes of codes decoded per step: 16 codes fill 2·BITS bytes, 8 codes fill BITS bytes.
#if defined(__AVX512F__)
constexpr int kCodeLanes = 16;
#else
constexpr int kCodeLanes = 8;
#endif

// d[k] = lut[code k] for the kCodeLanes codes whose bit stream starts at `src` (little-endian).
template <int BITS>
inline void LookupCodes(const uint8_t* src, const float* lut, float* __restrict d) {
  constexpr uint32_t kMask = (1u << BITS) - 1;
#if defined(__AVX512F__)
  uint64_t v = 0;
  std::memcpy(&v, src, 2 * BITS);
  const __m512i b = _mm512_set1_epi64(static_cast<long long>(v));
  const __m512i lo = _mm512_srlv_epi64(b, _mm512_set_epi64(7 * BITS, 6 * BITS, 5 * BITS, 4 * BITS, 3 * BITS, 2 * BITS, BITS, 0));
  const __m512i hi = _mm512_srlv_epi64(
      b, _mm512_set_epi64(15 * BITS, 14 * BITS, 13 * BITS, 12 * BITS, 11 * BITS, 10 * BITS, 9 * BITS, 8 * BITS));
  const __m512i idx = _mm512_and_si512(
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(lo)), _mm512_cvtepi64_epi32(hi), 1),
      _mm512_set1_epi32(kMask));
  _mm512_storeu_ps(d, _mm512_permutexvar_ps(idx, _mm512_load_ps(lut)));
#elif defined(__AVX2__)
  uint32_t v = 0;
  std::memcpy(&v, src, BITS);
  const __m256i shifts = _mm256_set_epi32(7 * BITS, 6 * BITS, 5 * BITS, 4 * BITS, 3 * BITS, 2 * BITS, BITS, 0);
  const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(v)), shifts),
                                       _mm256_set1_epi32(kMask));
  __m256 r = _mm256_permutevar8x32_ps(_mm256_load_ps(lut), idx);  // codes 0..7
  if (BITS == 4) {  // codes 8..15 from the upper half, chosen by bit 3
    const __m256 up = _mm256_permutevar8x32_ps(_mm256_load_ps(lut + 8), idx);
    r = _mm256_blendv_ps(r, up, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
  _mm256_storeu_ps(d, r);
#else
  uint32_t v = 0;
  std::memcpy(&v, src, BITS);
  for (int k = 0; k < 8; k++) d[k] = lut[(v >> (k * BITS)) & kMask];
#endif
}

// d[i − i0] = Ŵ[j, i] for i in [i0, i0 + ni): one row along its own byte stream.
template <int BITS>
void CodebookDecodeRow(const CodebookQuant& w, int64_t j, int64_t i0, int64_t ni, float* __restrict d) {
  constexpr int kLevels = 1 << BITS;
  const int64_t perRow = w.in / w.block_size;
  const int64_t iEnd = i0 + ni;
  const uint8_t* row = w.codes + j * w.stride;
  alignas(64) float lut[16] = {};
  for (int64_t i = i0; i < iEnd;) {
    const int64_t b = i / w.block_size;
    const int64_t segEnd = Min(iEnd, (b + 1) * w.block_size);
    // absmax · level for every code of this block: the same f32 product the reference rounds.
    const float a = CodebookAbsmax(w, j * perRow + b);
    for (int q = 0; q < kLevels; q++) lut[q] = a * w.levels[q];
    for (; i < segEnd && (i % kCodeLanes); i++) d[i - i0] = lut[CodeAt<BITS>(row, i)];
    for (; i + kCodeLanes <= segEnd; i += kCodeLanes) LookupCodes<BITS>(row + i / 8 * BITS, lut, d + (i - i0));
    for (; i < segEnd; i++) d[i - i0] = lut[CodeAt<BITS>(row, i)];
  }
}

// Starts fetching what decoding row j over [i0, i0 + ni) will read: rows are `stride` bytes apart,
// a stride the hardware prefetchers do not follow from one short run to the next.
template <int BITS>
inline void CodebookPrefetchRow(const CodebookQuant& w, int64_t j, int64_t i0, int64_t ni) {
  if (j >= w.out) return;
  const uint8_t* row = w.codes + j * w.stride;
  for (int64_t byte = i0 * BITS / 8; byte < ((i0 + ni) * BITS + 7) / 8; byte += 64) __builtin_prefetch(row + byte);
  const int64_t b = j * (w.in / w.block_size) + i0 / w.block_size;
  if (w.absmax) __builtin_prefetch(w.absmax + b);
  else __builtin_prefetch(w.absmax_codes + b);
}

template <int BITS>
void CodebookBlockBits(const CodebookQuant& w, bool transposed, int64_t p0, int64_t kb, int64_t c0, int64_t cols,
                       int64_t nr, float* dst, float* tmp) {
  if (!transposed) {  // B(p, c) = Ŵ[p0 + p, c0 + c]: the codes' own direction, row by row
    if (nr >= cols) {
      for (int64_t p = 0; p < kb; p++) {
        CodebookPrefetchRow<BITS>(w, p0 + p + 1, c0, cols);
        CodebookDecodeRow<BITS>(w, p0 + p, c0, cols, dst + p * nr);
      }
      return;
    }
    const int64_t chunk = kTmpCols * kTmpDepth / nr * nr;  // row pieces staged in tmp, then split into panels
    for (int64_t p = 0; p < kb; p++) {
      CodebookPrefetchRow<BITS>(w, p0 + p + 1, c0, cols);
      for (int64_t cc = 0; cc < cols; cc += chunk) {
        const int64_t n = Min(chunk, cols - cc);
        CodebookDecodeRow<BITS>(w, p0 + p, c0 + cc, n, tmp);
        for (int64_t jp = 0; jp < n; jp += nr)
          std::memcpy(dst + (cc + jp) / nr * nr * kb + p * nr, tmp + jp, sizeof(float) * Min(nr, n - jp));
      }
    }
    return;
  }
  const int64_t strip = StripCols(nr, kb);
  for (int64_t ct = 0; ct < cols; ct += strip) {  // tmp[c·kb + p] = Ŵ[c0 + ct + c, p0 + p]
    const int64_t tw = Min(strip, cols - ct);
    for (int64_t c = 0; c < tw; c++) {
      CodebookPrefetchRow<BITS>(w, c0 + ct + c + 1, p0, kb);
      CodebookDecodeRow<BITS>(w, c0 + ct + c, p0, kb, tmp + c * kb);
    }
    TransposeIntoPanels(tmp, kb, ct, tw, dst, nr);
  }
}

void CodebookBlock(const void* weight, bool transposed, int64_t p0, int64_t kb, int64_t c0, int64_t cols, int64_t nr,
                   float* dst, float* tmp) {
  const CodebookQuant& w = *static_cast<const CodebookQuant*>(weight);
  switch (w.bits) {
    case 1: CodebookBlockBits<1>(w, transposed, p0, kb, c0, cols, nr, dst, tmp); break;
    case 2: CodebookBlockBits<2>(w, transposed, p0, kb, c0, cols, nr, dst, tmp); break;
    case 3: CodebookBlockBits<3>(w, transposed, p0, kb, c0, cols, nr, dst, tmp); break;
    default: CodebookBlockBits<4>(w, transposed, p0, kb, c0, cols, nr, dst, tmp); break;
  }
}

}  // namespace
}  // namespace quant_detail
}  // namespace modulora
