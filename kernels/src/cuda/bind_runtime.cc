// Bindings of the CUDA runtime layer: device info, device storage (CudaBlock), host↔device copies
// through pinned staging buffers, the asynchronous read, synchronization and the allocator's
// counters.
//
//   cuda.info() → {available, reason?, devices: [...], runtimeVersion, syncEveryOp}
//   cuda.alloc(device, bytes) → CudaBlock {ptr, byteLength, device, release()}
//   cuda.write(block, byteOffset, src: Uint8Array)       host → device (returns once src may be reused)
//   cuda.read(block, byteOffset, dst: Uint8Array)        device → host, after the queued work
//   cuda.readAsync(block, byteOffset, dst) → Promise     the same, waiting off the JS thread
//   cuda.synchronize(device), cuda.memory(device), cuda.resetPeak(device), cuda.emptyCache(device)
#include <cuda_runtime.h>
#include <napi.h>

#include <cstring>
#include <string>
#include <vector>

#include "cuda/runtime.h"

namespace modulora {
namespace cuda {
namespace {

class CudaBlock : public Napi::ObjectWrap<CudaBlock> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CudaBlock",
                       {InstanceAccessor<&CudaBlock::Ptr>("ptr"), InstanceAccessor<&CudaBlock::ByteLength>("byteLength"),
                        InstanceAccessor<&CudaBlock::Device>("device"), InstanceMethod<&CudaBlock::Release>("release")});
  }
  explicit CudaBlock(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaBlock>(info) {
    // Constructed only by cuda.alloc(), which passes (device, bytes) through New().
    device_ = info[0].As<Napi::Number>().Int32Value();
    bytes_ = static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue());
    try {
      ptr_ = Ctx(device_).alloc(bytes_);
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), std::string("cuda alloc: ") + e.what());
    }
  }
  ~CudaBlock() override { Free(); }

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  bool released() const { return ptr_ == nullptr; }

  // Range check of [offset, offset + n) inside the block.
  void Check(const Napi::Env& env, const char* op, double offset, size_t n) const {
    if (!ptr_) throw Napi::Error::New(env, std::string("cuda ") + op + ": the block was released");
    if (!(offset >= 0) || offset + static_cast<double>(n) > static_cast<double>(bytes_) || offset != static_cast<double>(static_cast<size_t>(offset))) {
      throw Napi::RangeError::New(env, std::string("cuda ") + op + ": bytes [" + std::to_string(static_cast<long long>(offset)) + ", " +
                                           std::to_string(static_cast<long long>(offset + n)) + ") are outside the block's " +
                                           std::to_string(bytes_) + " bytes");
    }
  }

  static Napi::FunctionReference& Ctor() {
    static Napi::FunctionReference ctor;
    return ctor;
  }

 private:
  void Free() {
    if (!ptr_) return;
    try {
      Ctx(device_).free(ptr_);
    } catch (...) {
    }
    ptr_ = nullptr;
  }
  Napi::Value Ptr(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<uintptr_t>(ptr_)));
  }
  Napi::Value ByteLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(bytes_)); }
  Napi::Value Device(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }
  Napi::Value Release(const Napi::CallbackInfo& info) {
    Free();
    return info.Env().Undefined();
  }

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

CudaBlock* BlockArg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (i >= info.Length() || !info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(CudaBlock::Ctor().Value())) {
    throw Napi::TypeError::New(info.Env(), std::string("cuda ") + op + ": argument " + std::to_string(i) +
                                               " must be a CudaBlock from cuda.alloc()");
  }
  return CudaBlock::Unwrap(info[i].As<Napi::Object>());
}

Napi::Uint8Array BytesArg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (i >= info.Length() || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(info.Env(), std::string("cuda ") + op + ": argument " + std::to_string(i) + " must be a Uint8Array");
  }
  return info[i].As<Napi::Uint8Array>();
}

double OffsetArg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string("cuda ") + op + ": argument " + std::to_string(i) + " must be a byte offset");
  }
  return info[i].As<Napi::Number>().DoubleValue();
}

int DeviceArg(const Napi::CallbackInfo& info, const char* op) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string("cuda ") + op + ": argument 0 must be a device index");
  }
  return info[0].As<Napi::Number>().Int32Value();
}

