// Philox4x32-10 counter-based RNG (Salmon et al., SC 2011), bit-identical to the TypeScript
// version in @modulora/tensor (src/random.ts), so a mask drawn here can be reproduced there and
// on any other backend: the output for (key, counter) depends on nothing else.
#pragma once
#include <cmath>
#include <cstdint>

namespace modulora {

inline void philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, uint32_t out[4]) {
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// The key of a JS seed (a safe integer), exactly as seedToKey() in random.ts.
inline void philox_seed_to_key(double seed, uint32_t* k0, uint32_t* k1) {
  double s = seed < 0 ? -seed : seed;
  *k0 = static_cast<uint32_t>(static_cast<uint64_t>(std::fmod(s, 4294967296.0)));
  uint32_t hi = static_cast<uint32_t>(static_cast<uint64_t>(std::floor(s / 4294967296.0)) & 0xFFFFFFFFu);
  *k1 = hi ^ (seed < 0 ? 0x80000000u : 0u);
}

// Stream ids in the third counter word, so that different uses never share random numbers:
// 0 uniform fill, 1 normal fill, 2 dropout masks.
constexpr uint32_t kPhiloxStreamUniform = 0;
constexpr uint32_t kPhiloxStreamNormal = 1;
constexpr uint32_t kPhiloxStreamDropout = 2;

// Uniform in [0, 1) with 24-bit resolution from one output word (as uniformFill in random.ts).
inline float philox_word_to_unit(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }

}  // namespace modulora
