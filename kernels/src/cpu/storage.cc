#include "cpu/storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <list>
#include <mutex>
#include <sys/mman.h>
#include <unordered_map>
#include <vector>

// Host storage with a caching allocator.
//
// A fresh large allocation costs a page fault per 4 KiB page on first touch (hundreds of ms for a
// 64 MiB tensor on a VM), and training loops allocate the same sizes every step. Freed blocks are
// therefore kept in per-size free lists and handed out again (zero-filled, which is cheap on warm
// pages), up to a cap: MODULORA_ALLOCATOR_CACHE_MB (default 512; 0 disables caching). When a
// freed block does not fit, the least recently freed blocks are released to make room.
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

// Blocks of 256 KiB and more are mapped from the system directly and unmapped when freed, so a
// freed block that does not fit in the cache returns its pages at once. Through malloc they would
// land in the heap above glibc's adaptive mmap threshold (it rises to 32 MiB after the first
// large free), where a stream of differently sized blocks (evaluation between training steps)
// grew the heap by gigabytes without reuse. Fresh mappings are zero-filled by the kernel.
constexpr size_t kMapMin = size_t(256) << 10;

void* RawAlloc(size_t rounded, bool* zeroed) {
  if (rounded >= kMapMin) {
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    if (zeroed) *zeroed = true;
    return p;
  }
  if (zeroed) *zeroed = false;
  return std::aligned_alloc(64, rounded);
}

void RawFree(void* p, size_t rounded) {
  if (rounded >= kMapMin) munmap(p, rounded);
  else std::free(p);
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
    auto it = by_size_.find(rounded);
    if (it == by_size_.end() || it->second.empty()) return nullptr;
    auto entry = it->second.back();  // the most recently freed block of this size
    it->second.pop_back();
    void* p = entry->ptr;
    lru_.erase(entry);
    cached_ -= static_cast<int64_t>(rounded);
    return p;
  }

  // Keeps the block, evicting the least recently freed blocks to stay under the cap, so the cache
  // follows the sizes in use (training steps, then evaluation, then training again); returns false
  // if the block alone exceeds the cap and the caller must free it.
  bool put(void* p, size_t rounded) {
    std::vector<Block> evicted;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (static_cast<int64_t>(rounded) > cap_) return false;
      while (cached_ + static_cast<int64_t>(rounded) > cap_) {
        Block old = lru_.front();
        auto& list = by_size_[old.rounded];
        list.erase(list.begin());  // the oldest block of its size is the first
        lru_.pop_front();
        cached_ -= static_cast<int64_t>(old.rounded);
        evicted.push_back(old);
      }
      lru_.push_back({p, rounded});
      by_size_[rounded].push_back(std::prev(lru_.end()));
      cached_ += static_cast<int64_t>(rounded);
    }
    for (const Block& b : evicted) RawFree(b.ptr, b.rounded);
    return true;
  }

  int64_t trim() {
    std::lock_guard<std::mutex> lk(mu_);
    int64_t released = cached_;
    for (const Block& b : lru_) RawFree(b.ptr, b.rounded);
    lru_.clear();
    by_size_.clear();
    cached_ = 0;
    return released;
  }

  int64_t cached() {
    std::lock_guard<std::mutex> lk(mu_);
    return cached_;
  }

 private:
  struct Block {
    void* ptr;
    size_t rounded;
  };
  std::mutex mu_;
  std::list<Block> lru_;  // cached blocks, least recently freed first
  std::unordered_map<size_t, std::vector<std::list<Block>::iterator>> by_size_;  // per size, oldest first
  int64_t cached_ = 0;
  int64_t cap_ = 0;
};

Cache& GetCache() {
  static Cache* cache = new Cache();  // never destroyed: storage may be freed during exit
  return *cache;
}


}  // namespace

void* storage_alloc(size_t bytes, bool zero_fill) {
  size_t rounded = RoundedSize(bytes);
  bool zeroed = false;
  void* p = GetCache().take(rounded);
  if (!p) p = RawAlloc(rounded, &zeroed);
  if (!p) {
    // Out of memory: give the cache back to the system and try once more.
    GetCache().trim();
    p = RawAlloc(rounded, &zeroed);
    if (!p) return nullptr;
  }
  if (zero_fill && !zeroed) std::memset(p, 0, bytes);
  Track(static_cast<int64_t>(bytes));
  g_count++;
  return p;
}

void storage_free(void* p, size_t bytes) {
  if (!p) return;
  size_t rounded = RoundedSize(bytes);
  if (!GetCache().put(p, rounded)) RawFree(p, rounded);
  Track(-static_cast<int64_t>(bytes));
  g_count--;
}

void* scratch_alloc(size_t bytes) {
  void* p = RawAlloc(RoundedSize(bytes), nullptr);
  if (!p) return nullptr;
  Track(static_cast<int64_t>(bytes));
  g_scratch += static_cast<int64_t>(bytes);
  return p;
}

void scratch_free(void* p, size_t bytes) {
  if (!p) return;
  RawFree(p, RoundedSize(bytes));
  Track(-static_cast<int64_t>(bytes));
  g_scratch -= static_cast<int64_t>(bytes);
}

StorageStats storage_stats() { return {g_bytes.load(), g_peak.load(), g_count.load(), g_scratch.load(), GetCache().cached()}; }

void storage_reset_peak() { g_peak.store(g_bytes.load()); }

int64_t storage_trim_cache() { return GetCache().trim(); }

}  // namespace modulora
