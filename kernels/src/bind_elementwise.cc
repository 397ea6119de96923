#include "napi_util.h"
namespace modulora {
void RegisterElementwise(Napi::Env env, Napi::Object exports) {}
}  // namespace modulora
