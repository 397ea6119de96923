// Data movement: strided copy, dtype cast, row gather and its gradient scatter-add.
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <utility>

#include "cpu/elementwise.h"
#include "cpu/threadpool.h"

namespace modulora {
namespace {

// --- copyStrided ------------------------------------------------------------------------------

constexpr int64_t kCopyGrain = 65536;  // elements per chunk: copies are memory-bound
constexpr int64_t kTile = 32;          // transpose tile edge

// One run along the innermost dim: memcpy when both sides are contiguous, a broadcast store when
// the source repeats one element, else a strided element loop.
template <class E>
void copy_run(const E* s, int64_t ss, E* d, int64_t ds, int64_t n) {
  if (ss == 1 && ds == 1) {
    std::memcpy(d, s, static_cast<size_t>(n) * sizeof(E));
  } else if (ss == 0) {
    const E v = *s;
    for (int64_t i = 0; i < n; i++) d[i * ds] = v;
  } else {
    for (int64_t i = 0; i < n; i++) d[i * ds] = s[i * ss];
  }
}

// Transpose of the two innermost dims (src contiguous along dim r-2, dst along dim r-1), done in
// kTile x kTile tiles staged through a local buffer: every source and destination row segment is
// then touched in one contiguous burst, so power-of-two strides (whose rows all map to the same
// cache sets) do not thrash the cache.
template <class E>
void copy_transposed(const StridedDims<2>& d, const E* src, E* dst) {
  const int r = d.rank;
  const int64_t rows = d.shape[r - 2], cols = d.shape[r - 1];
  const int64_t s_col = d.stride[0][r - 1], d_row = d.stride[1][r - 2];
  const int64_t tr = (rows + kTile - 1) / kTile, tc = (cols + kTile - 1) / kTile;
  int64_t outer = 1;
  for (int i = 0; i < r - 2; i++) outer *= d.shape[i];
  parallel_for(outer * tr * tc, std::max<int64_t>(1, kCopyGrain / (kTile * kTile)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      int64_t flat = t / (tr * tc), so = 0, dof = 0;
      for (int i = r - 3; i >= 0; i--) {
        const int64_t c = flat % d.shape[i];
        flat /= d.shape[i];
        so += c * d.stride[0][i];
        dof += c * d.stride[1][i];
      }
      const int64_t r0 = (t % (tr * tc)) / tc * kTile, c0 = (t % tc) * kTile;
      const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      E buf[kTile][kTile];  // [column][row] of the tile
      for (int64_t c = c0; c < c1; c++) {
        const E* s = src + so + c * s_col + r0;
        for (int64_t row = 0; row < r1 - r0; row++) buf[c - c0][row] = s[row];
      }
      for (int64_t row = r0; row < r1; row++) {
        E* o = dst + dof + row * d_row + c0;
        for (int64_t c = 0; c < c1 - c0; c++) o[c] = buf[c][row - r0];
      }
    }
  });
}

template <class E>
void copy_impl(const StridedDims<2>& d, const E* src, E* dst) {
  if (d.rank >= 2 && d.inner_stride(1) == 1 && d.stride[0][d.rank - 2] == 1 && d.inner_stride(0) != 1 &&
      d.shape[d.rank - 1] >= 4 && d.shape[d.rank - 2] >= 4) {
    return copy_transposed(d, src, dst);
  }
  const int64_t ss = d.inner_stride(0), ds = d.inner_stride(1);
  parallel_for(d.numel(), kCopyGrain, [&](int64_t b, int64_t e) {
    for_each_run(d, b, e, [&](const int64_t* off, int64_t len) { copy_run(src + off[0], ss, dst + off[1], ds, len); });
  });
}

// --- cast -------------------------------------------------------------------------------------

// Rounds a double to a binary float with E exponent bits and M stored mantissa bits (f16: 5/10,
// bf16: 8/7), round to nearest even, with subnormals, overflow to Inf and quiet NaN.
template <int E, int M>
uint16_t f64_to_small(double v) {
  uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  const uint16_t sign = static_cast<uint16_t>((b >> 63) << (E + M));
  const int exp = static_cast<int>((b >> 52) & 0x7FF);
  const uint64_t frac = b & ((uint64_t{1} << 52) - 1);
  const uint64_t inf = ((uint64_t{1} << E) - 1) << M;
  if (exp == 0x7FF) {  // Inf, or NaN kept quiet with the top of its payload
    return static_cast<uint16_t>(sign | inf | (frac ? ((frac >> (52 - M)) | (uint64_t{1} << (M - 1))) : 0));
  }
  if (exp == 0) return sign;  // zero, or a double subnormal: far below half the smallest target subnormal
  const int bias = (1 << (E - 1)) - 1;
  const int te = exp - 1023 + bias;  // biased target exponent; <= 0 means a target subnormal
  const uint64_t m = (uint64_t{1} << 52) | frac;
  const int shift = 52 - M + (te <= 0 ? 1 - te : 0);
  if (shift >= 54) return sign;  // below half the smallest subnormal: rounds to zero
  uint64_t q = m >> shift;
  const uint64_t rem = m & ((uint64_t{1} << shift) - 1), half = uint64_t{1} << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) q++;
  // Normal: (te-1)<<M + q, where q includes the implicit bit; a carry out of the mantissa bumps
  // the exponent by itself. Subnormal: q (rounding up to 1<<M gives the smallest normal).
  uint64_t bits = te > 0 ? (static_cast<uint64_t>(te - 1) << M) + q : q;
  if (bits > inf) bits = inf;
  return static_cast<uint16_t>(sign | bits);
}

