#include "napi_util.h"
namespace modulora {
void RegisterLoss(Napi::Env env, Napi::Object exports) {}
}  // namespace modulora
