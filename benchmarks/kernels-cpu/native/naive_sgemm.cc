// Naive SGEMM reference for the benchmark: the textbook triple loop (one dot product per element
// of C, float accumulator), compiled for baseline x86-64 at -O2. It is what GEMM looks like before
// blocking, packing and SIMD, and shows what the optimised kernel buys.
//
// usage: naive_sgemm m n k transA transB reps  ->  prints the best time in seconds
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

static void NaiveSgemm(bool ta, bool tb, long m, long n, long k, const float* A, const float* B, float* C) {
  const long lda = ta ? m : k, ldb = tb ? k : n;
  for (long i = 0; i < m; i++) {
    for (long j = 0; j < n; j++) {
      float s = 0;
      for (long p = 0; p < k; p++) s += (ta ? A[p * lda + i] : A[i * lda + p]) * (tb ? B[j * ldb + p] : B[p * ldb + j]);
      C[i * n + j] = s;
    }
  }
}

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s m n k transA transB reps\n", argv[0]);
    return 2;
  }
  const long m = std::atol(argv[1]), n = std::atol(argv[2]), k = std::atol(argv[3]);
  const bool ta = std::atoi(argv[4]) != 0, tb = std::atoi(argv[5]) != 0;
  const int reps = std::atoi(argv[6]);
  std::vector<float> A(m * k), B(k * n), C(m * n);
  for (size_t i = 0; i < A.size(); i++) A[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f - 0.5f;
  for (size_t i = 0; i < B.size(); i++) B[i] = static_cast<float>((i * 104729) % 1000) / 1000.0f - 0.5f;
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    NaiveSgemm(ta, tb, m, n, k, A.data(), B.data(), C.data());
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt < best) best = dt;
  }
  double check = 0;
  for (float v : C) check += v;
  std::printf("%.9f %.6g\n", best, check);
  return 0;
}
