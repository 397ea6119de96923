// Storage, threads and CPU feature bindings.
//
// StorageBlock (an ObjectWrap, below) is a tensor's storage: one block, its buffer, release().
// alloc(bytes, zeroFill = true) returns an external ArrayBuffer over a 64-byte aligned native
// allocation, zero-filled unless zeroFill is false. The
// memory is freed by release(buffer) (which also detaches the buffer, so a stale view reads as
// empty instead of touching freed memory) or, as a safety net, when the buffer is collected.
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/storage.h"
#include "cpu/threadpool.h"
#include "binding.h"

namespace modulora {
namespace {

struct Block {
  void* data;
  size_t bytes;
  bool released;
};

std::mutex g_blocks_mu;
std::unordered_map<void*, Block*> g_blocks;

constexpr int64_t kMaxAlloc = int64_t{1} << 40;  // 1 TiB: anything larger is a bug upstream

void FinalizeBlock(Napi::Env env, void* /*data*/, Block* block) {
  if (!block->released) {
    {
      std::lock_guard<std::mutex> lk(g_blocks_mu);
      g_blocks.erase(block->data);
    }
    storage_free(block->data, block->bytes);
    Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(block->bytes));
  }
  delete block;
}

// An external ArrayBuffer over a new block; its finalizer frees the block if release() did not.
// Empty storage owns no native memory: a plain empty ArrayBuffer, which release() ignores.
// Returns an empty handle when the host is out of memory.
Napi::ArrayBuffer NewBlockBuffer(Napi::Env env, int64_t bytes, bool zero_fill) {
  if (bytes == 0) return Napi::ArrayBuffer::New(env, 0);
  void* p = storage_alloc(static_cast<size_t>(bytes), zero_fill);
  if (!p) return Napi::ArrayBuffer();
  Block* block = new Block{p, static_cast<size_t>(bytes), false};
  {
    std::lock_guard<std::mutex> lk(g_blocks_mu);
    g_blocks[p] = block;
  }
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return Napi::ArrayBuffer::New(env, p, static_cast<size_t>(bytes), FinalizeBlock, block);
}

Napi::Value Alloc(Call& a) {
  const int64_t bytes = a.i("bytes");
  const bool zero_fill = !a.has("zeroFill") || a.flag("zeroFill");  // left out: zero-filled
  Napi::ArrayBuffer buf = NewBlockBuffer(a.env(), bytes, zero_fill);
  if (buf.IsEmpty()) a.failRange("out of host memory allocating " + std::to_string(bytes) + " bytes");
  return buf;
}

enum class ReleaseResult { kReleased, kAlready, kForeign };

// Frees the block under `buf` now and detaches `buf`.
ReleaseResult ReleaseBlockBuffer(Napi::Env env, Napi::ArrayBuffer buf) {
  if (buf.IsDetached() || buf.ByteLength() == 0) return ReleaseResult::kAlready;  // released or empty
  void* p = buf.Data();
  Block* block = nullptr;
  {
    std::lock_guard<std::mutex> lk(g_blocks_mu);
    auto it = g_blocks.find(p);
    if (it != g_blocks.end() && it->second->bytes == buf.ByteLength()) {
      block = it->second;
      g_blocks.erase(it);
    }
  }
  if (!block) return ReleaseResult::kForeign;
  // Everything that touches `block` happens before Detach(): a runtime may run the finalizer
  // (which deletes `block`) during the detach.
  const size_t bytes = block->bytes;
  block->released = true;
  storage_free(block->data, bytes);
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(bytes));
  buf.Detach();
  return ReleaseResult::kReleased;
}

Napi::Value Release(Call& a) {
  switch (ReleaseBlockBuffer(a.env(), a.value("buffer").As<Napi::ArrayBuffer>())) {
    case ReleaseResult::kReleased: return Napi::Boolean::New(a.env(), true);
    case ReleaseResult::kAlready: return Napi::Boolean::New(a.env(), false);
    case ReleaseResult::kForeign: break;
  }
  a.fail("this ArrayBuffer was not allocated by alloc() (or was already released)");
}

