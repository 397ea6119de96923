// Native tensor storage: 64-byte aligned, zero-filled host allocations with live counters.
#pragma once
#include <cstddef>
#include <cstdint>

namespace modulora {

struct StorageStats {
  int64_t bytes;       // bytes currently allocated by the addon (tensor storage + scratch)
  int64_t peak_bytes;  // high-water mark of `bytes` since the last reset
  int64_t count;       // live allocations
  int64_t scratch_bytes;  // of `bytes`, the part held as kernel scratch
  int64_t cached_bytes;   // freed storage kept by the caching allocator for reuse (not in `bytes`)
};

// Returns nullptr on failure. `zero_fill` false leaves the contents unspecified (a recycled block
// keeps its old bytes).
void* storage_alloc(size_t bytes, bool zero_fill = true);
void storage_free(void* p, size_t bytes);
StorageStats storage_stats();
void storage_reset_peak();
// Returns every cached block to the system; returns the bytes released.
int64_t storage_trim_cache();
// Kernel scratch: counted like storage (and tagged), so `memory()` shows it.
void* scratch_alloc(size_t bytes);
void scratch_free(void* p, size_t bytes);

}  // namespace modulora
