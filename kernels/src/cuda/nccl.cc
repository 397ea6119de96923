// NCCL, loaded at run time (dlopen): the addon builds without nccl.h or libnccl, and a CUDA build
// without NCCL works for everything but multi-GPU collectives. ncclInfo() says whether it was found.
//
//   cuda.ncclInfo() → {available, version?, versionCode?, path?, reason?}       never throws
//   cuda.ncclUniqueId() → Uint8Array(128)                                     rank 0, sent to the others
//   cuda.ncclInit(device, id, worldSize, rank) → Promise<comm>                ncclCommInitRank off the JS thread
//   cuda.ncclAllReduce(device, comm, ptr, count, dtypeCode, op)               in place, on the device's stream
//   cuda.ncclBroadcast(device, comm, ptr, count, dtypeCode, root)             in place, on the device's stream
//   cuda.ncclGroupStart(), cuda.ncclGroupEnd()                                several tensors in one launch
//   cuda.ncclAsyncError(comm) → string | null                                 ncclCommGetAsyncError
//   cuda.ncclAbort(comm) → boolean                                            ncclCommAbort (false: not live)
//   cuda.ncclDestroy(comm) → Promise<void>                                    ncclCommDestroy off the JS thread
//
// dtypeCode is the addon's dtype code (runtime.h Code: f32 0, f64 1, bf16 2, f16 3, i32 4, i8 5,
// u8 6, u32 7), mapped to NCCL's by the table below; op is "sum", "avg", "max" or "min".
// A comm is a number (the ncclComm_t address); only handles from ncclInit that were not destroyed
// or aborted are accepted.
//
// Library lookup: $MODULORA_NCCL_LIBRARY (a path; when set and it fails, NCCL is unavailable, no
// fallback), then the path CMake found at configure time (MODULORA_NCCL_CONFIGURED_PATH), then
// dlopen("libnccl.so.2") (LD_LIBRARY_PATH, the loader cache).
//
// NVLink multicast: before NCCL is first used, NCCL_NVLS_ENABLE is set to 0 unless the environment
// sets it. NVLS (NVLink SHARP) makes NCCL create multicast objects on NVSwitch hosts; the GPU hosts
// we run on must not have them created (and NVLS also reserves about 1 GiB per GPU). A user who
// wants NVLS sets NCCL_NVLS_ENABLE=1 themselves; setenv(..., 0) never overrides it.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <napi.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cuda/runtime.h"

#ifndef MODULORA_NCCL_CONFIGURED_PATH
#define MODULORA_NCCL_CONFIGURED_PATH ""
#endif

