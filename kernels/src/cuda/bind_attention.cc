// Bindings of the fused attention kernels (attention_fwd.cu, attention_bwd.cu; see attention.h).
//
//   cuda.attentionForward(device, dtype, q, k, v, out, lse, mask, maskStrides[4],
//                         B, T, S, Hq, Hkv, D, scale, causal)
//   cuda.attentionBackward(device, dtype, q, k, v, out, lse, dout, dq, dk, dv, mask, maskStrides[4],
//                          B, T, S, Hq, Hkv, D, scale, causal)
// Pointers are device addresses of contiguous tensors (mask: its first element, read through
// maskStrides, in elements, over [B, Hq, T, S]; 0 / null for no mask). lse is f32 (f64 for f64).
#include <string>
#include <vector>

#include "cuda/attention.h"
#include "cuda/runtime.h"

namespace modulora {
namespace cuda {
namespace {

AttnDims DimsAt(CudaCall& c, size_t i) {
  AttnDims d;
  d.B = c.i(i);
  d.T = c.i(i + 1);
  d.S = c.i(i + 2);
  d.Hq = c.i(i + 3);
  d.Hkv = c.i(i + 4);
  d.D = c.i(i + 5);
  d.scale = c.num(i + 6);
  d.causal = c.flag(i + 7);
  if (d.B < 0 || d.T < 0 || d.S < 0 || d.Hq < 1 || d.Hkv < 1 || d.D < 1 || d.Hq % d.Hkv != 0) {
    throw CudaError(std::string(c.op()) + ": bad dims (need B, T, S >= 0, Hq, Hkv, D >= 1, Hq % Hkv == 0)");
  }
  if (d.D > kAttnMaxHeadDim) {
    throw CudaError(std::string(c.op()) + ": head dim D = " + std::to_string(d.D) + " is above the cuda kernels' limit of 256");
  }
  return d;
}

AttnMask MaskAt(CudaCall& c, size_t i) {
  AttnMask m;
  m.data = c.ptr(i);
  if (m.data) {
    const std::vector<int64_t> s = c.list(i + 1);
    if (s.size() != 4) throw CudaError(std::string(c.op()) + ": the mask strides must be 4 numbers ([B, Hq, T, S])");
    m.sb = s[0], m.sh = s[1], m.st = s[2], m.ss = s[3];
  }
  return m;
}

Napi::Value Forward(CudaCall& c) {
  const int dtype = static_cast<int>(c.i(1));
  const AttnMask mask = MaskAt(c, 7);
  const AttnDims d = DimsAt(c, 9);
  AttentionForward(c.ctx(), dtype, d, c.ptr(2), c.ptr(3), c.ptr(4), mask, c.ptr(5), c.ptr(6));
  return c.env().Undefined();
}

Napi::Value Backward(CudaCall& c) {
  const int dtype = static_cast<int>(c.i(1));
  const AttnMask mask = MaskAt(c, 11);
  const AttnDims d = DimsAt(c, 13);
  AttentionBackward(c.ctx(), dtype, d, c.ptr(2), c.ptr(3), c.ptr(4), c.ptr(5), c.ptr(6), c.ptr(7), mask, c.ptr(8),
                    c.ptr(9), c.ptr(10));
  return c.env().Undefined();
}

}  // namespace

void RegisterCudaAttention(Napi::Env env, Napi::Object cuda) {
  DefineCudaOps(env, cuda, {{"attentionForward", Forward}, {"attentionBackward", Backward}});
}

}  // namespace cuda
}  // namespace modulora