inline uint16_t f32_to_bf16_fast(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((b >> 16) | 0x40);  // quiet NaN
  b += 0x7FFFu + ((b >> 16) & 1);  // round to nearest even; carries into the exponent (up to Inf)
  return static_cast<uint16_t>(b >> 16);
}

// f32 -> f16 straight from the f32 bits (the double route is about 5x slower). Round to nearest
// even: subnormal results by letting an f32 add align the bits (the ulp of 0.5f is 2^-24, the
// smallest f16 subnormal), normal ones by the carry trick above.
inline uint16_t f32_to_f16_fast(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) {  // Inf, or NaN kept quiet with the top of its payload
    return static_cast<uint16_t>(sign | 0x7C00 | (ax > 0x7F800000u ? (0x200 | ((ax >> 13) & 0x3FF)) : 0));
  }
  if (ax >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00);  // >= 65520 rounds to Inf
  if (ax < 0x38800000u) {  // below 2^-14: an f16 subnormal or zero
    float a;
    std::memcpy(&a, &ax, sizeof a);
    a += 0.5f;
    uint32_t r;
    std::memcpy(&r, &a, sizeof r);
    return static_cast<uint16_t>(sign | (r - 0x3F000000u));
  }
  const uint32_t odd = (ax >> 13) & 1;
  return static_cast<uint16_t>(sign | ((ax + 0xC8000FFFu + odd) >> 13));  // rebias 127 -> 15, round
}

// Branch-free: move exponent and mantissa into place and rebias; Inf/NaN
// get the f32 all-ones exponent; subnormals are renormalised by one exact f32 subtraction.
inline float f16_to_f32_inline(uint16_t h) {
  const uint32_t shifted = static_cast<uint32_t>(h & 0x7FFF) << 13;
  const uint32_t exp = shifted & 0x0F800000u;
  const uint32_t normal = shifted + (112u << 23);  // rebias 15 -> 127
  const uint32_t special = normal + (112u << 23);  // exponent 31 -> 255
  const uint32_t sub_bits = normal + (1u << 23);  // 2^-14 * (1 + m/1024) ...
  float sub;
  std::memcpy(&sub, &sub_bits, sizeof sub);
  sub -= 6.103515625e-05f;  // ... minus 2^-14 = m * 2^-24, exact
  uint32_t sub_w;
  std::memcpy(&sub_w, &sub, sizeof sub_w);
  uint32_t w = exp == 0x0F800000u ? special : (exp == 0 ? sub_w : normal);
  w |= static_cast<uint32_t>(h & 0x8000) << 16;
  float f;
  std::memcpy(&f, &w, sizeof f);
  return f;
}

// Element traits per dtype code: the stored type, an exact widening to double and the narrowing
// store (integer stores assume cast_check passed: in range, truncation toward zero).
template <int D> struct Tr;
template <> struct Tr<0> { using E = float; static double load(E v) { return v; } static E store(double v) { return static_cast<float>(v); } };
template <> struct Tr<1> { using E = double; static double load(E v) { return v; } static E store(double v) { return v; } };
template <> struct Tr<2> { using E = uint16_t; static double load(E v) { return bf16_bits_to_f32(v); } static E store(double v) { return f64_to_bf16_bits(v); } };
template <> struct Tr<3> { using E = uint16_t; static double load(E v) { return f16_to_f32_inline(v); } static E store(double v) { return f64_to_f16_bits(v); } };
template <> struct Tr<4> { using E = int32_t; static constexpr double lo = -2147483648.0, hi = 2147483647.0; static double load(E v) { return v; } static E store(double v) { return static_cast<E>(v); } };
template <> struct Tr<5> { using E = int8_t; static constexpr double lo = -128, hi = 127; static double load(E v) { return v; } static E store(double v) { return static_cast<E>(v); } };
template <> struct Tr<6> { using E = uint8_t; static constexpr double lo = 0, hi = 255; static double load(E v) { return v; } static E store(double v) { return static_cast<E>(v); } };
template <> struct Tr<7> { using E = uint32_t; static constexpr double lo = 0, hi = 4294967295.0; static double load(E v) { return v; } static E store(double v) { return static_cast<E>(v); } };

