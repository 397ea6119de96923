#include "cpu/storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace modulora {
namespace {
std::atomic<int64_t> g_bytes{0}, g_peak{0}, g_count{0}, g_scratch{0};

void Track(int64_t delta) {
  int64_t now = g_bytes.fetch_add(delta) + delta;
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}

void* AlignedAlloc(size_t bytes) {
  size_t rounded = (std::max<size_t>(bytes, 1) + 63) & ~size_t(63);
  void* p = std::aligned_alloc(64, rounded);
  return p;
}
}  // namespace

void* storage_alloc(size_t bytes) {
  void* p = AlignedAlloc(bytes);
  if (!p) return nullptr;
  std::memset(p, 0, bytes);
  Track(static_cast<int64_t>(bytes));
  g_count++;
  return p;
}

void storage_free(void* p, size_t bytes) {
  if (!p) return;
  std::free(p);
  Track(-static_cast<int64_t>(bytes));
  g_count--;
}

void* scratch_alloc(size_t bytes) {
  void* p = AlignedAlloc(bytes);
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

StorageStats storage_stats() { return {g_bytes.load(), g_peak.load(), g_count.load(), g_scratch.load()}; }

void storage_reset_peak() { g_peak.store(g_bytes.load()); }

}  // namespace modulora
