#include "napi_util.h"
namespace modulora {
void RegisterIo(Napi::Env env, Napi::Object exports) {}
}  // namespace modulora
