// The CUDA runtime layer (runtime.h): device contexts, the caching allocator, pinned staging
// copies, errors, and the binding wrapper of every `cuda.*` export.
#include "cuda/runtime.h"

#include <cublasLt.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace modulora {
namespace cuda {

namespace {

constexpr size_t kRound = 512;                      // every block is a multiple of this
constexpr size_t kStagingBytes = size_t{8} << 20;   // each of the two pinned staging buffers
constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLASLt workspace per device

size_t RoundUp(size_t n) { return n == 0 ? kRound : (n + kRound - 1) / kRound * kRound; }

std::string Bytes(size_t n) {
  char buf[64];
  if (n >= (size_t{1} << 30)) snprintf(buf, sizeof buf, "%.2f GiB", n / 1073741824.0);
  else snprintf(buf, sizeof buf, "%.1f MiB", n / 1048576.0);
  return buf;
}

bool ReadSyncFlag() {
  const char* v = std::getenv("MODULORA_CUDA_SYNC");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

std::vector<std::unique_ptr<Context>>& Contexts() {
  static std::vector<std::unique_ptr<Context>> all;
  return all;
}

}  // namespace

void Check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  throw CudaError(std::string(what) + ": " + cudaGetErrorString(err) + " (" + cudaGetErrorName(err) + ")");
}

bool SyncEveryOp() {
  static const bool on = ReadSyncFlag();
  return on;
}

int DeviceCount() {
  static int cached = -1;
  if (cached >= 0) return cached;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the "no driver" error
    n = 0;
  }
  cached = n;
  return n;
}

std::string Unavailable() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(err) + " (" + cudaGetErrorName(err) + ")";
  }
  return n == 0 ? "the CUDA driver reports no device" : "";
}

Context::Context(int device) : device_(device) {
  MODULORA_CUDA_CHECK(cudaSetDevice(device));
  MODULORA_CUDA_CHECK(cudaGetDeviceProperties(&props_, device));
  MODULORA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  cublasLtHandle_t h = nullptr;
  const cublasStatus_t st = cublasLtCreate(&h);
  if (st != CUBLAS_STATUS_SUCCESS) {
    throw CudaError(std::string("cublasLtCreate failed: ") + cublasLtGetStatusString(st));
  }
  lt_ = reinterpret_cast<cublasLtContext*>(h);
  workspace_bytes_ = kWorkspaceBytes;
  MODULORA_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
  staging_bytes_ = kStagingBytes;
  for (Staging& s : staging_) {
    MODULORA_CUDA_CHECK(cudaHostAlloc(&s.host, staging_bytes_, cudaHostAllocDefault));
    MODULORA_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
  }
}

Context::~Context() {
  // Contexts live until the process exits; the driver reclaims everything then.
}

void* Context::alloc(size_t bytes) {
  const size_t n = RoundUp(bytes);
  // Best fit from the cache, accepting a block at most 1/8 (and at most 64 MiB) larger than asked,
  // so a large cached block is not spent on a small request.
  auto it = cached_.lower_bound(n);
  const size_t slack = std::min(n / 8 + kRound, size_t{64} << 20);
  void* p = nullptr;
  size_t got = 0;
  if (it != cached_.end() && it->first <= n + slack) {
    p = it->second;
    got = it->first;
    cached_.erase(it);
  } else {
    cudaError_t err = cudaMalloc(&p, n);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      empty_cache();
      err = cudaMalloc(&p, n);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw CudaError("out of device memory on cuda:" + std::to_string(device_) + ": asked for " + Bytes(n) + " with " +
                      Bytes(stats_.in_use) + " in use by tensors, " + Bytes(stats_.reserved) + " reserved, " +
                      Bytes(free_b) + " free of " + Bytes(total_b) +
                      " (" + cudaGetErrorString(err) + "); use a smaller batch or sequence, activation checkpointing, or fewer bits");
    }
    got = n;
    stats_.reserved += got;
    stats_.cuda_mallocs++;
    stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
  }
  live_[p] = got;
  stats_.in_use += got;
  stats_.allocations++;
  stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
  return p;
}

void Context::free(void* ptr) {
  auto it = live_.find(ptr);
  if (it == live_.end()) return;  // not ours (or freed twice): ignore
  const size_t n = it->second;
  live_.erase(it);
  stats_.in_use -= n;
  stats_.allocations--;
  cached_.emplace(n, ptr);
}