namespace modulora {
namespace cuda {
namespace {

// --- The part of NCCL's C ABI we use (nccl.h; unchanged since 2.10) ----------------------------
// ncclUniqueId is a struct of 128 chars, passed by value to ncclCommInitRank; ncclComm_t is an
// opaque pointer; ncclResult_t, ncclDataType_t and ncclRedOp_t are C enums (int).
constexpr size_t kUniqueIdBytes = 128;
struct UniqueId {
  char internal[kUniqueIdBytes];
};
struct OpaqueComm;
using Comm = OpaqueComm*;
using Result = int;
constexpr Result kSuccess = 0;
constexpr Result kInProgress = 7;
constexpr int kMinVersionCode = 21000;  // 2.10.0: ncclAvg and ncclBfloat16

using GetVersionFn = Result (*)(int*);
using GetUniqueIdFn = Result (*)(UniqueId*);
using CommInitRankFn = Result (*)(Comm*, int, UniqueId, int);
using CommFn = Result (*)(Comm);
using CommGetAsyncErrorFn = Result (*)(Comm, Result*);
using GetErrorStringFn = const char* (*)(Result);
using GetLastErrorFn = const char* (*)(Comm);
using AllReduceFn = Result (*)(const void*, void*, size_t, int, int, Comm, cudaStream_t);
using BroadcastFn = Result (*)(const void*, void*, size_t, int, int, Comm, cudaStream_t);
using GroupFn = Result (*)();

// Addon dtype code (index) → ncclDataType_t, or -1 where NCCL has no such type.
constexpr int kNcclType[] = {
    7,  // f32  → ncclFloat32
    8,  // f64  → ncclFloat64
    9,  // bf16 → ncclBfloat16
    6,  // f16  → ncclFloat16
    2,  // i32  → ncclInt32
    0,  // i8   → ncclInt8
    1,  // u8   → ncclUint8
    3,  // u32  → ncclUint32
};

struct RedOp {
  const char* name;
  int code;  // ncclRedOp_t
};
constexpr RedOp kRedOps[] = {{"sum", 0}, {"max", 2}, {"min", 3}, {"avg", 4}};

struct Library {
  void* handle = nullptr;
  std::string path;    // the file that was loaded
  std::string reason;  // why NCCL is unavailable ("" when it is available)
  int version = 0;
  GetVersionFn get_version = nullptr;
  GetUniqueIdFn get_unique_id = nullptr;
  CommInitRankFn comm_init_rank = nullptr;
  CommFn comm_destroy = nullptr;
  CommFn comm_abort = nullptr;
  CommGetAsyncErrorFn comm_get_async_error = nullptr;
  GetErrorStringFn get_error_string = nullptr;
  GetLastErrorFn get_last_error = nullptr;  // optional (NCCL 2.13+)
  AllReduceFn all_reduce = nullptr;
  BroadcastFn broadcast = nullptr;
  GroupFn group_start = nullptr;
  GroupFn group_end = nullptr;
  bool ok() const { return reason.empty(); }
};

std::string VersionString(int code) {
  // NCCL_VERSION(X, Y, Z): X*1000 + Y*100 + Z up to 2.8, X*10000 + Y*100 + Z from 2.9 on.
  const int major = code >= 10000 ? code / 10000 : code / 1000;
  const int minor = code >= 10000 ? (code % 10000) / 100 : (code % 1000) / 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(code % 100);
}

// Fills lib's functions from an open handle; returns "" or what is missing.
std::string Bind(Library& lib) {
  std::vector<std::string> missing;
  auto sym = [&](const char* name, bool required) -> void* {
    void* p = dlsym(lib.handle, name);
    if (!p && required) missing.emplace_back(name);
    return p;
  };
  lib.get_version = reinterpret_cast<GetVersionFn>(sym("ncclGetVersion", true));
  lib.get_unique_id = reinterpret_cast<GetUniqueIdFn>(sym("ncclGetUniqueId", true));
  lib.comm_init_rank = reinterpret_cast<CommInitRankFn>(sym("ncclCommInitRank", true));
  lib.comm_destroy = reinterpret_cast<CommFn>(sym("ncclCommDestroy", true));
  lib.comm_abort = reinterpret_cast<CommFn>(sym("ncclCommAbort", true));
  lib.comm_get_async_error = reinterpret_cast<CommGetAsyncErrorFn>(sym("ncclCommGetAsyncError", true));
  lib.get_error_string = reinterpret_cast<GetErrorStringFn>(sym("ncclGetErrorString", true));
  lib.get_last_error = reinterpret_cast<GetLastErrorFn>(sym("ncclGetLastError", false));
  lib.all_reduce = reinterpret_cast<AllReduceFn>(sym("ncclAllReduce", true));
  lib.broadcast = reinterpret_cast<BroadcastFn>(sym("ncclBroadcast", true));
  lib.group_start = reinterpret_cast<GroupFn>(sym("ncclGroupStart", true));
  lib.group_end = reinterpret_cast<GroupFn>(sym("ncclGroupEnd", true));
  if (missing.empty()) return "";
  std::string m;
  for (const std::string& s : missing) m += (m.empty() ? "" : ", ") + s;
  return "it lacks " + m;
}

// Opens `path` (a file path or a bare soname); "" on success, else dlerror's text.
std::string Open(Library& lib, const std::string& path) {
  dlerror();
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    return e ? e : "dlopen failed";
  }
  lib.handle = h;
  // The file actually loaded (a bare soname resolves through the loader's search path).
  Dl_info where{};
  void* any = dlsym(h, "ncclGetVersion");
  lib.path = any && dladdr(any, &where) && where.dli_fname ? where.dli_fname : path;
  return "";
}

Library LoadLibrary() {
  // Before NCCL reads its parameters (it caches them on first use).
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  Library lib;
  std::vector<std::string> tried;
  const char* env = std::getenv("MODULORA_NCCL_LIBRARY");
  if (env && *env) {
    const std::string err = Open(lib, env);
    if (!err.empty()) {
      lib.reason = std::string("MODULORA_NCCL_LIBRARY=") + env + " could not be loaded (" + err +
                   "); point it at libnccl.so.2 (e.g. <site-packages>/nvidia/nccl/lib/libnccl.so.2) or unset it";
      return lib;
    }
  } else {
    std::vector<std::string> candidates;
    if (std::strlen(MODULORA_NCCL_CONFIGURED_PATH) > 0) candidates.emplace_back(MODULORA_NCCL_CONFIGURED_PATH);
    candidates.emplace_back("libnccl.so.2");
    for (const std::string& c : candidates) {
      const std::string err = Open(lib, c);
      if (err.empty()) break;
      tried.push_back(c + ": " + err);
    }
    if (!lib.handle) {
      std::string t;
      for (const std::string& s : tried) t += (t.empty() ? "" : "; ") + s;
      lib.reason = "libnccl.so.2 was not found (tried " + t +
                   "); install NCCL (pip install nvidia-nccl-cu13, or cu12; or the libnccl2 package), then set "
                   "MODULORA_NCCL_LIBRARY to its libnccl.so.2 or add its folder to LD_LIBRARY_PATH";
      return lib;
    }
  }
  const std::string missing = Bind(lib);
  if (!missing.empty()) {
    lib.reason = lib.path + " is not a usable NCCL: " + missing + "; point MODULORA_NCCL_LIBRARY at NCCL 2.10 or newer";
    return lib;
  }
  if (lib.get_version(&lib.version) != kSuccess) {
    lib.reason = lib.path + ": ncclGetVersion failed; point MODULORA_NCCL_LIBRARY at a working NCCL 2.10 or newer";
    return lib;
  }
  if (lib.version < kMinVersionCode) {
    lib.reason = "NCCL " + VersionString(lib.version) + " at " + lib.path +
                 " is older than 2.10 (needed for bf16 and ncclAvg); install a newer NCCL and point MODULORA_NCCL_LIBRARY at it";
  }
  return lib;
}

// Loaded once, on the JS thread (every export is called there).
const Library& Lib() {
  static const Library lib = LoadLibrary();
  return lib;
}

const Library& RequireLib() {
  const Library& lib = Lib();
  if (!lib.ok()) throw CudaError("NCCL is unavailable: " + lib.reason);
  return lib;
}

// What an NCCL result means for the caller, and what to do about it.
const char* Advice(Result r) {
  switch (r) {
    case 1: return "a CUDA call inside NCCL failed: check the device (nvidia-smi) and earlier kernel errors (rerun with MODULORA_CUDA_SYNC=1)";
    case 2: return "a system call or the network failed (a peer process may have died, or sockets/shared memory are misconfigured): "
                   "check the other ranks' logs, give containers enough /dev/shm, rerun with NCCL_DEBUG=INFO";
    case 3: return "NCCL hit an internal error: rerun with NCCL_DEBUG=INFO and report it with that log";
    case 4: return "NCCL refused an argument (a bad pointer, count, dtype or op): a bug in the caller";
    case 5: return "NCCL was used wrongly: every rank must use the same unique id and world size, one GPU per rank, "
                   "and run the same collectives in the same order";
    case 6: return "a peer rank failed or exited: look at the other ranks' logs for the first error";
    case 8: return "an NCCL operation timed out: a peer rank is stuck or gone; look at the other ranks' logs";
    default: return "rerun with NCCL_DEBUG=INFO to see why";
  }
}

std::string ErrorText(const Library& lib, const char* what, Result r, Comm comm) {
  std::string msg = std::string(what) + " failed: " + (lib.get_error_string ? lib.get_error_string(r) : "NCCL error") + " (ncclResult " +
                    std::to_string(r) + ")";
  if (lib.get_last_error) {
    const char* last = lib.get_last_error(comm);
    if (last && *last) msg += ": " + std::string(last);
  }
  return msg + "; " + Advice(r);
}

void CheckNccl(const Library& lib, Result r, const char* what, Comm comm) {
  if (r != kSuccess) throw CudaError(ErrorText(lib, what, r, comm));
}

// --- Live communicators (touched on the JS thread only) -----------------------------------------

struct CommInfo {
  int device;
  int rank;
  int world_size;
};

std::map<uintptr_t, CommInfo>& Comms() {
  static std::map<uintptr_t, CommInfo> all;
  return all;
}

double HandleOf(Comm c) { return static_cast<double>(reinterpret_cast<uintptr_t>(c)); }

// The live communicator passed as argument i (a number from ncclInit).
std::pair<Comm, CommInfo> CommArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber()) throw CudaError("argument " + std::to_string(i) + " must be an NCCL communicator handle from ncclInit");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  const uintptr_t key = v >= 0 && v <= 9007199254740991.0 ? static_cast<uintptr_t>(v) : 0;
  auto it = Comms().find(key);
  if (key == 0 || it == Comms().end()) {
    throw CudaError("argument " + std::to_string(i) + " is not a live NCCL communicator (it was destroyed or aborted, or did not come from ncclInit)");
  }
  return {reinterpret_cast<Comm>(key), it->second};
}

