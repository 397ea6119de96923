#include "cpu/threadpool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace modulora {
namespace {

thread_local bool tls_in_worker = false;

class Pool {
 public:
  explicit Pool(int n) : size_(n) {
    for (int i = 1; i < n; i++) workers_.emplace_back([this, i] { loop(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      generation_++;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return size_; }

  // Runs job(t, nt) for t in [0, nt), nt <= size_; thread 0 is the caller.
  // Safe to call from several threads at once (the JS thread and AsyncWorker threads): one
  // parallel region runs at a time, a second caller waits on run_mu_ until the first has ended.
  void run(int nt, const std::function<void(int, int)>& job) {
    std::lock_guard<std::mutex> serial(run_mu_);  // one parallel region at a time
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &job;
      tasks_ = nt;
      pending_.store(nt - 1, std::memory_order_relaxed);
      generation_++;
    }
    cv_.notify_all();
    tls_in_worker = true;
    job(0, nt);
    tls_in_worker = false;
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    job_ = nullptr;
  }

 private:
  void loop(int index) {
    tls_in_worker = true;
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int, int)>* job;
      int nt;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
        nt = tasks_;
      }
      if (job && index < nt) {
        (*job)(index, nt);
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard<std::mutex> lk(mu_);
          done_cv_.notify_one();
        }
      }
    }
  }

  int size_;
  std::vector<std::thread> workers_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int, int)>* job_ = nullptr;
  int tasks_ = 0;
  std::atomic<int> pending_{0};
  uint64_t generation_ = 0;
  bool stop_ = false;
};

int DefaultThreads() {
  if (const char* env = std::getenv("MODULORA_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return std::min(n, 1024);
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

// The pool is shared: a caller holds it for its whole region, so setNumThreads() from one thread
// while another thread (an AsyncWorker) runs a region swaps in a new pool and the old one ends
// when its last region has.
std::mutex g_pool_mu;
std::shared_ptr<Pool> g_pool;

std::shared_ptr<Pool> GetPool() {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (!g_pool) g_pool = std::make_shared<Pool>(DefaultThreads());
  return g_pool;
}

}  // namespace

int num_threads() { return GetPool()->size(); }

void set_num_threads(int n) {
  if (n < 1) n = 1;
  std::shared_ptr<Pool> old;  // destroyed (its workers joined) outside the lock
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (g_pool && g_pool->size() == n) return;
  old = std::move(g_pool);
  g_pool = std::make_shared<Pool>(n);
}

void parallel_tasks(int max_tasks, const std::function<void(int, int)>& fn) {
  const std::shared_ptr<Pool> held = GetPool();
  Pool& pool = *held;
  int nt = std::max(1, std::min(pool.size(), max_tasks));
  if (nt == 1 || tls_in_worker) {
    for (int t = 0; t < (tls_in_worker ? 1 : nt); t++) fn(t, tls_in_worker ? 1 : nt);
    return;
  }
  // An allocation failure in any task is rethrown here once every task has ended (an exception
  // must not unwind a worker thread, and the caller's own task must not leave the others running).
  std::atomic<bool> out_of_memory{false};
  pool.run(nt, [&](int t, int n) {
    try {
      fn(t, n);
    } catch (const std::bad_alloc&) {
      out_of_memory = true;
    }
  });
  if (out_of_memory) throw std::bad_alloc();
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t max_chunks = (n + grain - 1) / grain;
  int nt = static_cast<int>(std::min<int64_t>(max_chunks, num_threads()));
  if (nt <= 1 || tls_in_worker) {
    fn(0, n);
    return;
  }
  parallel_tasks(nt, [&](int t, int ntasks) {
    int64_t begin = n * t / ntasks, end = n * (t + 1) / ntasks;
    if (begin < end) fn(begin, end);
  });
}

}  // namespace modulora