void Context::empty_cache() {
  if (cached_.empty()) return;
  MODULORA_CUDA_CHECK(cudaSetDevice(device_));
  MODULORA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (auto& [n, p] : cached_) {
    cudaFree(p);
    stats_.reserved -= n;
  }
  cached_.clear();
}

void Context::reset_peak() {
  stats_.peak_in_use = stats_.in_use;
  stats_.peak_reserved = stats_.reserved;
}

void Context::write(void* dst, const void* src, size_t bytes) {
  // Double-buffered: copy a chunk into a pinned buffer (after the previous copy out of it has
  // finished), queue its DMA, go on with the other buffer.
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  int k = 0;
  for (size_t done = 0; done < bytes; done += staging_bytes_, k ^= 1) {
    const size_t n = std::min(staging_bytes_, bytes - done);
    Staging& st = staging_[k];
    MODULORA_CUDA_CHECK(cudaEventSynchronize(st.done));
    std::memcpy(st.host, s + done, n);
    MODULORA_CUDA_CHECK(cudaMemcpyAsync(d + done, st.host, n, cudaMemcpyHostToDevice, stream_));
    MODULORA_CUDA_CHECK(cudaEventRecord(st.done, stream_));
  }
}

void Context::read(void* dst, const void* src, size_t bytes) {
  // Queue chunk i+1's DMA before copying chunk i out of its pinned buffer.
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  if (bytes == 0) {
    synchronize();
    return;
  }
  const size_t chunks = (bytes + staging_bytes_ - 1) / staging_bytes_;
  auto queue = [&](size_t i) {
    Staging& st = staging_[i & 1];
    const size_t off = i * staging_bytes_;
    const size_t n = std::min(staging_bytes_, bytes - off);
    MODULORA_CUDA_CHECK(cudaEventSynchronize(st.done));  // a write may still read this buffer
    MODULORA_CUDA_CHECK(cudaMemcpyAsync(st.host, s + off, n, cudaMemcpyDeviceToHost, stream_));
    MODULORA_CUDA_CHECK(cudaEventRecord(st.done, stream_));
  };
  queue(0);
  for (size_t i = 0; i < chunks; i++) {
    Staging& st = staging_[i & 1];
    const size_t off = i * staging_bytes_;
    const size_t n = std::min(staging_bytes_, bytes - off);
    MODULORA_CUDA_CHECK(cudaEventSynchronize(st.done));
    if (i + 1 < chunks) queue(i + 1);
    std::memcpy(d + off, st.host, n);
  }
}

void Context::synchronize() { MODULORA_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

Context& Ctx(int index) {
  auto& all = Contexts();
  const int n = DeviceCount();
  if (index < 0 || index >= n) {
    throw CudaError(n == 0 ? "no CUDA device: " + Unavailable()
                           : "cuda:" + std::to_string(index) + " does not exist (" + std::to_string(n) +
                                 " device(s): cuda:0 to cuda:" + std::to_string(n - 1) + ")");
  }
  if (all.size() < static_cast<size_t>(n)) all.resize(n);
  static int current = -1;
  if (!all[index]) {
    all[index] = std::make_unique<Context>(index);  // makes `index` current
    current = index;
  }
  if (current != index) {
    MODULORA_CUDA_CHECK(cudaSetDevice(index));
    current = index;
  }
  return *all[index];
}

// --- CudaCall ---------------------------------------------------------------------------------------

namespace {
[[noreturn]] void BadArg(const char* op, size_t i, const char* what) {
  throw CudaError(std::string("argument ") + std::to_string(i) + " must be " + what);
}
}  // namespace

CudaCall::CudaCall(const Napi::CallbackInfo& info, const char* op) : info_(info), op_(op), ctx_(nullptr) {
  ctx_ = &Ctx(static_cast<int>(i(0)));
}

bool CudaCall::absent(size_t k) const { return k >= info_.Length() || info_[k].IsNull() || info_[k].IsUndefined(); }

void* CudaCall::ptr(size_t k) const {
  if (absent(k)) return nullptr;
  if (!info_[k].IsNumber()) BadArg(op_, k, "a device address (number)");
  const double v = info_[k].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > 9007199254740991.0) BadArg(op_, k, "a device address (a non-negative safe integer)");
  return reinterpret_cast<void*>(static_cast<uintptr_t>(v));
}