constexpr bool is_int_type(int d) { return d >= 4; }

using CastFn = void (*)(const void*, void*, int64_t, int64_t);
using CheckFn = int64_t (*)(const void*, int64_t, int64_t);
using LoadFn = double (*)(const void*, int64_t);

// Every source value is exact in double, so widening to double and rounding once to the target is
// a correctly rounded conversion for every pair.
template <int S, int D>
void cast_loop(const void* src, void* dst, int64_t b, int64_t e) {
  const auto* s = static_cast<const typename Tr<S>::E*>(src);
  auto* d = static_cast<typename Tr<D>::E*>(dst);
  if constexpr (S == 0 && D == 2) {
    for (int64_t i = b; i < e; i++) d[i] = f32_to_bf16_fast(s[i]);
  } else if constexpr (S == 0 && D == 3) {
    for (int64_t i = b; i < e; i++) d[i] = f32_to_f16_fast(s[i]);
  } else if constexpr (S == 3 && D == 0) {
    for (int64_t i = b; i < e; i++) d[i] = f16_to_f32_inline(s[i]);
  } else if constexpr (S == 2 && D == 0) {
    for (int64_t i = b; i < e; i++) {
      const uint32_t w = static_cast<uint32_t>(s[i]) << 16;
      std::memcpy(&d[i], &w, sizeof w);
    }
  } else {
    for (int64_t i = b; i < e; i++) d[i] = Tr<D>::store(Tr<S>::load(s[i]));
  }
}

// First index in [b, e) whose value, truncated toward zero, does not fit integer type D; or -1.
template <int S, int D>
int64_t check_loop(const void* src, int64_t b, int64_t e) {
  if constexpr (!is_int_type(D)) {
    return -1;
  } else {
    const auto* s = static_cast<const typename Tr<S>::E*>(src);
    for (int64_t i = b; i < e; i++) {
      const double t = std::trunc(Tr<S>::load(s[i]));
      if (!(t >= Tr<D>::lo && t <= Tr<D>::hi)) return i;  // NaN fails both comparisons
    }
    return -1;
  }
}

template <int S>
double load_one(const void* src, int64_t i) {
  return Tr<S>::load(static_cast<const typename Tr<S>::E*>(src)[i]);
}

template <int S, int... D>
constexpr std::array<CastFn, 8> cast_row(std::integer_sequence<int, D...>) { return {&cast_loop<S, D>...}; }
template <int... S>
constexpr std::array<std::array<CastFn, 8>, 8> cast_table(std::integer_sequence<int, S...> seq) {
  return {cast_row<S>(seq)...};
}
template <int S, int... D>
constexpr std::array<CheckFn, 8> check_row(std::integer_sequence<int, D...>) { return {&check_loop<S, D>...}; }
template <int... S>
constexpr std::array<std::array<CheckFn, 8>, 8> check_table(std::integer_sequence<int, S...> seq) {
  return {check_row<S>(seq)...};
}
template <int... S>
constexpr std::array<LoadFn, 8> load_table(std::integer_sequence<int, S...>) { return {&load_one<S>...}; }

constexpr auto kTypes = std::make_integer_sequence<int, 8>();
constexpr auto kCast = cast_table(kTypes);
constexpr auto kCheck = check_table(kTypes);
constexpr auto kLoad = load_table(kTypes);
constexpr size_t kTypeSize[8] = {4, 8, 2, 2, 4, 1, 1, 4};

// --- gather / scatterAdd ------------------------------------------------------------------------

template <class E>
void gather_typed(const E* src, int64_t outer, int64_t n, int64_t inner, const int32_t* idx, int64_t m, E* out) {
  parallel_for(outer * m, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(1, inner)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const int64_t o = r / m, j = r % m;
      const E* s = src + (o * n + idx[j]) * inner;
      E* d = out + r * inner;
      for (int64_t k = 0; k < inner; k++) d[k] = s[k];
    }
  });
}

}  // namespace