// Runs fn, turning CudaError into a JS Error "cuda <op>: ...".
template <class F>
Napi::Value Guard(const Napi::CallbackInfo& info, const char* op, F&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("cuda ") + op + ": " + e.what());
  }
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const int n = DeviceCount();
  o.Set("available", Napi::Boolean::New(env, n > 0));
  if (n == 0) o.Set("reason", Napi::String::New(env, Unavailable()));
  Napi::Array devs = Napi::Array::New(env, n);
  for (int d = 0; d < n; d++) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    Napi::Object e = Napi::Object::New(env);
    e.Set("index", d);
    e.Set("name", p.name);
    e.Set("totalBytes", static_cast<double>(p.totalGlobalMem));
    e.Set("capability", std::to_string(p.major) + "." + std::to_string(p.minor));
    e.Set("multiprocessors", p.multiProcessorCount);
    devs.Set(static_cast<uint32_t>(d), e);
  }
  o.Set("devices", devs);
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  o.Set("runtimeVersion", rt);
  o.Set("syncEveryOp", Napi::Boolean::New(env, SyncEveryOp()));
  return o;
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  const int device = DeviceArg(info, "alloc");
  if (info.Length() < 2 || !info[1].IsNumber() || !(info[1].As<Napi::Number>().DoubleValue() >= 0)) {
    throw Napi::TypeError::New(info.Env(), "cuda alloc: argument 1 must be a byte count ≥ 0");
  }
  return CudaBlock::Ctor().New({Napi::Number::New(info.Env(), device), info[1]});
}

Napi::Value Write(const Napi::CallbackInfo& info) {
  CudaBlock* b = BlockArg(info, 0, "write");
  const double off = OffsetArg(info, 1, "write");
  Napi::Uint8Array src = BytesArg(info, 2, "write");
  b->Check(info.Env(), "write", off, src.ByteLength());
  return Guard(info, "write", [&] {
    Ctx(b->device()).write(static_cast<char*>(b->data()) + static_cast<size_t>(off), src.Data(), src.ByteLength());
    if (SyncEveryOp()) Ctx(b->device()).synchronize();
    return info.Env().Undefined();
  });
}

Napi::Value Read(const Napi::CallbackInfo& info) {
  CudaBlock* b = BlockArg(info, 0, "read");
  const double off = OffsetArg(info, 1, "read");
  Napi::Uint8Array dst = BytesArg(info, 2, "read");
  b->Check(info.Env(), "read", off, dst.ByteLength());
  return Guard(info, "read", [&] {
    Ctx(b->device()).read(dst.Data(), static_cast<const char*>(b->data()) + static_cast<size_t>(off), dst.ByteLength());
    return info.Env().Undefined();
  });
}

// Pinned buffers for asynchronous reads, reused (touched only on the JS thread).
struct PinnedPool {
  std::vector<std::pair<size_t, void*>> free;
  void* take(size_t n) {
    for (size_t i = 0; i < free.size(); i++) {
      if (free[i].first >= n && free[i].first <= 2 * n + 4096) {
        void* p = free[i].second;
        free.erase(free.begin() + static_cast<long>(i));
        return p;
      }
    }
    void* p = nullptr;
    Check(cudaHostAlloc(&p, n == 0 ? 1 : n, cudaHostAllocDefault), "cudaHostAlloc (asynchronous read)");
    sizes.emplace_back(p, n == 0 ? 1 : n);
    return p;
  }
  void give(void* p) {
    for (auto& [q, n] : sizes) {
      if (q == p) {
        free.emplace_back(n, p);
        break;
      }
    }
    // Keep at most 8 cached buffers.
    while (free.size() > 8) {
      void* q = free.front().second;
      free.erase(free.begin());
      for (size_t i = 0; i < sizes.size(); i++) {
        if (sizes[i].first == q) {
          sizes.erase(sizes.begin() + static_cast<long>(i));
          break;
        }
      }
      cudaFreeHost(q);
    }
  }
  std::vector<std::pair<void*, size_t>> sizes;
};

PinnedPool& Pinned() {
  static PinnedPool pool;
  return pool;
}

