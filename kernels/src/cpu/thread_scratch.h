// Per-thread packing memory of the blocked products (gemm.cc, quant_matmul.cc). Each thread keeps
// the largest block it has needed (counted as scratch by the storage stats, freed when the thread
// exits): allocating per call would hand back fresh pages, and their page faults cost 10-20% of a
// 512^3 product.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>

#include "cpu/storage.h"

namespace modulora {

// One cached block; acquire() returns null while it is in use (a nested request then allocates).
class ThreadScratchCache {
 public:
  ThreadScratchCache() = default;
  ThreadScratchCache(const ThreadScratchCache&) = delete;
  ThreadScratchCache& operator=(const ThreadScratchCache&) = delete;
  ~ThreadScratchCache() { scratch_free(p_, bytes_); }
  void* acquire(size_t bytes) {
    if (busy_) return nullptr;
    if (bytes > bytes_) {
      scratch_free(p_, bytes_);
      bytes_ = 0;
      p_ = scratch_alloc(bytes);
      if (!p_) return nullptr;
      bytes_ = bytes;
    }
    busy_ = true;
    return p_;
  }
  void release() { busy_ = false; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
  bool busy_ = false;
};

// Who holds a cache: each user has its own per thread, so a product that runs inside another's
// task (the quantized product calls into gemm's micro-kernels) never finds its block taken.
enum class ScratchUser { kGemm, kQuantMatmul };

template <ScratchUser U>
ThreadScratchCache& thread_scratch_cache() {
  thread_local ThreadScratchCache cache;
  return cache;
}

// `count` elements of T for the lifetime of this object: the thread's cached block when free,
// else a fresh allocation.
template <class T, ScratchUser U>
class ThreadScratch {
 public:
  explicit ThreadScratch(int64_t count) : bytes_(static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(T)) {
    p_ = static_cast<T*>(thread_scratch_cache<U>().acquire(bytes_));
    cached_ = p_ != nullptr;
    if (!cached_) p_ = static_cast<T*>(scratch_alloc(bytes_));
    if (!p_) throw std::bad_alloc();
  }
  ~ThreadScratch() {
    if (cached_) {
      thread_scratch_cache<U>().release();
    } else {
      scratch_free(p_, bytes_);
    }
  }
  ThreadScratch(const ThreadScratch&) = delete;
  ThreadScratch& operator=(const ThreadScratch&) = delete;
  T* get() const { return p_; }

 private:
  size_t bytes_;
  T* p_;
  bool cached_;
};

}  // namespace modulora