int64_t CudaCall::i(size_t k) const {
  if (k >= info_.Length() || !info_[k].IsNumber()) BadArg(op_, k, "an integer");
  const double v = info_[k].As<Napi::Number>().DoubleValue();
  if (v != static_cast<double>(static_cast<int64_t>(v))) BadArg(op_, k, "an integer");
  return static_cast<int64_t>(v);
}

double CudaCall::num(size_t k) const {
  if (k >= info_.Length() || !info_[k].IsNumber()) BadArg(op_, k, "a number");
  return info_[k].As<Napi::Number>().DoubleValue();
}

bool CudaCall::flag(size_t k) const {
  if (k >= info_.Length() || !info_[k].IsBoolean()) BadArg(op_, k, "a boolean");
  return info_[k].As<Napi::Boolean>().Value();
}

std::vector<int64_t> CudaCall::list(size_t k) const {
  const std::vector<double> v = nums(k);
  std::vector<int64_t> out(v.size());
  for (size_t j = 0; j < v.size(); j++) {
    if (v[j] != static_cast<double>(static_cast<int64_t>(v[j]))) BadArg(op_, k, "an array of integers");
    out[j] = static_cast<int64_t>(v[j]);
  }
  return out;
}

std::vector<double> CudaCall::nums(size_t k) const {
  if (k >= info_.Length()) BadArg(op_, k, "an array of numbers");
  std::vector<double> out;
  if (info_[k].IsTypedArray()) {
    Napi::TypedArray ta = info_[k].As<Napi::TypedArray>();
    const size_t n = ta.ElementLength();
    out.resize(n);
    switch (ta.TypedArrayType()) {
      case napi_int32_array: for (size_t j = 0; j < n; j++) out[j] = ta.As<Napi::Int32Array>()[j]; break;
      case napi_float64_array: for (size_t j = 0; j < n; j++) out[j] = ta.As<Napi::Float64Array>()[j]; break;
      case napi_float32_array: for (size_t j = 0; j < n; j++) out[j] = ta.As<Napi::Float32Array>()[j]; break;
      case napi_uint32_array: for (size_t j = 0; j < n; j++) out[j] = ta.As<Napi::Uint32Array>()[j]; break;
      default: BadArg(op_, k, "an array of numbers (Array, Int32Array, Uint32Array, Float32Array or Float64Array)");
    }
    return out;
  }
  if (!info_[k].IsArray()) BadArg(op_, k, "an array of numbers");
  Napi::Array a = info_[k].As<Napi::Array>();
  out.resize(a.Length());
  for (uint32_t j = 0; j < a.Length(); j++) {
    Napi::Value e = a.Get(j);
    if (!e.IsNumber()) BadArg(op_, k, "an array of numbers");
    out[j] = e.As<Napi::Number>().DoubleValue();
  }
  return out;
}

// --- the export wrapper -------------------------------------------------------------------------------

namespace {

struct OpData {
  const char* name;
  CudaImpl impl;
};

Napi::Value Dispatch(const Napi::CallbackInfo& info) {
  const OpData* d = static_cast<const OpData*>(info.Data());
  Napi::Env env = info.Env();
  try {
    CudaCall call(info, d->name);
    Napi::Value out = d->impl(call);
    Check(cudaGetLastError(), "kernel launch");
    if (SyncEveryOp()) Check(cudaStreamSynchronize(call.stream()), "MODULORA_CUDA_SYNC=1: the op's work on the device");
    return out;
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("cuda ") + d->name + ": " + e.what());
  }
}

}  // namespace

void DefineCudaOps(Napi::Env env, Napi::Object cuda, const std::vector<CudaOp>& ops) {
  for (const CudaOp& op : ops) {
    // Leaked on purpose: the exports live as long as the addon.
    auto* data = new OpData{op.name, op.impl};
    cuda.Set(op.name, Napi::Function::New(env, Dispatch, op.name, data));
  }
}

}  // namespace cuda

void RegisterCuda(Napi::Env env, Napi::Object exports) {
  Napi::Object c = Napi::Object::New(env);
  cuda::RegisterCudaRuntime(env, c);
  cuda::RegisterCudaBlas(env, c);
  cuda::RegisterCudaElementwise(env, c);
  cuda::RegisterCudaNn(env, c);
  cuda::RegisterCudaAttention(env, c);
  cuda::RegisterCudaQuant(env, c);
  cuda::RegisterCudaNccl(env, c);
  exports.Set("cuda", c);
}

}  // namespace modulora