// A tensor's storage as a native object: `new StorageBlock(bytes, zeroFill)` owns one block.
// `buffer` is its memory as an external ArrayBuffer (for the CPU kernels' views; the same object
// every time), `byteLength` its size, `release()` frees it now (and detaches `buffer`, so a stale
// view reads as empty). If it is never released, collecting the block and its buffer frees it.
class StorageBlock : public Napi::ObjectWrap<StorageBlock> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "StorageBlock", {
        InstanceAccessor<&StorageBlock::Buffer>("buffer"),
        InstanceAccessor<&StorageBlock::ByteLength>("byteLength"),
        InstanceAccessor<&StorageBlock::Released>("released"),
        InstanceMethod<&StorageBlock::ReleaseNow>("release"),
    });
  }

  explicit StorageBlock(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StorageBlock>(info) {
    Napi::Env env = info.Env();
    const char* usage = "StorageBlock: expected (bytes, zeroFill) with bytes an integer in [0, 2^40] and zeroFill a boolean";
    if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsBoolean()) {
      Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
      return;
    }
    const double bytes = info[0].As<Napi::Number>().DoubleValue();
    if (!(bytes >= 0 && bytes <= static_cast<double>(kMaxAlloc)) || bytes != static_cast<double>(static_cast<int64_t>(bytes))) {
      Napi::RangeError::New(env, usage).ThrowAsJavaScriptException();
      return;
    }
    Napi::ArrayBuffer buf = NewBlockBuffer(env, static_cast<int64_t>(bytes), info[1].As<Napi::Boolean>().Value());
    if (buf.IsEmpty()) {
      Napi::RangeError::New(env, "StorageBlock: out of host memory allocating " + std::to_string(static_cast<int64_t>(bytes)) + " bytes")
          .ThrowAsJavaScriptException();
      return;
    }
    bytes_ = static_cast<int64_t>(bytes);
    buffer_ = Napi::Persistent(buf);  // strong: the buffer lives as long as this object (or its views)
  }

 private:
  Napi::Value Buffer(const Napi::CallbackInfo&) { return buffer_.Value(); }
  Napi::Value ByteLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(bytes_)); }
  Napi::Value Released(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), released_); }
  Napi::Value ReleaseNow(const Napi::CallbackInfo& info) {
    if (released_) return Napi::Boolean::New(info.Env(), false);
    released_ = true;
    ReleaseBlockBuffer(info.Env(), buffer_.Value());
    return Napi::Boolean::New(info.Env(), true);
  }

  Napi::Reference<Napi::ArrayBuffer> buffer_;
  int64_t bytes_ = 0;
  bool released_ = false;
};

// Scratch buffers for TS-driven kernels (the generic quantized path): counted as scratch in
// memoryStats(), freed by releaseScratch() or, as a safety net, by the garbage collector.
struct ScratchBlock {
  void* data;
  size_t bytes;
  bool released;
};
std::mutex g_scratch_mu;
std::unordered_map<void*, ScratchBlock*> g_scratch_blocks;

void FinalizeScratch(Napi::Env env, void* /*data*/, ScratchBlock* block) {
  if (!block->released) {
    {
      std::lock_guard<std::mutex> lk(g_scratch_mu);
      g_scratch_blocks.erase(block->data);
    }
    scratch_free(block->data, block->bytes);
  }
  delete block;
}

Napi::Value AllocScratch(Call& a) {
  const Napi::CallbackInfo& info = a.info();
  const int64_t bytes = a.i("bytes");
  void* p = scratch_alloc(static_cast<size_t>(bytes));
  if (!p) a.failRange("out of host memory allocating " + std::to_string(bytes) + " bytes of scratch");
  ScratchBlock* block = new ScratchBlock{p, static_cast<size_t>(bytes), false};
  {
    std::lock_guard<std::mutex> lk(g_scratch_mu);
    g_scratch_blocks[p] = block;
  }
  return Napi::ArrayBuffer::New(info.Env(), p, static_cast<size_t>(bytes), FinalizeScratch, block);
}

