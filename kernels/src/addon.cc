// Entry point of the @modulora/kernels addon: each binding file registers its exports here.
#include "napi_util.h"
#ifdef MODULORA_HAVE_CUDA
#include "cuda/runtime.h"
#endif

namespace modulora {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  RegisterStorage(env, exports);
  RegisterGemm(env, exports);
  RegisterElementwise(env, exports);
  RegisterIo(env, exports);
  RegisterAttention(env, exports);
  RegisterNn(env, exports);
  RegisterLoss(env, exports);
  RegisterQuant(env, exports);
  RegisterOptq(env, exports);
#ifdef MODULORA_HAVE_CUDA
  RegisterCuda(env, exports);
#endif
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace modulora

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return modulora::Init(env, exports); }

NODE_API_MODULE(modulora_kernels, InitAddon)