// The copy is queued on the device's stream on the JS thread (so it is ordered after the work
// queued so far, and before any later write); a worker thread waits for its event; the bytes are
// copied into `dst` back on the JS thread.
class ReadWorker : public Napi::AsyncWorker {
 public:
  ReadWorker(Napi::Env env, Napi::Uint8Array dst, void* pinned, cudaEvent_t ev, size_t n)
      : Napi::AsyncWorker(env, "modulora.cuda.readAsync"), deferred_(Napi::Promise::Deferred::New(env)), pinned_(pinned), ev_(ev), n_(n) {
    dst_ = Napi::Persistent(dst);
  }
  Napi::Promise Promise() const { return deferred_.Promise(); }
  void Execute() override {
    const cudaError_t err = cudaEventSynchronize(ev_);
    if (err != cudaSuccess) SetError(std::string("cuda readAsync: ") + cudaGetErrorString(err) + " (" + cudaGetErrorName(err) + ")");
  }
  void OnOK() override {
    std::memcpy(dst_.Value().Data(), pinned_, n_);
    Cleanup();
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    Cleanup();
    deferred_.Reject(e.Value());
  }

 private:
  void Cleanup() {
    cudaEventDestroy(ev_);
    Pinned().give(pinned_);
    dst_.Reset();
  }
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Uint8Array> dst_;
  void* pinned_;
  cudaEvent_t ev_;
  size_t n_;
};

Napi::Value ReadAsync(const Napi::CallbackInfo& info) {
  CudaBlock* b = BlockArg(info, 0, "readAsync");
  const double off = OffsetArg(info, 1, "readAsync");
  Napi::Uint8Array dst = BytesArg(info, 2, "readAsync");
  b->Check(info.Env(), "readAsync", off, dst.ByteLength());
  return Guard(info, "readAsync", [&]() -> Napi::Value {
    Context& c = Ctx(b->device());
    const size_t n = dst.ByteLength();
    void* pinned = Pinned().take(n);
    cudaEvent_t ev = nullptr;
    Check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    if (n > 0) Check(cudaMemcpyAsync(pinned, static_cast<const char*>(b->data()) + static_cast<size_t>(off), n, cudaMemcpyDeviceToHost, c.stream()), "cudaMemcpyAsync");
    Check(cudaEventRecord(ev, c.stream()), "cudaEventRecord");
    auto* w = new ReadWorker(info.Env(), dst, pinned, ev, n);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  const int d = DeviceArg(info, "synchronize");
  return Guard(info, "synchronize", [&] {
    Ctx(d).synchronize();
    return info.Env().Undefined();
  });
}

Napi::Value Memory(const Napi::CallbackInfo& info) {
  const int d = DeviceArg(info, "memory");
  return Guard(info, "memory", [&]() -> Napi::Value {
    const MemoryStats s = Ctx(d).stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("inUse", static_cast<double>(s.in_use));
    o.Set("reserved", static_cast<double>(s.reserved));
    o.Set("peakInUse", static_cast<double>(s.peak_in_use));
    o.Set("peakReserved", static_cast<double>(s.peak_reserved));
    o.Set("allocations", static_cast<double>(s.allocations));
    o.Set("cudaMallocs", static_cast<double>(s.cuda_mallocs));
    return o;
  });
}

Napi::Value ResetPeak(const Napi::CallbackInfo& info) {
  const int d = DeviceArg(info, "resetPeak");
  return Guard(info, "resetPeak", [&] {
    Ctx(d).reset_peak();
    return info.Env().Undefined();
  });
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  const int d = DeviceArg(info, "emptyCache");
  return Guard(info, "emptyCache", [&] {
    Ctx(d).empty_cache();
    return info.Env().Undefined();
  });
}

}  // namespace

void RegisterCudaRuntime(Napi::Env env, Napi::Object cuda) {
  Napi::Function ctor = CudaBlock::Define(env);
  CudaBlock::Ctor() = Napi::Persistent(ctor);
  cuda.Set("CudaBlock", ctor);
  cuda.Set("info", Napi::Function::New(env, Info, "info"));
  cuda.Set("alloc", Napi::Function::New(env, Alloc, "alloc"));
  cuda.Set("write", Napi::Function::New(env, Write, "write"));
  cuda.Set("read", Napi::Function::New(env, Read, "read"));
  cuda.Set("readAsync", Napi::Function::New(env, ReadAsync, "readAsync"));
  cuda.Set("synchronize", Napi::Function::New(env, Synchronize, "synchronize"));
  cuda.Set("memory", Napi::Function::New(env, Memory, "memory"));
  cuda.Set("resetPeak", Napi::Function::New(env, ResetPeak, "resetPeak"));
  cuda.Set("emptyCache", Napi::Function::New(env, EmptyCache, "emptyCache"));
}

}  // namespace cuda
}  // namespace modulora