void copy_strided_kernel(size_t elem_size, int rank, const int64_t* shape, const void* src,
                         const int64_t* src_strides, void* dst, const int64_t* dst_strides) {
  StridedDims<2> d;
  for (int i = 0; i < rank; i++) {
    if (shape[i] == 0) return;
    const int64_t st[2] = {src_strides[i], dst_strides[i]};
    d.push(shape[i], st);
  }
  d.coalesce();
  switch (elem_size) {
    case 1: return copy_impl(d, static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst));
    case 2: return copy_impl(d, static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst));
    case 4: return copy_impl(d, static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst));
    default: return copy_impl(d, static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst));
  }
}

uint16_t f64_to_f16_bits(double v) { return f64_to_small<5, 10>(v); }
float f16_bits_to_f32(uint16_t h) { return f16_to_f32_inline(h); }
uint16_t f64_to_bf16_bits(double v) { return f64_to_small<8, 7>(v); }

float bf16_bits_to_f32(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &w, sizeof f);
  return f;
}


int64_t cast_check(const void* src, int src_type, int dst_type, int64_t n) {
  if (!is_int_type(dst_type)) return -1;
  const CheckFn fn = kCheck[src_type][dst_type];
  std::atomic<int64_t> first{n};
  parallel_for(n, kCopyGrain, [&](int64_t b, int64_t e) {
    if (b >= first.load(std::memory_order_relaxed)) return;
    const int64_t i = fn(src, b, e);
    if (i < 0) return;
    int64_t cur = first.load();
    while (i < cur && !first.compare_exchange_weak(cur, i)) {}
  });
  return first.load() < n ? first.load() : -1;
}

void cast_kernel(const void* src, int src_type, void* dst, int dst_type, int64_t n) {
  if (src_type == dst_type) {
    const size_t es = kTypeSize[src_type];
    parallel_for(n, kCopyGrain * 4, [&](int64_t b, int64_t e) {
      std::memcpy(static_cast<uint8_t*>(dst) + b * es, static_cast<const uint8_t*>(src) + b * es,
                  static_cast<size_t>(e - b) * es);
    });
    return;
  }
  const CastFn fn = kCast[src_type][dst_type];
  parallel_for(n, kCopyGrain, [&](int64_t b, int64_t e) { fn(src, dst, b, e); });
}

double cast_load(const void* src, int src_type, int64_t i) { return kLoad[src_type](src, i); }

void gather_kernel(size_t elem_size, const void* src, int64_t outer, int64_t n, int64_t inner,
                   const int32_t* idx, int64_t m, void* out) {
  switch (elem_size) {
    case 1: return gather_typed(static_cast<const uint8_t*>(src), outer, n, inner, idx, m, static_cast<uint8_t*>(out));
    case 2: return gather_typed(static_cast<const uint16_t*>(src), outer, n, inner, idx, m, static_cast<uint16_t*>(out));
    case 4: return gather_typed(static_cast<const uint32_t*>(src), outer, n, inner, idx, m, static_cast<uint32_t*>(out));
    default: return gather_typed(static_cast<const uint64_t*>(src), outer, n, inner, idx, m, static_cast<uint64_t*>(out));
  }
}

// Parallel over (outer, column block) only: every j of one block runs on one thread, in order, so
// duplicate indices accumulate without races and the result does not depend on the thread count.
template <class T>
void scatter_add_kernel(const T* src, int64_t outer, int64_t m, int64_t inner, const int32_t* idx, T* out,
                        int64_t n) {
  constexpr int64_t kBlock = 512;
  const int64_t blocks = (inner + kBlock - 1) / kBlock;
  const int64_t cost = std::max<int64_t>(1, m * std::min(inner, kBlock));
  parallel_for(outer * blocks, std::max<int64_t>(1, kElementwiseGrain / cost), [&](int64_t b, int64_t e) {
    for (int64_t u = b; u < e; u++) {
      const int64_t o = u / blocks, c0 = (u % blocks) * kBlock, cl = std::min(kBlock, inner - c0);
      for (int64_t j = 0; j < m; j++) {
        const T* s = src + (o * m + j) * inner + c0;
        T* d = out + (o * n + idx[j]) * inner + c0;
        for (int64_t k = 0; k < cl; k++) d[k] += s[k];
      }
    }
  });
}

template void scatter_add_kernel<float>(const float*, int64_t, int64_t, int64_t, const int32_t*, float*, int64_t);
template void scatter_add_kernel<double>(const double*, int64_t, int64_t, int64_t, const int32_t*, double*, int64_t);

}  // namespace modulora