// Runs fn, turning a CudaError into a JS Error "cuda <op>: ..." (for the exports that take no device).
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

// --- Work off the JS thread ----------------------------------------------------------------------
// ncclCommInitRank blocks until every rank has arrived and ncclCommDestroy until the queued work is
// done, so each runs on a thread of its own (not the libuv pool, which a few stuck ranks would
// exhaust) and settles a promise back on the JS thread.
struct Job {
  std::string op;
  std::function<std::string(double&)> work;             // on the thread: "" or an error; sets the value
  std::function<void(Napi::Env, double)> on_ok;         // on the JS thread, before resolving
  Napi::Promise::Deferred deferred;
  Napi::ThreadSafeFunction tsfn;
  std::string error;
  double value = 0;
  explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

Napi::Promise RunOffThread(Napi::Env env, Job* job, bool resolve_number) {
  Napi::Promise promise = job->deferred.Promise();
  job->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), ("modulora." + job->op).c_str(), 0, 1);
  std::thread([job, resolve_number] {
    job->error = job->work(job->value);
    Napi::ThreadSafeFunction tsfn = job->tsfn;  // the callback deletes job
    const napi_status st = tsfn.BlockingCall([job, resolve_number](Napi::Env env, Napi::Function) {
      if (job->error.empty()) {
        if (job->on_ok) job->on_ok(env, job->value);
        job->deferred.Resolve(resolve_number ? Napi::Number::New(env, job->value).As<Napi::Value>() : env.Undefined());
      } else {
        job->deferred.Reject(Napi::Error::New(env, "cuda " + job->op + ": " + job->error).Value());
      }
      delete job;
    });
    (void)st;  // napi_closing: the environment is going away, and the promise with it
    tsfn.Release();
  }).detach();
  return promise;
}

