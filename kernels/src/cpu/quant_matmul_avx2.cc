// AVX2 + FMA + F16C build of the quantized-weight decoders (quant_decode.h): the same loops as
// the baseline build, vectorised 8 wide, with hardware f16 conversion. Reached only through the
// dispatch in quant_matmul.cc when active_isa() == Isa::Avx2.
#include "cpu/quant_decode.h"

namespace modulora {
namespace quant_detail {
namespace {
const Decoders kAvx2Decoders = {"avx2", AffineBlock, CodebookBlock};
}  // namespace
const Decoders* decoders_avx2() { return &kAvx2Decoders; }
}  // namespace quant_detail
}  // namespace modulora
