#include "napi_util.h"
namespace modulora {
void RegisterQuant(Napi::Env env, Napi::Object exports) {}
}  // namespace modulora