// --- The exports ---------------------------------------------------------------------------------

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  try {
    const Library& lib = Lib();
    o.Set("available", Napi::Boolean::New(env, lib.ok()));
    if (lib.version > 0) {
      o.Set("version", VersionString(lib.version));
      o.Set("versionCode", lib.version);
    }
    if (!lib.path.empty()) o.Set("path", lib.path);
    if (!lib.ok()) o.Set("reason", lib.reason);
  } catch (const std::exception& e) {
    o.Set("available", Napi::Boolean::New(env, false));
    o.Set("reason", std::string("loading NCCL failed: ") + e.what());
  }
  return o;
}

Napi::Value UniqueIdExport(const Napi::CallbackInfo& info) {
  return Guard(info, "ncclUniqueId", [&]() -> Napi::Value {
    const Library& lib = RequireLib();
    UniqueId id{};
    CheckNccl(lib, lib.get_unique_id(&id), "ncclGetUniqueId", nullptr);
    Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), kUniqueIdBytes);
    std::memcpy(out.Data(), id.internal, kUniqueIdBytes);
    return out;
  });
}

// ncclInit(device, id: Uint8Array(128), worldSize, rank) → Promise<comm>. CudaCall has made the
// device's context (and selected the device) on the JS thread already.
Napi::Value InitOp(CudaCall& c) {
  const Library& lib = RequireLib();
  if (c.count() < 2 || !c.value(1).IsTypedArray() || c.value(1).As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      c.value(1).As<Napi::Uint8Array>().ByteLength() != kUniqueIdBytes) {
    throw CudaError("argument 1 must be the 128-byte unique id (a Uint8Array from ncclUniqueId on rank 0)");
  }
  const int64_t world = c.i(2);
  const int64_t rank = c.i(3);
  if (world < 1 || world > (int64_t{1} << 20)) throw CudaError("worldSize must be a positive integer, got " + std::to_string(world));
  if (rank < 0 || rank >= world) throw CudaError("rank must be in [0, " + std::to_string(world - 1) + "], got " + std::to_string(rank));
  UniqueId id{};
  std::memcpy(id.internal, c.value(1).As<Napi::Uint8Array>().Data(), kUniqueIdBytes);
  const int device = c.ctx().device();
  auto* job = new Job(c.env());
  job->op = "ncclInit";
  job->work = [&lib, id, device, world, rank](double& out) -> std::string {
    // The current device is per thread: NCCL binds the communicator to this thread's device.
    const cudaError_t ce = cudaSetDevice(device);
    if (ce != cudaSuccess) return std::string("cudaSetDevice(") + std::to_string(device) + "): " + cudaGetErrorString(ce);
    Comm comm = nullptr;
    const Result r = lib.comm_init_rank(&comm, static_cast<int>(world), id, static_cast<int>(rank));
    if (r != kSuccess) return ErrorText(lib, "ncclCommInitRank", r, nullptr);
    out = HandleOf(comm);
    return "";
  };
  job->on_ok = [device, world, rank](Napi::Env, double handle) {
    Comms()[static_cast<uintptr_t>(handle)] = CommInfo{device, static_cast<int>(rank), static_cast<int>(world)};
  };
  return RunOffThread(c.env(), job, true);
}

