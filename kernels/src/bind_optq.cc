// Bindings of OPTQ/GPTQ (src/cpu/optq.h):
//   optqQuantize(w, h, outFeatures, inFeatures, bits, groupSize, symmetric, actOrder, staticGroups,
//                percdamp, blockSize, codes, scales, zeros, gIdx)
//     w f32 [out, in]; h f64 [in, in] (overwritten: dead columns, damping); outputs codes u8
//     [out, in], scales f32 [out, groups], zeros u8 [out, groups], gIdx i32 [in].
// Everything is checked before the kernel runs; errors name the op and the argument. A Hessian
// that is not positive definite after damping is a RangeError that suggests a larger percdamp.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "cpu/optq.h"
#include "napi_util.h"

namespace modulora {
namespace {

constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

std::string Str(int64_t v) { return std::to_string(v); }

Napi::Value OptqQuantize(const Napi::CallbackInfo& info) {
  Args a(info, "optqQuantize");
  a.expectCount(15, "(w, h, outFeatures, inFeatures, bits, groupSize, symmetric, actOrder, staticGroups, percdamp, "
                    "blockSize, codes, scales, zeros, gIdx)");
  const int64_t out = a.integer(2, "outFeatures", 1, kMaxDim);
  const int64_t in = a.integer(3, "inFeatures", 1, 1 << 16);
  OptqParams p{};
  p.bits = static_cast<int>(a.integer(4, "bits", 0, 64));
  if (p.bits != 2 && p.bits != 3 && p.bits != 4 && p.bits != 8) {
    a.failRange("argument 'bits' must be 2, 3, 4 or 8, got " + Str(p.bits));
  }
  p.group_size = a.integer(5, "groupSize", 1, kMaxDim);
  if (in % p.group_size != 0) {
    a.failRange("argument 'groupSize' = " + Str(p.group_size) + " does not divide inFeatures = " + Str(in));
  }
  p.symmetric = a.boolean(6, "symmetric");
  p.act_order = a.boolean(7, "actOrder");
  p.static_groups = a.boolean(8, "staticGroups");
  p.percdamp = a.number(9, "percdamp");
  if (!(p.percdamp >= 0) || !std::isfinite(p.percdamp)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", p.percdamp);
    a.failRange(std::string("argument 'percdamp' = ") + buf + " must be a finite number >= 0");
  }
  p.block_size = a.integer(10, "blockSize", 1, kMaxDim);
  if (out * in > (int64_t{1} << 40)) a.failRange("the weight is too large");
  const float* w = ExactArray<float>(a, 0, "w", out * in, "outFeatures × inFeatures = " + Str(out) + " × " + Str(in));
  double* h = ExactArray<double>(a, 1, "h", in * in, "inFeatures × inFeatures = " + Str(in) + " × " + Str(in));
  const int64_t groups = in / p.group_size;
  uint8_t* codes = ExactArray<uint8_t>(a, 11, "codes", out * in, "outFeatures × inFeatures = " + Str(out) + " × " + Str(in));
  const std::string gw = "outFeatures × groups = " + Str(out) + " × " + Str(groups);
  float* scales = ExactArray<float>(a, 12, "scales", out * groups, gw);
  uint8_t* zeros = ExactArray<uint8_t>(a, 13, "zeros", out * groups, gw);
  int32_t* g_idx = ExactArray<int32_t>(a, 14, "gIdx", in, "inFeatures");
  for (int64_t i = 0; i < out * in; i++) {
    if (!std::isfinite(w[i])) a.failRange("w[" + Str(i) + "] is not finite");
  }
  for (int64_t i = 0; i < in * in; i++) {
    if (!std::isfinite(h[i])) a.failRange("h[" + Str(i) + "] is not finite");
  }
  if (optq_quantize(w, h, out, in, p, codes, scales, zeros, g_idx) != OptqStatus::kOk) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", p.percdamp);
    a.failRange(std::string("the Hessian is not positive definite after damping with percdamp = ") + buf +
                "; pass a larger percdamp (e.g. 0.1), or more calibration data");
  }
  return info.Env().Undefined();
}

}  // namespace

void RegisterOptq(Napi::Env env, Napi::Object exports) {
  exports.Set("optqQuantize", Napi::Function::New(env, OptqQuantize, "optqQuantize"));
}

}  // namespace modulora
