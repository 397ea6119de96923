// The CUDA runtime layer of the addon (host side): one Context per device (its stream, its
// cuBLASLt handle and workspace, its caching allocator, its pinned staging buffers), the error
// type every CUDA call is checked into, and the small argument reader the `cuda.*` bindings use.
//
// Threading: everything here runs on the JavaScript thread, except the host half of an
// asynchronous read (see bind_runtime.cc), which touches only pinned memory and an event.
//
// Ordering: every kernel, copy and cuBLASLt call of a device runs on that device's one stream, in
// the order JavaScript issued them. A freed block is reused by later work on the same stream, so
// the caching allocator needs no events (a block freed while a kernel still reads it is handed out
// only to work queued after that kernel).
#pragma once
#include <cuda_runtime.h>
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

struct cublasLtContext;

namespace modulora {
namespace cuda {

// Dtype codes shared with the TypeScript facade (the same numbers as napi_util.h's DType).
enum Code : int { kF32 = 0, kF64 = 1, kBF16 = 2, kF16 = 3, kI32 = 4, kI8 = 5, kU8 = 6, kU32 = 7 };

inline const char* CodeName(int code) {
  static const char* names[] = {"f32", "f64", "bf16", "f16", "i32", "i8", "u8", "u32"};
  return code >= 0 && code < 8 ? names[code] : "unknown dtype";
}
inline size_t CodeSize(int code) {
  static const size_t sizes[] = {4, 8, 2, 2, 4, 1, 1, 4};
  return code >= 0 && code < 8 ? sizes[code] : 0;
}

// A failed CUDA (or cuBLASLt) call, or a refused request; the binding wrapper turns it into a JS
// Error "cuda <op>: <message>" and the TypeScript kernel adds the op's input shapes.
class CudaError : public std::runtime_error {
 public:
  explicit CudaError(const std::string& msg) : std::runtime_error(msg) {}
};

// Throws CudaError("<what>: <cudaGetErrorString> (<cudaGetErrorName>)") unless `err` is cudaSuccess.
void Check(cudaError_t err, const char* what);
#define MODULORA_CUDA_CHECK(expr) ::modulora::cuda::Check((expr), #expr)

// Byte counters of one device's caching allocator.
struct MemoryStats {
  size_t in_use = 0;         // bytes of live blocks (as requested, rounded to 512)
  size_t reserved = 0;       // bytes held from cudaMalloc: live + cached
  size_t peak_in_use = 0;
  size_t peak_reserved = 0;
  size_t allocations = 0;    // live blocks
  size_t cuda_mallocs = 0;   // cudaMalloc calls so far (cache misses)
};

class Context {
 public:
  explicit Context(int device);
  ~Context();
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cublasLtContext* lt() const { return lt_; }
  void* lt_workspace() const { return workspace_; }
  size_t lt_workspace_bytes() const { return workspace_bytes_; }
  const cudaDeviceProp& props() const { return props_; }

  // Caching allocator (stream-ordered on stream()). alloc(0) returns a valid non-null pointer.
  void* alloc(size_t bytes);
  void free(void* ptr);
  void empty_cache();  // synchronizes, then cudaFree()s every cached block
  MemoryStats stats() const { return stats_; }
  void reset_peak();

  // Copies through pinned staging buffers, ordered on stream().
  void write(void* dst, const void* src, size_t bytes);  // host → device; returns once `src` may be reused
  void read(void* dst, const void* src, size_t bytes);   // device → host; returns when `dst` holds the bytes
  void synchronize();

 private:
  struct Staging {
    void* host = nullptr;
    cudaEvent_t done = nullptr;
  };
  int device_;
  cudaStream_t stream_ = nullptr;
  cublasLtContext* lt_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  cudaDeviceProp props_{};
  std::multimap<size_t, void*> cached_;   // size → block
  std::map<void*, size_t> live_;          // block → size
  MemoryStats stats_;
  Staging staging_[2];
  size_t staging_bytes_ = 0;
};

// The context of device `index` (created on first use), made current (cudaSetDevice).
Context& Ctx(int index);
// Number of devices (0 when there is no driver or no GPU); never throws.
int DeviceCount();
// Why DeviceCount() is 0, or "".
std::string Unavailable();
// Whether MODULORA_CUDA_SYNC=1 was set when the addon loaded.
bool SyncEveryOp();

// Scratch device memory for one launch, freed back to the cache at scope exit (safe: the stream
// orders the kernels that use it before any later reuse).
class Scratch {
 public:
  Scratch(Context& c, size_t bytes) : c_(c), p_(c.alloc(bytes)) {}
  ~Scratch() { c_.free(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return p_; }
  template <class T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  Context& c_;
  void* p_;
};

// The arguments of one `cuda.<name>(device, ...)` call, read by position. Argument 0 is always
// the device index; pointers are device addresses passed as JS numbers (buffer address + byte
// offset, computed by the TypeScript kernel). The TypeScript layer has validated shapes already;
// these readers only check kinds, and throw CudaError naming the op and the position.
class CudaCall {
 public:
  CudaCall(const Napi::CallbackInfo& info, const char* op);
  const char* op() const { return op_; }
  Napi::Env env() const { return info_.Env(); }
  size_t count() const { return info_.Length(); }
  Context& ctx() const { return *ctx_; }
  cudaStream_t stream() const { return ctx_->stream(); }

  void* ptr(size_t i) const;       // a device address (0 → nullptr)
  int64_t i(size_t i) const;       // an integer
  double num(size_t i) const;      // any number
  bool flag(size_t i) const;       // a boolean
  std::vector<int64_t> list(size_t i) const;  // an array of integers
  std::vector<double> nums(size_t i) const;   // an array of numbers (e.g. pointer lists)
  bool absent(size_t i) const;     // missing, null or undefined
  Napi::Value value(size_t i) const { return info_[i]; }
  const Napi::CallbackInfo& info() const { return info_; }

 private:
  const Napi::CallbackInfo& info_;
  const char* op_;
  Context* ctx_;
};

using CudaImpl = Napi::Value (*)(CudaCall&);

// One export of the `cuda` object: `cuda.<name>(device, ...)`. The wrapper selects the device,
// runs `impl`, checks cudaGetLastError() (and, under MODULORA_CUDA_SYNC=1, synchronizes and
// checks again), and turns any CudaError/std::exception into a JS Error "cuda <name>: ...".
struct CudaOp {
  const char* name;
  CudaImpl impl;
};
void DefineCudaOps(Napi::Env env, Napi::Object cuda, const std::vector<CudaOp>& ops);

// Each area registers its exports into the `cuda` object (bind_*.cc in this folder).
void RegisterCudaRuntime(Napi::Env env, Napi::Object cuda);    // bind_runtime.cc: storage, copies, memory
void RegisterCudaBlas(Napi::Env env, Napi::Object cuda);       // bind_blas.cc: matmul (cuBLASLt)
void RegisterCudaElementwise(Napi::Env env, Napi::Object cuda);  // bind_elementwise.cc
void RegisterCudaNn(Napi::Env env, Napi::Object cuda);         // bind_nn.cc
void RegisterCudaAttention(Napi::Env env, Napi::Object cuda);  // bind_attention.cc
void RegisterCudaQuant(Napi::Env env, Napi::Object cuda);      // bind_quant.cc
void RegisterCudaNccl(Napi::Env env, Napi::Object cuda);       // nccl.cc: NCCL, loaded at run time

}  // namespace cuda

// Called by addon.cc in a CUDA build: sets exports.cuda.
void RegisterCuda(Napi::Env env, Napi::Object exports);

}  // namespace modulora