// The parts common to the two collectives: (device, comm, ptr, count, dtypeCode, ...).
struct CollArgs {
  Comm comm;
  void* ptr;
  size_t count;
  int type;
};

CollArgs ReadColl(CudaCall& c) {
  auto [comm, ci] = CommArg(c.info(), 1);
  if (ci.device != c.ctx().device()) {
    throw CudaError("the communicator belongs to cuda:" + std::to_string(ci.device) + ", but the call is for cuda:" + std::to_string(c.ctx().device()));
  }
  void* p = c.ptr(2);
  const int64_t count = c.i(3);
  if (count < 0) throw CudaError("count must be ≥ 0, got " + std::to_string(count));
  if (count > 0 && p == nullptr) throw CudaError("the device address is null");
  const int64_t code = c.i(4);
  if (code < 0 || code >= static_cast<int64_t>(sizeof kNcclType / sizeof kNcclType[0])) {
    throw CudaError("dtype code " + std::to_string(code) + " is not an addon dtype code (f32 0, f64 1, bf16 2, f16 3, i32 4, i8 5, u8 6, u32 7)");
  }
  return CollArgs{comm, p, static_cast<size_t>(count), kNcclType[code]};
}

Napi::Value AllReduceOp(CudaCall& c) {
  const Library& lib = RequireLib();
  const CollArgs a = ReadColl(c);
  if (c.count() < 6 || !c.value(5).IsString()) throw CudaError("argument 5 must be the reduce op: \"sum\", \"avg\", \"max\" or \"min\"");
  const std::string name = c.value(5).As<Napi::String>().Utf8Value();
  int op = -1;
  for (const RedOp& r : kRedOps) {
    if (name == r.name) op = r.code;
  }
  if (op < 0) throw CudaError("reduce op \"" + name + "\" is not one of \"sum\", \"avg\", \"max\", \"min\"");
  CheckNccl(lib, lib.all_reduce(a.ptr, a.ptr, a.count, a.type, op, a.comm, c.stream()), "ncclAllReduce", a.comm);
  return c.env().Undefined();
}

Napi::Value BroadcastOp(CudaCall& c) {
  const Library& lib = RequireLib();
  const CollArgs a = ReadColl(c);
  const int64_t root = c.i(5);
  const CommInfo& ci = Comms().at(reinterpret_cast<uintptr_t>(a.comm));
  if (root < 0 || root >= ci.world_size) throw CudaError("root must be a rank in [0, " + std::to_string(ci.world_size - 1) + "], got " + std::to_string(root));
  CheckNccl(lib, lib.broadcast(a.ptr, a.ptr, a.count, a.type, static_cast<int>(root), a.comm, c.stream()), "ncclBroadcast", a.comm);
  return c.env().Undefined();
}

