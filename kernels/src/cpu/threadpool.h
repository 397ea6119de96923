// A fixed pool of worker threads for the CPU kernels.
//
// Size: MODULORA_NUM_THREADS if set, else the number of hardware threads; setNumThreads() changes
// it at run time. parallel_for splits [0, n) into at most num_threads() contiguous chunks of at
// least `grain` items and runs them on the pool and the calling thread; with one thread or little
// work it runs inline, so small ops pay no synchronisation.
//
// Several threads may call in at once (the JS thread and AsyncWorker threads such as the async
// OPTQ binding): parallel regions run one at a time, a second caller waits for the first to end,
// and set_num_threads() while another thread runs a region swaps pools safely (the old pool ends
// with its last region). A kernel's result never depends on which caller ran first.
#pragma once
#include <cstdint>
#include <functional>

namespace modulora {

int num_threads();
void set_num_threads(int n);  // n >= 1; rebuilds the pool

// fn(begin, end) is called for disjoint ranges covering [0, n). Calls from inside a worker run
// inline (no nested parallelism). A std::bad_alloc thrown by fn is rethrown to the caller after
// every chunk has ended; no other exception may escape fn.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Runs fn(t, nt) once for each t in [0, nt) with nt = min(num_threads(), max_tasks), in parallel.
// std::bad_alloc from fn is rethrown after every task has ended, as in parallel_for.
void parallel_tasks(int max_tasks, const std::function<void(int, int)>& fn);

}  // namespace modulora
