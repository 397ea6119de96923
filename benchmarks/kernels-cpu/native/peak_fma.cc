// Peak FMA throughput of this machine, for the "% of peak" column of the SGEMM benchmark.
//
// Each thread runs independent chains of fused multiply-adds on vector registers: 24 zmm
// accumulators (AVX-512) or 12 ymm (AVX2), enough to cover FMA latency x the number of FMA pipes,
// with no memory traffic. GFLOP/s = threads x chains x lanes x 2 x iterations / time. Compiled for
// baseline x86-64; the ISA-specific loops are entered only if CPUID reports the ISA.
//
// usage: peak_fma threads seconds  ->  prints `<isa> <best GFLOP/s over 5 trials>`
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr long kInner = 1 << 20;

__attribute__((target("avx512f,fma"))) float ChainsAvx512(long iters) {
  __m512 acc[24];
  for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, acc[i]);
  float out[16];
  _mm512_storeu_ps(out, s);
  return out[0];
}

__attribute__((target("avx2,fma"))) float ChainsAvx2(long iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0.3;
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!avx512 && !avx2) {
    std::printf("none 0\n");
    return 0;
  }
  const double flopsPerIter = avx512 ? 24.0 * 16 * 2 : 12.0 * 8 * 2;
  auto run = [&](long iters) { return avx512 ? ChainsAvx512(iters) : ChainsAvx2(iters); };
  // Calibrate the iteration count to about `seconds` per trial on one thread.
  long iters = kInner;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile float sink = run(iters);
    (void)sink;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > seconds / 4) {
      iters = static_cast<long>(iters * seconds / dt);
      break;
    }
    iters *= 4;
  }
  double best = 0;
  for (int trial = 0; trial < 5; trial++) {
    std::atomic<int> ready{0};
    std::vector<double> secs(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++) {
      pool.emplace_back([&, t] {
        ready++;
        while (ready.load() < threads) {
        }
        const auto t0 = std::chrono::steady_clock::now();
        volatile float sink = run(iters);
        (void)sink;
        secs[t] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      });
    }
    for (auto& th : pool) th.join();
    double slowest = 0;
    for (double s : secs) slowest = s > slowest ? s : slowest;
    const double gflops = threads * flopsPerIter * static_cast<double>(iters) / slowest / 1e9;
    if (gflops > best) best = gflops;
  }
  std::printf("%s %.2f\n", avx512 ? "avx512" : "avx2", best);
  return 0;
}