Napi::Value GroupStart(const Napi::CallbackInfo& info) {
  return Guard(info, "ncclGroupStart", [&]() -> Napi::Value {
    const Library& lib = RequireLib();
    CheckNccl(lib, lib.group_start(), "ncclGroupStart", nullptr);
    return info.Env().Undefined();
  });
}

Napi::Value GroupEnd(const Napi::CallbackInfo& info) {
  return Guard(info, "ncclGroupEnd", [&]() -> Napi::Value {
    const Library& lib = RequireLib();
    CheckNccl(lib, lib.group_end(), "ncclGroupEnd", nullptr);
    return info.Env().Undefined();
  });
}

Napi::Value AsyncError(const Napi::CallbackInfo& info) {
  return Guard(info, "ncclAsyncError", [&]() -> Napi::Value {
    const Library& lib = RequireLib();
    auto [comm, ci] = CommArg(info, 0);
    Result async = kSuccess;
    const Result r = lib.comm_get_async_error(comm, &async);
    if (r != kSuccess) return Napi::String::New(info.Env(), ErrorText(lib, "ncclCommGetAsyncError", r, comm));
    if (async == kSuccess || async == kInProgress) return info.Env().Null();
    return Napi::String::New(info.Env(), ErrorText(lib, ("rank " + std::to_string(ci.rank) + "'s communicator").c_str(), async, comm));
  });
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  return Guard(info, "ncclAbort", [&]() -> Napi::Value {
    const Library& lib = RequireLib();
    if (info.Length() < 1 || !info[0].IsNumber()) throw CudaError("argument 0 must be an NCCL communicator handle");
    const uintptr_t key = static_cast<uintptr_t>(info[0].As<Napi::Number>().DoubleValue());
    auto it = Comms().find(key);
    if (it == Comms().end()) return Napi::Boolean::New(info.Env(), false);  // aborted or destroyed already
    Comms().erase(it);
    Comm comm = reinterpret_cast<Comm>(key);
    CheckNccl(lib, lib.comm_abort(comm), "ncclCommAbort", nullptr);
    return Napi::Boolean::New(info.Env(), true);
  });
}

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  return Guard(info, "ncclDestroy", [&]() -> Napi::Value {
    const Library& lib = RequireLib();
    const std::pair<Comm, CommInfo> live = CommArg(info, 0);
    const Comm comm = live.first;
    const int device = live.second.device;
    Comms().erase(reinterpret_cast<uintptr_t>(comm));
    auto* job = new Job(info.Env());
    job->op = "ncclDestroy";
    job->work = [&lib, comm, device](double&) -> std::string {
      cudaSetDevice(device);
      const Result r = lib.comm_destroy(comm);
      return r == kSuccess ? "" : ErrorText(lib, "ncclCommDestroy", r, nullptr);
    };
    return RunOffThread(info.Env(), job, false);
  });
}

}  // namespace

void RegisterCudaNccl(Napi::Env env, Napi::Object cuda) {
  DefineCudaOps(env, cuda, {{"ncclInit", InitOp}, {"ncclAllReduce", AllReduceOp}, {"ncclBroadcast", BroadcastOp}});
  cuda.Set("ncclInfo", Napi::Function::New(env, Info, "ncclInfo"));
  cuda.Set("ncclUniqueId", Napi::Function::New(env, UniqueIdExport, "ncclUniqueId"));
  cuda.Set("ncclGroupStart", Napi::Function::New(env, GroupStart, "ncclGroupStart"));
  cuda.Set("ncclGroupEnd", Napi::Function::New(env, GroupEnd, "ncclGroupEnd"));
  cuda.Set("ncclAsyncError", Napi::Function::New(env, AsyncError, "ncclAsyncError"));
  cuda.Set("ncclAbort", Napi::Function::New(env, Abort, "ncclAbort"));
  cuda.Set("ncclDestroy", Napi::Function::New(env, Destroy, "ncclDestroy"));
}

}  // namespace cuda
}  // namespace modulora