Napi::Value ReleaseScratch(Call& a) {
  const Napi::CallbackInfo& info = a.info();
  Napi::ArrayBuffer buf = a.value("buffer").As<Napi::ArrayBuffer>();
  if (buf.IsDetached()) return Napi::Boolean::New(info.Env(), false);
  ScratchBlock* block = nullptr;
  {
    std::lock_guard<std::mutex> lk(g_scratch_mu);
    auto it = g_scratch_blocks.find(buf.Data());
    if (it != g_scratch_blocks.end()) {
      block = it->second;
      g_scratch_blocks.erase(it);
    }
  }
  if (!block) a.fail("this ArrayBuffer was not allocated by allocScratch() (or was already released)");
  block->released = true;
  scratch_free(block->data, block->bytes);
  buf.Detach();
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value Stats(Call& a) {
  const Napi::CallbackInfo& info = a.info();
  StorageStats s = storage_stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("bytes", Napi::Number::New(info.Env(), static_cast<double>(s.bytes)));
  o.Set("peakBytes", Napi::Number::New(info.Env(), static_cast<double>(s.peak_bytes)));
  o.Set("count", Napi::Number::New(info.Env(), static_cast<double>(s.count)));
  o.Set("scratchBytes", Napi::Number::New(info.Env(), static_cast<double>(s.scratch_bytes)));
  o.Set("cachedBytes", Napi::Number::New(info.Env(), static_cast<double>(s.cached_bytes)));
  return o;
}

Napi::Value ResetPeak(Call& a) {
  const Napi::CallbackInfo& info = a.info();
  storage_reset_peak();
  return info.Env().Undefined();
}

Napi::Value TrimCache(Call& a) {
  const Napi::CallbackInfo& info = a.info();
  return Napi::Number::New(info.Env(), static_cast<double>(storage_trim_cache()));
}

Napi::Value GetNumThreads(Call& a) { return Napi::Number::New(a.env(), num_threads()); }

Napi::Value SetNumThreads(Call& a) {
  set_num_threads(static_cast<int>(a.i("n")));
  return a.env().Undefined();
}

Napi::Value CpuInfo(Call& a) {
  const Napi::CallbackInfo& info = a.info();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("avx2", Napi::Boolean::New(info.Env(), cpu_has_avx2_fma()));
  o.Set("avx512", Napi::Boolean::New(info.Env(), cpu_has_avx512()));
  o.Set("best", Napi::String::New(info.Env(), isa_name(best_isa())));
  o.Set("active", Napi::String::New(info.Env(), isa_name(active_isa())));
  return o;
}

Napi::Value SetIsa(Call& a) {
  const Napi::CallbackInfo& info = a.info();
  const std::string& s = a.str("isa");
  Isa want;
  if (s == "generic") want = Isa::Generic;
  else if (s == "avx2") want = Isa::Avx2;
  else if (s == "avx512") want = Isa::Avx512;
  else a.failRange("unknown ISA '" + s + "'; use generic, avx2 or avx512");
  if (!set_active_isa(want)) a.failRange("this CPU or build does not support '" + s + "' (best: " + isa_name(best_isa()) + ")");
  return info.Env().Undefined();
}

Napi::Value HasCuda(Call& a) {
  const Napi::CallbackInfo& info = a.info();
#ifdef MODULORA_HAVE_CUDA
  return Napi::Boolean::New(info.Env(), true);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

}  // namespace

void RegisterStorage(Napi::Env env, Napi::Object exports) {
  static const std::vector<OpDef> kOps = {
      {"alloc", {Int("bytes", 0, kMaxAlloc), Bool("zeroFill").omittable()}, Alloc},
      {"release", {Buffer("buffer", "an ArrayBuffer returned by alloc()")}, Release},
      {"allocScratch", {Int("bytes", 1, kMaxAlloc)}, AllocScratch},
      {"releaseScratch", {Buffer("buffer", "an ArrayBuffer returned by allocScratch()")}, ReleaseScratch},
      {"memoryStats", {}, Stats},
      {"resetPeak", {}, ResetPeak},
      {"trimCache", {}, TrimCache},
      {"getNumThreads", {}, GetNumThreads},
      {"setNumThreads", {Int("n", 1, 1024)}, SetNumThreads},
      {"cpuInfo", {}, CpuInfo},
      {"setIsa", {Text("isa")}, SetIsa},
      {"hasCuda", {}, HasCuda},
  };
  RegisterOps(env, exports, kOps);
  exports.Set("StorageBlock", StorageBlock::Define(env));
}

}  // namespace modulora
