#include "cpu/storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

// Host storage with a caching allocator.
//
// A fresh large allocation costs a page fault per 4 KiB page on first touch (hundreds of ms for a
// 64 MiB tensor on a VM), and training loops allocate the same sizes every step. Freed blocks are
// therefore kept in per-size free lists and handed out again (zero-filled, which is cheap on warm
// pages), up to a cap: MODULORA_ALLOCATOR_CACHE_MB (default 512; 0 disables caching).
// `bytes`/`peak_bytes` count live storage only; what the cache holds is reported separately.

namespace modulora {
namespace {
std::atomic<int64_t> g_bytes{0}, g_peak{0}, g_count{0}, g_scratch{0};

void Track(int64_t delta) {
  int64_t now = g_bytes.fetch_add(delta) + delta;
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}

size_t RoundedSize(size_t bytes) {
  bytes = std::max<size_t>(bytes, 1);
  // Small blocks round to 64 bytes. Larger ones round up to a size class of four per power of
  // two (2^k, 1.25·2^k, 1.5·2^k, 1.75·2^k): at most 25% slack, and tensors whose shapes vary a
  // little from step to step (batches grouped by length) share a few lists instead of filling
  // the cache with sizes that never come back.
  if (bytes < (64u << 10)) return (bytes + 63) & ~size_t(63);
  size_t pow2 = size_t(1) << (63 - __builtin_clzll(static_cast<unsigned long long>(bytes)));
  size_t step = pow2 / 4;
  return (bytes + step - 1) / step * step;
}

class Cache {
 public:
  Cache() {
    int64_t mb = 512;
    if (const char* env = std::getenv("MODULORA_ALLOCATOR_CACHE_MB")) mb = std::max<int64_t>(0, std::atoll(env));
    cap_ = mb << 20;
  }
  ~Cache() { trim(); }

  void* take(size_t rounded) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = free_.find(rounded);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= static_cast<int64_t>(rounded);
    return p;
  }

  // Keeps the block if it fits under the cap; returns false if the caller must free it.
  bool put(void* p, size_t rounded) {
    std::lock_guard<std::mutex> lk(mu_);
    if (cached_ + static_cast<int64_t>(rounded) > cap_) return false;
    free_[rounded].push_back(p);
    cached_ += static_cast<int64_t>(rounded);
    return true;
  }

  int64_t trim() {
    std::lock_guard<std::mutex> lk(mu_);
    int64_t released = cached_;
    for (auto& kv : free_)
      for (void* p : kv.second) std::free(p);
    free_.clear();
    cached_ = 0;
    return released;
  }

  int64_t cached() {
    std::lock_guard<std::mutex> lk(mu_);
    return cached_;
  }

 private:
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  int64_t cached_ = 0;
  int64_t cap_ = 0;
};

Cache& GetCache() {
  static Cache* cache = new Cache();  // never destroyed: storage may be freed during exit
  return *cache;
}

void* RawAlloc(size_t rounded) { return std::aligned_alloc(64, rounded); }
}  // namespace

void* storage_alloc(size_t bytes) {
  size_t rounded = RoundedSize(bytes);
  void* p = GetCache().take(rounded);
  if (!p) p = RawAlloc(rounded);
  if (!p) {
    // Out of memory: give the cache back to the system and try once more.
    GetCache().trim();
    p = RawAlloc(rounded);
    if (!p) return nullptr;
  }
  std::memset(p, 0, bytes);
  Track(static_cast<int64_t>(bytes));
  g_count++;
  return p;
}

void storage_free(void* p, size_t bytes) {
  if (!p) return;
  size_t rounded = RoundedSize(bytes);
  if (!GetCache().put(p, rounded)) std::free(p);
  Track(-static_cast<int64_t>(bytes));
  g_count--;
}

void* scratch_alloc(size_t bytes) {
  void* p = RawAlloc(RoundedSize(bytes));
  if (!p) return nullptr;
  Track(static_cast<int64_t>(bytes));
  g_scratch += static_cast<int64_t>(bytes);
  return p;
}

void scratch_free(void* p, size_t bytes) {
  if (!p) return;
  std::free(p);
  Track(-static_cast<int64_t>(bytes));
  g_scratch -= static_cast<int64_t>(bytes);
}

StorageStats storage_stats() { return {g_bytes.load(), g_peak.load(), g_count.load(), g_scratch.load(), GetCache().cached()}; }

void storage_reset_peak() { g_peak.store(g_bytes.load()); }

int64_t storage_trim_cache() { return GetCache().trim(); }

}  // namespace modulora
