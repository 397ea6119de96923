// CUDA kernels of the quantized linear product (ModuLoRA's frozen low-bit base weight): rows of Ŵ
// decoded on the device from the packed codes, into a dense row-major buffer of f32 or bf16, for
// the TypeScript format kernels (src/cuda/quant.ts of @modulora/tensor) to multiply with cuBLASLt
// block by block; and a Philox fill of raw bytes (random packed codes for benchmarks).
//
// The layouts and the f32 arithmetic of ŵ are those of src/cpu/quant_matmul.h and
// src/cpu/quant_decode.h; the decoded f32 values are bit-identical to the CPU's (bf16 output: the
// same f32 value rounded to nearest even once).
//
// Plain C++ (no CUDA device types): included by bind_quant.cc (g++) and quant.cu (nvcc).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cpu/quant_matmul.h"

namespace modulora {
namespace cuda {

// Device views of one weight: the CPU kernels' views (cpu/quant_matmul.h, which documents the
// layouts), holding device addresses here; the TypeScript layer has checked every length and dtype.
// A g_idx value outside [0, groups) decodes to NaN on the device.
using AffineDevice = AffineQuant;
using CodebookDevice = CodebookQuant;

// Rows [r0, r1) of Ŵ into dst, row-major [r1 − r0, in] (leading dimension in), as f32 (dst_code
// kF32) or bf16 (kBF16). Queued on `stream`; nothing is launched when the range or `in` is empty.
//
// affine: one block per tile of 32 rows × 128 inputs; the tile's code words (consecutive rows are
// consecutive words of qweight) are read coalesced into shared memory, then each warp decodes one
// row at a time along `in`, so the writes are coalesced too.
// codebook: the codes run along `in` like the output: one thread per output element.
void AffineDequantize(cudaStream_t stream, const AffineDevice& w, int64_t r0, int64_t r1, void* dst, int dst_code);
void CodebookDequantize(cudaStream_t stream, const CodebookDevice& w, int64_t r0, int64_t r1, void* dst, int dst_code);

// The Philox stream id (third counter word) of random bits; 0, 1 and 2 are the uniform, normal and
// dropout streams of src/cpu/philox.h.
constexpr uint32_t kPhiloxStreamBits = 3;

// Fills `bytes` bytes at `ptr` with uniform random bits: bytes [16c, 16c + 16) are the four output
// words of Philox4x32-10 at counter (c mod 2^32, ⌊c / 2^32⌋, kPhiloxStreamBits, 0) and key
// (k0, k1), each word little-endian. Any alignment; nothing is launched for 0 bytes.
void RandomBits(cudaStream_t stream, void* ptr, int64_t bytes, uint32_t k0, uint32_t k1);

}  // namespace cuda
}  // namespace modulora
