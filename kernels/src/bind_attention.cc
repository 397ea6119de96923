#include "napi_util.h"
namespace modulora {
void RegisterAttention(Napi::Env env, Napi::Object exports) {}
}  // namespace modulora
