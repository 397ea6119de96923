// Bindings of the quant kernels (quant.h): `cuda.affineDequantize`, `cuda.codebookDequantize` and
// `cuda.randomBits`. Pointers are device addresses (numbers; 0 or null for an absent optional
// array). The TypeScript kernels (packages/tensor/src/cuda/quant.ts) have checked the dtypes and
// lengths of every array; these check the scalars the kernels index with.
//
//   affineDequantize(device, qweight, scales, zeros, zerosReal, gIdx, bits, groupSize, groups,
//                    outFeatures, inFeatures, rowStart, rowEnd, dst, dstCode)
//   codebookDequantize(device, codes, levels, absmax, absmaxCodes, absmaxScale, absmaxOffset, bits,
//                      blockSize, outFeatures, inFeatures, rowStart, rowEnd, dst, dstCode)
//     rows [rowStart, rowEnd) of Ŵ into dst, row-major [rowEnd − rowStart, inFeatures], dstCode
//     f32 (0) or bf16 (2).
//   randomBits(device, ptr, bytes, seed)
//     uniform random bytes by Philox (quant.h: RandomBits), the key from the JS seed as seedToKey.
#include <cmath>
#include <string>

#include "cpu/philox.h"
#include "cuda/quant.h"
#include "cuda/runtime.h"

namespace modulora {
namespace cuda {
namespace {

constexpr int kCodeF32 = 0;
constexpr int kCodeBF16 = 2;
constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

std::string Str(int64_t v) { return std::to_string(v); }

[[noreturn]] void Fail(const CudaCall& c, const std::string& msg) { throw CudaError(std::string(c.op()) + ": " + msg); }

template <class T>
const T* OptPtr(const CudaCall& c, size_t i) {
  return c.absent(i) ? nullptr : static_cast<const T*>(c.ptr(i));
}

int64_t Dim(const CudaCall& c, size_t i, const char* name, int64_t lo) {
  const int64_t v = c.i(i);
  if (v < lo || v > kMaxDim) Fail(c, std::string(name) + " must be in [" + Str(lo) + ", 2^31), got " + Str(v));
  return v;
}

struct RowRange {
  int64_t r0, r1;
  void* dst;
  int code;
};

// (rowStart, rowEnd, dst, dstCode) at positions i..i+3.
RowRange ParseRows(const CudaCall& c, size_t i, int64_t out) {
  RowRange r{c.i(i), c.i(i + 1), c.ptr(i + 2), static_cast<int>(c.i(i + 3))};
  if (r.r0 < 0 || r.r0 > r.r1 || r.r1 > out) {
    Fail(c, "rows [" + Str(r.r0) + ", " + Str(r.r1) + ") are not a range within [0, outFeatures = " + Str(out) + ")");
  }
  if (r.code != kCodeF32 && r.code != kCodeBF16) Fail(c, "the output dtype code must be f32 (0) or bf16 (2), got " + Str(r.code));
  return r;
}

Napi::Value AffineDequantizeOp(CudaCall& c) {
  AffineDevice w{};
  w.qweight = static_cast<const uint32_t*>(c.ptr(1));
  w.scales = static_cast<const uint16_t*>(c.ptr(2));
  const bool real = c.flag(4);
  if (real) w.zeros_real = static_cast<const uint16_t*>(c.ptr(3));
  else w.zeros_int = static_cast<const uint8_t*>(c.ptr(3));
  w.g_idx = OptPtr<int32_t>(c, 5);
  w.bits = static_cast<int>(c.i(6));
  if (w.bits != 2 && w.bits != 3 && w.bits != 4 && w.bits != 8) Fail(c, "bits must be 2, 3, 4 or 8, got " + Str(w.bits));
  w.group_size = Dim(c, 7, "groupSize", 1);
  w.groups = Dim(c, 8, "groups", 1);
  w.out = Dim(c, 9, "outFeatures", 1);
  w.in = Dim(c, 10, "inFeatures", 1);
  if (!w.g_idx && w.group_size * w.groups != w.in) {
    Fail(c, "without gIdx, groupSize × groups must equal inFeatures, got " + Str(w.group_size) + " × " + Str(w.groups) +
                " for inFeatures = " + Str(w.in));
  }
  const RowRange r = ParseRows(c, 11, w.out);
  AffineDequantize(c.stream(), w, r.r0, r.r1, r.dst, r.code);
  return c.env().Undefined();
}

Napi::Value CodebookDequantizeOp(CudaCall& c) {
  CodebookDevice w{};
  w.codes = static_cast<const uint8_t*>(c.ptr(1));
  w.levels = static_cast<const float*>(c.ptr(2));
  w.absmax = OptPtr<float>(c, 3);
  w.absmax_codes = OptPtr<uint8_t>(c, 4);
  w.absmax_scale = OptPtr<float>(c, 5);
  w.absmax_offset = OptPtr<float>(c, 6);
  if (!w.absmax && !(w.absmax_codes && w.absmax_scale && w.absmax_offset)) {
    Fail(c, "the block scales are missing: pass absmax, or all of absmaxCodes, absmaxScale and absmaxOffset");
  }
  w.bits = static_cast<int>(c.i(7));
  if (w.bits < 1 || w.bits > 4) Fail(c, "bits must be 1, 2, 3 or 4, got " + Str(w.bits));
  w.block_size = Dim(c, 8, "blockSize", 1);
  w.out = Dim(c, 9, "outFeatures", 1);
  w.in = Dim(c, 10, "inFeatures", 1);
  if (w.in % w.block_size != 0) Fail(c, "blockSize = " + Str(w.block_size) + " does not divide inFeatures = " + Str(w.in));
  w.stride = (w.in * w.bits + 7) / 8;
  const RowRange r = ParseRows(c, 11, w.out);
  CodebookDequantize(c.stream(), w, r.r0, r.r1, r.dst, r.code);
  return c.env().Undefined();
}

Napi::Value RandomBitsOp(CudaCall& c) {
  void* p = c.ptr(1);
  const double bytes = c.num(2);
  if (!(bytes >= 0) || bytes != std::floor(bytes) || bytes > 9007199254740991.0) {
    Fail(c, "bytes must be a non-negative integer, got " + std::to_string(bytes));
  }
  const double seed = c.num(3);
  if (!(std::fabs(seed) <= 9007199254740991.0) || seed != std::floor(seed)) Fail(c, "seed must be a safe integer, got " + std::to_string(seed));
  uint32_t k0 = 0, k1 = 0;
  philox_seed_to_key(seed, &k0, &k1);
  RandomBits(c.stream(), p, static_cast<int64_t>(bytes), k0, k1);
  return c.env().Undefined();
}

}  // namespace

void RegisterCudaQuant(Napi::Env env, Napi::Object cuda) {
  DefineCudaOps(env, cuda,
                {
                    {"affineDequantize", AffineDequantizeOp},
                    {"codebookDequantize", CodebookDequantizeOp},
                    {"randomBits", RandomBitsOp},
                });
}

}  // namespace cuda
}  // namespace modulora
