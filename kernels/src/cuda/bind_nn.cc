// Bindings of the CUDA kernels of the fused LLaMA-block ops, the loss ops and the optimizer
// (launchers in nn.h). Every export is `cuda.<name>(device, ...)`; pointers are device addresses.
// The TypeScript kernels (packages/tensor/src/cuda/nn.ts, loss.ts) have validated shapes, dtypes
// and attributes; these readers check argument kinds and list lengths only.
//
//   rmsnorm(dev, code, x, w, y, rstd, rows, d, eps)
//   rmsnormGrad(dev, code, x, w, rstd, dy, dx, dw | 0, rows, d)
//   rope(dev, code, x, [sb, st, sh], [B, T, H, D], positions, batched, invFreq[], inverse, out)
//   swiglu(dev, code, gate, up, out, n)
//   swigluGrad(dev, code, gate, up, dy, dgate, dup, n)
//   dropout(dev, code, x, out, n, p, seed, offset)
//   adamwStep(dev, code, [param, grad, m, v, ...] (4 per tensor), [n, ...], lr, beta1, beta2, eps, weightDecay, step)
//   gradNormStats(dev, [ptr, ...], [n, ...], [code, ...], out)
//   crossEntropy(dev, code, logits, rowShape, rowStrides, v, targets, ignoreIndex, reduction, lse, out)
//   crossEntropyGrad(dev, code, logits, rowShape, rowStrides, v, targets, ignoreIndex, lse, g, gStride, mean, dlogits)
//   softmax(dev, code, x, outer, n, inner, log, y)
//   softmaxGrad(dev, code, y, dy, outer, n, inner, log, dx)
//   embedding(dev, elemSize, weight, rows, d, ws0, ws1, ids, n, out)
#include <cstdint>
#include <string>
#include <vector>

#include "cpu/philox.h"
#include "cuda/nn.h"
#include "cuda/runtime.h"

namespace modulora {
namespace cuda {
namespace {

constexpr int64_t kMaxSafe = (int64_t{1} << 53) - 1;

void* AsPtr(double v) { return reinterpret_cast<void*>(static_cast<uintptr_t>(static_cast<uint64_t>(v))); }

RowSpec ReadRows(CudaCall& c, size_t shape_at, size_t strides_at) {
  const std::vector<int64_t> shape = c.list(shape_at);
  const std::vector<int64_t> strides = c.list(strides_at);
  if (shape.size() != strides.size()) throw CudaError(std::string(c.op()) + ": rowShape and rowStrides differ in length");
  if (shape.size() > static_cast<size_t>(kMaxRankRows)) {
    throw CudaError(std::string(c.op()) + ": the logits have more than " + std::to_string(kMaxRankRows) + " row axes");
  }
  RowSpec r;
  r.rank = static_cast<int>(shape.size());
  for (int i = 0; i < r.rank; i++) {
    r.shape[i] = shape[i];
    r.stride[i] = strides[i];
  }
  return r;
}

int64_t RowCount(const RowSpec& r) {
  int64_t n = 1;
  for (int i = 0; i < r.rank; i++) n *= r.shape[i];
  return n;
}

Napi::Value Rmsnorm(CudaCall& c) {
  RmsnormForward(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), c.ptr(3), c.ptr(4), c.ptr(5), c.i(6), c.i(7), c.num(8));
  return c.env().Undefined();
}

Napi::Value RmsnormGrad(CudaCall& c) {
  RmsnormBackward(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), c.ptr(3), c.ptr(4), c.ptr(5), c.ptr(6), c.ptr(7), c.i(8),
                  c.i(9));
  return c.env().Undefined();
}

Napi::Value RopeOp(CudaCall& c) {
  const std::vector<int64_t> xs = c.list(3);
  const std::vector<int64_t> shape = c.list(4);
  if (xs.size() != 3 || shape.size() != 4) throw CudaError("rope: expects 3 strides (B, T, H) and the shape [B, T, H, D]");
  const int64_t strides[3] = {xs[0], xs[1], xs[2]};
  const std::vector<double> inv_freq = c.nums(7);
  Rope(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), strides, shape[0], shape[1], shape[2], shape[3],
       static_cast<const int32_t*>(c.ptr(5)), c.flag(6), inv_freq, c.flag(8), c.ptr(9));
  return c.env().Undefined();
}

Napi::Value Swiglu(CudaCall& c) {
  SwigluForward(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), c.ptr(3), c.ptr(4), c.i(5));
  return c.env().Undefined();
}

Napi::Value SwigluGrad(CudaCall& c) {
  SwigluBackward(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), c.ptr(3), c.ptr(4), c.ptr(5), c.ptr(6), c.i(7));
  return c.env().Undefined();
}

