// AVX-512 build of the quantized-weight decoders (quant_decode.h): the same loops as the baseline
// build, vectorised 16 wide. Reached only through the dispatch in quant_matmul.cc when
// active_isa() == Isa::Avx512.
// gcc 12's AVX-512 headers trip -Wuninitialized on their own dummies (see gemm_avx512.cc).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "cpu/quant_decode.h"

namespace modulora {
namespace quant_detail {
namespace {
const Decoders kAvx512Decoders = {"avx512", AffineBlock, CodebookBlock};
}  // namespace
const Decoders* decoders_avx512() { return &kAvx512Decoders; }
}  // namespace quant_detail
}  // namespace modulora
