// Bindings of OPTQ/GPTQ (src/cpu/optq.h):
//   optqQuantize(w, h, outFeatures, inFeatures, bits, groupSize, symmetric, actOrder, staticGroups,
//                percdamp, blockSize, codes, scales, zeros, gIdx)
//     w f32 [out, in]; h f64 [in, in] (overwritten: dead columns, damping); outputs codes u8
//     [out, in], scales f32 [out, groups], zeros u8 [out, groups], gIdx i32 [in].
//   optqQuantizeAsync(same arguments) -> Promise<undefined>
//     The same work on a libuv worker thread, so the event loop stays free while a layer is
//     quantized. The typed arrays are held (Napi::Reference) until the promise settles; JS code
//     must neither read the outputs nor write w or h before then (the worker uses them).
// Everything is checked before the kernel runs; errors name the op and the argument. A Hessian
// that is not positive definite after damping is a RangeError that suggests a larger percdamp.
// Both entries report errors as "optqQuantize: ...": argument errors are thrown by the call,
// errors found while quantizing (non-finite inputs, H not positive definite) reject the promise.
#include <cmath>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "binding.h"
#include "cpu/optq.h"

namespace modulora {
namespace {

constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

// The checked operands of one quantization.
struct OptqJob {
  const float* w;
  double* h;
  int64_t out, in;
  OptqParams p;
  uint8_t* codes;
  float* scales;
  uint8_t* zeros;
  int32_t* g_idx;
};

// The cross-argument checks (lengths from the shape, bits, the grouping); runs on the JS thread.
OptqJob Prepare(const Call& a) {
  OptqJob j{};
  j.out = a.i("outFeatures");
  j.in = a.i("inFeatures");
  OptqParams& p = j.p;
  p.bits = static_cast<int>(a.i("bits"));
  if (p.bits != 2 && p.bits != 3 && p.bits != 4 && p.bits != 8) {
    a.failRange("argument 'bits' must be 2, 3, 4 or 8, got " + Str(p.bits));
  }
  p.group_size = a.i("groupSize");
  if (j.in % p.group_size != 0) {
    a.failRange("argument 'groupSize' = " + Str(p.group_size) + " does not divide inFeatures = " + Str(j.in));
  }
  p.symmetric = a.flag("symmetric");
  p.act_order = a.flag("actOrder");
  p.static_groups = a.flag("staticGroups");
  p.percdamp = a.num("percdamp");
  p.block_size = a.i("blockSize");
  const int64_t out = j.out, in = j.in;
  if (out * in > (int64_t{1} << 40)) a.failRange("the weight is too large");
  const std::string wh = "outFeatures × inFeatures = " + Str(out) + " × " + Str(in);
  j.w = ExactArray<float>(a, "w", out * in, wh);
  j.h = ExactArray<double>(a, "h", in * in, "inFeatures × inFeatures = " + Str(in) + " × " + Str(in));
  const int64_t groups = in / p.group_size;
  j.codes = ExactArray<uint8_t>(a, "codes", out * in, wh);
  const std::string gw = "outFeatures × groups = " + Str(out) + " × " + Str(groups);
  j.scales = ExactArray<float>(a, "scales", out * groups, gw);
  j.zeros = ExactArray<uint8_t>(a, "zeros", out * groups, gw);
  j.g_idx = ExactArray<int32_t>(a, "gIdx", in, "inFeatures");
  return j;
}

// The finiteness checks and the kernel; touches no JS value, so it may run on a worker thread.
// Returns "" or the error message (without the op prefix), always a RangeError.
std::string Run(const OptqJob& j) {
  for (int64_t i = 0; i < j.out * j.in; i++) {
    if (!std::isfinite(j.w[i])) return "w[" + Str(i) + "] is not finite";
  }
  for (int64_t i = 0; i < j.in * j.in; i++) {
    if (!std::isfinite(j.h[i])) return "h[" + Str(i) + "] is not finite";
  }
  OptqStatus status;
  try {
    status = optq_quantize(j.w, j.h, j.out, j.in, j.p, j.codes, j.scales, j.zeros, j.g_idx);
  } catch (const std::bad_alloc&) {
    return "out of memory for the quantizer's work buffers (" + Str(j.in) + " × " + Str(j.in) + " f64)";
  }
  if (status != OptqStatus::kOk) {
    return "the Hessian is not positive definite after damping with percdamp = " + NumStr(j.p.percdamp) +
           "; pass a larger percdamp (e.g. 0.1), or more calibration data";
  }
  return "";
}

Napi::Value OptqQuantize(Call& a) {
  const std::string err = Run(Prepare(a));
  if (!err.empty()) a.failRange(err);
  return a.env().Undefined();
}

// Runs Run(job) on a libuv worker; settles `deferred` on the JS thread.
class OptqWorker : public Napi::AsyncWorker {
 public:
  OptqWorker(Napi::Env env, const OptqJob& job, std::vector<Napi::ObjectReference> keep)
      : Napi::AsyncWorker(env, "optqQuantizeAsync"),
        job_(job),
        deferred_(Napi::Promise::Deferred::New(env)),
        keep_(std::move(keep)) {}
  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override { error_ = Run(job_); }
  void OnOK() override {
    if (error_.empty()) deferred_.Resolve(Env().Undefined());
    else deferred_.Reject(Napi::RangeError::New(Env(), "optqQuantize: " + error_).Value());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  OptqJob job_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> keep_;  // the typed arrays the worker reads and writes
  std::string error_;
};

Napi::Value OptqQuantizeAsync(Call& a) {
  const OptqJob job = Prepare(a);
  std::vector<Napi::ObjectReference> keep;
  for (const char* name : {"w", "h", "codes", "scales", "zeros", "gIdx"}) {
    keep.push_back(Napi::Persistent(a.value(name).As<Napi::Object>()));
  }
  auto* worker = new OptqWorker(a.env(), job, std::move(keep));
  const Napi::Promise promise = worker->promise();
  worker->Queue();  // deletes itself once settled
  return promise;
}

std::vector<ArgSpec> OptqArgs() {
  return {Arr<float>("w"),         Arr<double>("h"),         Int("outFeatures", 1, kMaxDim),
          Int("inFeatures", 1, 1 << 16), Int("bits", 0, 64), Int("groupSize", 1, kMaxDim),
          Bool("symmetric"),       Bool("actOrder"),         Bool("staticGroups"),
          FiniteIn("percdamp", 0, INFINITY), Int("blockSize", 1, kMaxDim), Arr<uint8_t>("codes"),
          Arr<float>("scales"),    Arr<uint8_t>("zeros"),    Arr<int32_t>("gIdx")};
}

}  // namespace

void RegisterOptq(Napi::Env env, Napi::Object exports) {
  static const std::vector<OpDef> kOps = {
      {"optqQuantize", OptqArgs(), OptqQuantize},
      {"optqQuantizeAsync", OptqArgs(), OptqQuantizeAsync, "optqQuantize"},
  };
  RegisterOps(env, exports, kOps);
}

}  // namespace modulora
