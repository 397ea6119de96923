#include "cpu/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace modulora {
namespace {

Isa DetectBest() {
#if defined(MODULORA_X86_DISPATCH) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma")) {
    return Isa::Avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Generic;
}

Isa InitialIsa() {
  Isa best = DetectBest();
  if (const char* env = std::getenv("MODULORA_CPU_ISA")) {
    Isa want = best;
    if (std::strcmp(env, "generic") == 0) want = Isa::Generic;
    else if (std::strcmp(env, "avx2") == 0) want = Isa::Avx2;
    else if (std::strcmp(env, "avx512") == 0) want = Isa::Avx512;
    if (static_cast<int>(want) <= static_cast<int>(best)) return want;
  }
  return best;
}

const Isa g_best = DetectBest();
std::atomic<int> g_active{static_cast<int>(InitialIsa())};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "generic";
  }
}

bool cpu_has_avx2_fma() { return static_cast<int>(g_best) >= static_cast<int>(Isa::Avx2); }
bool cpu_has_avx512() { return g_best == Isa::Avx512; }
Isa best_isa() { return g_best; }
Isa active_isa() { return static_cast<Isa>(g_active.load(std::memory_order_relaxed)); }

bool set_active_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(g_best)) return false;
  g_active.store(static_cast<int>(isa));
  return true;
}

}  // namespace modulora
