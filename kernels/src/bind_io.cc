// File I/O bindings: memory-mapping a byte range of a file (used by the safetensors reader).
//
// mmapFile(path, offset, length) maps [offset, offset + length) of a file and returns it as an
// external ArrayBuffer. The mapping is MAP_PRIVATE with PROT_READ|PROT_WRITE: copy-on-write, so a
// stray write through a view lands in a private page instead of crashing (PROT_READ alone would
// SIGSEGV) or changing the file. mmap needs a page-aligned file offset, so we map from the page
// boundary at or below `offset` and hand out a buffer over the requested part only.
//
// unmapFile(buffer) unmaps now and detaches the buffer, so a stale view reads as empty instead of
// touching unmapped memory. The buffer's finalizer unmaps as a safety net. Mappings are tracked in
// a registry keyed by the buffer's data pointer (as bind_storage.cc does for alloc/release).
//
// Caveat: if the file is truncated by someone else while mapped, touching the vanished pages
// raises SIGBUS; nothing short of copying the file protects against that.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <node_api.h>

#include <vector>

#include "binding.h"

namespace modulora {
namespace {

struct Mapping {
  void* base;        // what mmap returned (page aligned)
  size_t mapBytes;   // what was mapped from `base`
  void* data;        // start of the requested range (base + offset % page size)
  size_t bytes;      // requested length
  bool unmapped;
};

std::mutex g_maps_mu;
std::unordered_map<void*, Mapping*> g_maps;

constexpr int64_t kMaxSafeInteger = 9007199254740991;  // 2^53 - 1: what a JS number holds exactly

// Closes a file descriptor when it goes out of scope (the mapping keeps its own reference).
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) close(fd);
  }
};

std::string Errno(int err) { return std::string(strerror(err)); }

// The largest ArrayBuffer Node can wrap around external memory: 2^32 bytes up to Node 21 (an
// external ArrayBuffer is made through node::Buffer, capped at kMaxLength), 2^53 - 1 from Node 22.
int64_t MaxBufferBytes(napi_env env) {
  const napi_node_version* v = nullptr;
  if (sizeof(void*) < 8) return (int64_t{1} << 30) - 1;
  if (napi_get_node_version(env, &v) == napi_ok && v != nullptr && v->major >= 22) return kMaxSafeInteger;
  return int64_t{1} << 32;
}

void FinalizeMappingRaw(napi_env /*env*/, void* /*data*/, void* hint) {
  Mapping* m = static_cast<Mapping*>(hint);
  if (!m->unmapped) {
    {
      std::lock_guard<std::mutex> lk(g_maps_mu);
      g_maps.erase(m->data);
    }
    munmap(m->base, m->mapBytes);
  }
  delete m;
}

