#include "napi_util.h"
namespace modulora {
void RegisterNn(Napi::Env env, Napi::Object exports) {}
}  // namespace modulora
