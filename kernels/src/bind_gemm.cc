#include "napi_util.h"
namespace modulora {
void RegisterGemm(Napi::Env env, Napi::Object exports) {}
}  // namespace modulora