Napi::Value MmapFile(Call& a) {
  const Napi::CallbackInfo& info = a.info();
  const std::string& path = a.str("path");
  const int64_t offset = a.i("offset");
  const int64_t length = a.i("length");

  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    a.fail("cannot open '" + path + "': " + Errno(err));
  }
  FdGuard guard{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    a.fail("cannot stat '" + path + "': " + Errno(err));
  }
  if (!S_ISREG(st.st_mode)) a.fail("'" + path + "' is not a regular file");
  int64_t fileSize = static_cast<int64_t>(st.st_size);
  // offset and length are both <= 2^53, so the sum cannot overflow int64.
  if (offset + length > fileSize) {
    a.failRange("range [" + std::to_string(offset) + ", " + std::to_string(offset + length) + ") of '" + path +
                "' is beyond the end of the file (" + std::to_string(fileSize) + " bytes): " + Errno(EINVAL));
  }
  if (length == 0) return Napi::ArrayBuffer::New(info.Env(), 0);  // nothing to map
  const int64_t maxBytes = MaxBufferBytes(info.Env());
  if (length > maxBytes) {
    a.failRange("cannot map " + std::to_string(length) + " bytes of '" + path + "' as one ArrayBuffer: this Node caps buffers at " +
                std::to_string(maxBytes) + " bytes (" + Errno(EFBIG) + "); map it in smaller pieces");
  }

  const int64_t page = static_cast<int64_t>(sysconf(_SC_PAGESIZE));
  const int64_t aligned = offset - offset % page;
  const size_t mapBytes = static_cast<size_t>(length + (offset - aligned));
  // MAP_NORESERVE: a private writable mapping would otherwise charge the whole range against
  // the commit limit, although only pages actually written (normally none) need backing.
  void* base = mmap(nullptr, mapBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd,
                    static_cast<off_t>(aligned));
  if (base == MAP_FAILED) {
    int err = errno;
    a.failRange("mmap of " + std::to_string(length) + " bytes at offset " + std::to_string(offset) + " of '" + path +
                "' failed: " + Errno(err));
  }
  void* data = static_cast<uint8_t*>(base) + (offset - aligned);
  Mapping* m = new Mapping{base, mapBytes, data, static_cast<size_t>(length), false};
  {
    std::lock_guard<std::mutex> lk(g_maps_mu);
    g_maps[data] = m;
  }
  // Raw N-API rather than Napi::ArrayBuffer::New: if creation fails, Node may already have run
  // the finalizer, and node-addon-api would then free its own finalizer record a second time.
  // Here the registry tells whether our finalizer ran.
  napi_value out;
  napi_status status = napi_create_external_arraybuffer(info.Env(), data, static_cast<size_t>(length), FinalizeMappingRaw, m, &out);
  if (status != napi_ok) {
    bool stillOurs = false;
    {
      std::lock_guard<std::mutex> lk(g_maps_mu);
      stillOurs = g_maps.erase(data) > 0;
    }
    if (stillOurs) {
      munmap(base, mapBytes);
      delete m;
    }
    a.failRange("cannot wrap the mapping of '" + path + "' in an ArrayBuffer (napi status " + std::to_string(status) + ")");
  }
  return Napi::Value(info.Env(), out);
}

Napi::Value UnmapFile(Call& a) {
  const Napi::CallbackInfo& info = a.info();
  Napi::ArrayBuffer buf = a.value("buffer").As<Napi::ArrayBuffer>();
  if (buf.IsDetached()) return Napi::Boolean::New(info.Env(), false);  // already unmapped
  if (buf.ByteLength() == 0) {
    // mmapFile(..., 0) maps nothing; detach for symmetry so "unmapped" always reads the same.
    buf.Detach();
    return Napi::Boolean::New(info.Env(), true);
  }
  void* p = buf.Data();
  Mapping* m = nullptr;
  {
    std::lock_guard<std::mutex> lk(g_maps_mu);
    auto it = g_maps.find(p);
    if (it != g_maps.end() && it->second->bytes == buf.ByteLength()) {
      m = it->second;
      g_maps.erase(it);
    }
  }
  if (!m) a.fail("this ArrayBuffer was not returned by mmapFile() (or was already unmapped)");
  // Mark and copy out before detaching: whenever the finalizer runs (now or at collection), it
  // sees `unmapped` and only frees `m`, so nothing here touches `m` after Detach().
  void* base = m->base;
  size_t mapBytes = m->mapBytes;
  m->unmapped = true;
  buf.Detach();
  munmap(base, mapBytes);
  return Napi::Boolean::New(info.Env(), true);
}

}  // namespace

void RegisterIo(Napi::Env env, Napi::Object exports) {
  static const std::vector<OpDef> kOps = {
      {"mmapFile", {Text("path"), Int("offset", 0, kMaxSafeInteger), Int("length", 0, kMaxSafeInteger)}, MmapFile},
      {"unmapFile", {Buffer("buffer", "an ArrayBuffer returned by mmapFile()")}, UnmapFile},
  };
  RegisterOps(env, exports, kOps);
}

}  // namespace modulora