Napi::Value DropoutOp(CudaCall& c) {
  const int64_t n = c.i(4);
  const double p = c.num(5);
  const int64_t seed = c.i(6);
  const int64_t offset = c.i(7);
  if (!(p >= 0 && p < 1)) throw CudaError("dropout: p must be in [0, 1)");
  if (seed < -kMaxSafe || seed > kMaxSafe) throw CudaError("dropout: seed must be a safe integer");
  if (offset < 0 || offset > kMaxSafe - (n + 3) / 4) throw CudaError("dropout: offset + counters exceeds 2^53 - 1");
  uint32_t k0, k1;
  philox_seed_to_key(static_cast<double>(seed), &k0, &k1);
  Dropout(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), c.ptr(3), n, p, k0, k1, static_cast<uint64_t>(offset));
  return c.env().Undefined();
}

Napi::Value Adamw(CudaCall& c) {
  const std::vector<double> ptrs = c.nums(2);
  const std::vector<int64_t> sizes = c.list(3);
  if (ptrs.size() != 4 * sizes.size()) throw CudaError("adamwStep: expects 4 pointers (param, grad, m, v) per size");
  std::vector<AdamwEntry> entries(sizes.size());
  for (size_t k = 0; k < sizes.size(); k++) {
    entries[k] = {AsPtr(ptrs[4 * k]), AsPtr(ptrs[4 * k + 1]), AsPtr(ptrs[4 * k + 2]), AsPtr(ptrs[4 * k + 3]), sizes[k]};
  }
  AdamwParams h;
  h.lr = c.num(4);
  h.beta1 = c.num(5);
  h.beta2 = c.num(6);
  h.eps = c.num(7);
  h.weight_decay = c.num(8);
  h.step = c.i(9);
  if (h.step < 1) throw CudaError("adamwStep: step must be >= 1");
  AdamwStep(c.ctx(), static_cast<int>(c.i(1)), entries, h);
  return c.env().Undefined();
}

Napi::Value NormStats(CudaCall& c) {
  const std::vector<double> ptrs = c.nums(1);
  const std::vector<int64_t> sizes = c.list(2);
  const std::vector<int64_t> codes = c.list(3);
  if (ptrs.size() != sizes.size() || codes.size() != sizes.size()) {
    throw CudaError("gradNormStats: pointers, sizes and dtype codes differ in length");
  }
  std::vector<NormEntry> entries(sizes.size());
  for (size_t k = 0; k < sizes.size(); k++) entries[k] = {AsPtr(ptrs[k]), sizes[k], static_cast<int>(codes[k])};
  GradNormStats(c.ctx(), entries, static_cast<double*>(c.ptr(4)));
  return c.env().Undefined();
}

Napi::Value CrossEntropy(CudaCall& c) {
  const RowSpec rows = ReadRows(c, 3, 4);
  CrossEntropyForward(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), rows, RowCount(rows), c.i(5),
                      static_cast<const int32_t*>(c.ptr(6)), static_cast<int32_t>(c.i(7)), static_cast<int>(c.i(8)),
                      c.ptr(9), c.ptr(10));
  return c.env().Undefined();
}

Napi::Value CrossEntropyGrad(CudaCall& c) {
  const RowSpec rows = ReadRows(c, 3, 4);
  CrossEntropyBackward(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), rows, RowCount(rows), c.i(5),
                       static_cast<const int32_t*>(c.ptr(6)), static_cast<int32_t>(c.i(7)), c.ptr(8), c.ptr(9), c.i(10),
                       c.flag(11), c.ptr(12));
  return c.env().Undefined();
}

Napi::Value Softmax(CudaCall& c) {
  SoftmaxForward(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), c.i(3), c.i(4), c.i(5), c.flag(6), c.ptr(7));
  return c.env().Undefined();
}

Napi::Value SoftmaxGrad(CudaCall& c) {
  SoftmaxBackward(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), c.ptr(3), c.i(4), c.i(5), c.i(6), c.flag(7), c.ptr(8));
  return c.env().Undefined();
}

Napi::Value EmbeddingOp(CudaCall& c) {
  Embedding(c.ctx(), static_cast<int>(c.i(1)), c.ptr(2), c.i(3), c.i(4), c.i(5), c.i(6),
            static_cast<const int32_t*>(c.ptr(7)), c.i(8), c.ptr(9));
  return c.env().Undefined();
}

}  // namespace

void RegisterCudaNn(Napi::Env env, Napi::Object cuda) {
  DefineCudaOps(env, cuda,
                {
                    {"rmsnorm", Rmsnorm},
                    {"rmsnormGrad", RmsnormGrad},
                    {"rope", RopeOp},
                    {"swiglu", Swiglu},
                    {"swigluGrad", SwigluGrad},
                    {"dropout", DropoutOp},
                    {"adamwStep", Adamw},
                    {"gradNormStats", NormStats},
                    {"crossEntropy", CrossEntropy},
                    {"crossEntropyGrad", CrossEntropyGrad},
                    {"softmax", Softmax},
                    {"softmaxGrad", SoftmaxGrad},
                    {"embedding", EmbeddingOp},
                });
}

}  // namespace cuda
}  // namespace modulora
