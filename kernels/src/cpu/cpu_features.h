// Run-time ISA selection. The addon is compiled for baseline x86-64; kernels with AVX2+FMA or
// AVX-512 code paths live in their own translation units and are picked here from CPUID.
// MODULORA_CPU_ISA=generic|avx2|avx512 (or setIsa() from JS) forces a lower path, for tests.
#pragma once

namespace modulora {

enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
bool cpu_has_avx2_fma();
bool cpu_has_avx512();  // F + BW + DQ + VL
Isa best_isa();         // the fastest the CPU (and this build) supports
Isa active_isa();       // the one kernels use now
// Returns false (and changes nothing) when the CPU or the build lacks `isa`.
bool set_active_isa(Isa isa);

}  // namespace modulora
