// Fused dequantize-matmul on the CPU for the two built-in quantized weight formats (ModuLoRA's
// frozen low-bit base weight). W is [out, in]; Ŵ its dequantized values; X row-major, f32.
//
//   forward:        Y[m, out] = X[m, in] · Ŵᵀ     (+ Y when accumulate)
//   input gradient: dX[m, in] = dY[m, out] · Ŵ    (+ dX when accumulate)
//   dequantize:     rows [r0, r1) of Ŵ as f32, row-major
//
// Formats (the stored layouts of packages/core/src/formats/types.ts):
//   affine   ŵ[j,i] = scale[g,j] · (q − zero[g,j]) in f32, g = gIdx[i] or ⌊i / groupSize⌋.
//            qweight u32 [⌈in/32⌉·bits, out] (GPTQ: column j is row j's code stream along `in`,
//            low bits first, code i at bit i·bits, word w at qweight[w·out + j]; 3-bit codes
//            cross words); scales f16 [groups, out]; zeros u8 or f16 [groups, out].
//   codebook ŵ[j,i] = absmax[j·in/blockSize + ⌊i/blockSize⌋] · levels[q]. codes u8
//            [out, ⌈in·bits/8⌉], each row a code stream along `in`, low bits first; absmax f32
//            per block, or double-quantized: offset[s] + scale[s]·code (f32 ops, s = ⌊b/256⌋).
//
// Implementation (quant_matmul.cc): the SGEMM blocking of gemm.cc with the B operand decoded
// from the codes straight into the micro-kernel's packed kc x nc panels, block by block, so Ŵ
// never exists in f32 beyond one packed block per thread. A packing, the register-tiled
// micro-kernel (or, for m <= mr/4, its matrix-vector kernel) and the ISA dispatch are gemm's
// (gemm_detail tables); the decoders are compiled once per ISA (quant_decode.h in
// quant_matmul{,_avx2,_avx512}.cc). Threads split the columns of the result (out for the forward,
// in for the input gradient) in nr-aligned ranges, so no weight is decoded twice; every element
// is summed in the same order whatever the split, so results do not depend on the thread count.
// Scratch per thread: mc x kc + kc x nc + 64 x 512 floats (about 1 MiB), kept per thread like
// gemm's.
#pragma once
#include <cstdint>

namespace modulora {

// Views of one quantized weight (arrays are borrowed; the binding has checked every length).
struct AffineQuant {
  int64_t out, in;
  int bits;                  // 2, 3, 4 or 8
  int64_t group_size;        // used when g_idx is null (then group_size * groups == in)
  int64_t groups;
  const uint32_t* qweight;   // [⌈in/32⌉·bits, out]
  const uint16_t* scales;    // f16 bits [groups, out]
  const uint8_t* zeros_int;  // u8 [groups, out], or null when zeros_real is set
  const uint16_t* zeros_real;  // f16 bits [groups, out], or null
  const int32_t* g_idx;      // [in], values in [0, groups), or null
};

struct CodebookQuant {
  int64_t out, in;
  int bits;                  // 1..4
  int64_t block_size;        // divides in
  int64_t stride;            // bytes per row of codes: ⌈in·bits/8⌉
  const uint8_t* codes;      // [out, stride]
  const float* levels;       // [2^bits]
  const float* absmax;       // [out·in/block_size], or null when double-quantized
  const uint8_t* absmax_codes;   // [blocks]
  const float* absmax_scale;     // [⌈blocks/256⌉]
  const float* absmax_offset;    // [⌈blocks/256⌉]
};

// Blocks of 256 absmax codes share one scale and offset (core's ABSMAX_SUPERBLOCK).
constexpr int64_t kAbsmaxSuperblock = 256;

void affine_matmul(const AffineQuant& w, int64_t m, const float* x, float* y, bool accumulate);
void affine_matmul_input_grad(const AffineQuant& w, int64_t m, const float* dy, float* dx, bool accumulate);
void affine_dequantize(const AffineQuant& w, int64_t row_start, int64_t row_end, float* out);

void codebook_matmul(const CodebookQuant& w, int64_t m, const float* x, float* y, bool accumulate);
void codebook_matmul_input_grad(const CodebookQuant& w, int64_t m, const float* dy, float* dx, bool accumulate);
void codebook_dequantize(const CodebookQuant& w, int64_t row_start, int64_t row_end, float* out);

// The decode path and blocking the dispatch picks now (for tests and benchmark reports).
struct QuantMatmulInfo {
  const char* isa;
  int mr, nr;      // register tile of the gemm micro-kernel
  int kc, mc, nc;  // depth, rows of X per packed block, columns of Ŵ decoded per packed block
};
QuantMatmulInfo quant_matmul_info();

// ---- Internal: the per-ISA decoder tables (quant_decode.h instantiated in three TUs). ----
namespace quant_detail {

// Writes B(p, c) for p < kb, c < cols in panel layout: element (p, c) at
// dst[(c / nr)·nr·kb + p·nr + c % nr], the nr-wide column panels of the gemm micro-kernel one
// after another (with nr >= cols simply row-major with leading dimension nr), where
//   transposed: B(p, c) = Ŵ[c0 + c, p0 + p]   (forward operand: depth along in)
//   otherwise:  B(p, c) = Ŵ[p0 + p, c0 + c]   (input-gradient operand, and plain rows)
// Columns of the last panel beyond `cols` are left untouched. `weight` is an AffineQuant or
// CodebookQuant; `tmp` holds kTmpCols x kTmpDepth floats; kb <= kTmpDepth; in transposed mode
// nr <= kTmpDepth.
using BlockFn = void (*)(const void* weight, bool transposed, int64_t p0, int64_t kb, int64_t c0, int64_t cols,
                         int64_t nr, float* dst, float* tmp);

constexpr int64_t kTmpCols = 64;
constexpr int64_t kTmpDepth = 512;

struct Decoders {
  const char* isa;
  BlockFn affine;
  BlockFn codebook;
};

const Decoders* decoders_generic();
#if defined(MODULORA_X86_DISPATCH)
const Decoders* decoders_avx2();
const Decoders* decoders_avx512();
#endif

}  // namespace quant_detail
}  // namespace modulora
