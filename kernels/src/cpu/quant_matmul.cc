// Fused dequantize-matmul driver (see quant_matmul.h): gemm.cc's blocking with the B block decoded
// from the packed codes instead of copied from an f32 matrix. Also the baseline (generic)
// decoder table; the AVX2 and AVX-512 ones are in quant_matmul_avx2.cc / quant_matmul_avx512.cc.
#include "cpu/quant_matmul.h"

#include <algorithm>

#include "cpu/cpu_features.h"
#include "cpu/gemm.h"
#include "cpu/quant_decode.h"
#include "cpu/storage.h"
#include "cpu/thread_scratch.h"
#include "cpu/threadpool.h"

namespace modulora {
namespace quant_detail {
namespace {
const Decoders kGenericDecoders = {"generic", AffineBlock, CodebookBlock};
}  // namespace
const Decoders* decoders_generic() { return &kGenericDecoders; }
}  // namespace quant_detail

namespace {

using gemm_detail::Kernels;
using quant_detail::BlockFn;
using quant_detail::Decoders;
using quant_detail::kTmpCols;
using quant_detail::kTmpDepth;

// The gemm micro-kernel table and the decoder table of one ISA, picked together.
struct Paths {
  const Kernels<float>* gemm;
  const Decoders* dec;
};

Paths PickPaths() {
#if defined(MODULORA_X86_DISPATCH)
  switch (active_isa()) {
    case Isa::Avx512: return {gemm_detail::sgemm_kernels_avx512(), quant_detail::decoders_avx512()};
    case Isa::Avx2: return {gemm_detail::sgemm_kernels_avx2(), quant_detail::decoders_avx2()};
    default: break;
  }
#endif
  return {gemm_detail::sgemm_kernels_generic(), quant_detail::decoders_generic()};
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t RoundUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }

// Columns of Ŵ decoded per packed block: kc x 512 floats (768 KiB at kc = 384) stays in L2/L3
// and bounds the per-thread scratch whatever the layer size. A smaller block than gemm's nc costs
// only more repacking of X (m·kc per block), which is 1/nc of the multiply-adds.
constexpr int64_t kNcMax = 512;
// Depth of a packed block: gemm's kc, but never beyond what the transposition buffer holds.
int64_t DepthBlock(const Kernels<float>& K, int64_t k) {
  return CeilDiv(k, CeilDiv(k, std::min<int64_t>(K.kc, kTmpDepth)));
}
// Rows of Ŵ per dequantize task: shallow, so the affine transposition strips are wide (each output
// row written in runs of kTmpCols·kTmpDepth/64 = 512 values).
constexpr int64_t kRowsPerTask = 64;
static_assert(kRowsPerTask <= kTmpDepth, "dequantize rows must fit the transposition buffer");
// Decoding one weight costs about as much as this many multiply-adds (for the thread heuristic).
constexpr double kDecodeMacs = 8;
// Multiply-adds that justify waking one more thread (as in gemm.cc).
constexpr double kMacsPerThread = 1 << 18;

// Packing memory: the thread's cached block (cpu/thread_scratch.h), apart from gemm's.
using Scratch = ThreadScratch<float, ScratchUser::kQuantMatmul>;

// C[m, n] = A[m, k] · B (+ C when accumulate), A row-major (lda = k), C row-major (ldc = n), and
// B (k x n) decoded block by block: B(p, c) = Ŵᵀ[p, c] (transposed) or Ŵ[p, c].
struct QuantProduct {
  BlockFn Decoders::*format;  // which decoder of the table
  const void* weight;
  bool transposed;
  int64_t m, n, k;
  const float* A;
  float* C;
  bool accumulate;
};

// Columns [j0, j1) of C on one thread. Tiles of C start at multiples of mr/nr from (0, j0) and the
// depth blocks are the same for every caller, so no element depends on the split.
void ProductBlock(const Kernels<float>& K, BlockFn decode, const QuantProduct& g, int64_t kc, int64_t j0,
                  int64_t j1) {
  const int mr = K.mr, nr = K.nr;
  const int64_t cols = j1 - j0;
  const int64_t mc = RoundUp(CeilDiv(g.m, CeilDiv(g.m, K.mc)), mr);
  const int64_t nc = RoundUp(CeilDiv(cols, CeilDiv(cols, kNcMax)), nr);
  Scratch buf(mc * kc + kc * nc + kTmpCols * kTmpDepth);
  float* packA = buf.get();
  float* packB = packA + mc * kc;
  float* tmp = packB + kc * nc;
  alignas(64) float edge[32 * 64];  // C tile for partial tiles (mr * nr <= 2048)

  for (int64_t jc = j0; jc < j1; jc += nc) {
    const int64_t nb = std::min(nc, j1 - jc);
    for (int64_t pc = 0; pc < g.k; pc += kc) {
      const int64_t kb = std::min(kc, g.k - pc);
      const float beta = pc == 0 && !g.accumulate ? 0.0f : 1.0f;
      // The B block in nr-panels (panel jr at packB + jr·kb), the last one zero-padded to nr.
      decode(g.weight, g.transposed, pc, kb, jc, nb, nr, packB, tmp);
      if (const int64_t w = nb % nr) {
        float* panel = packB + (nb - w) * kb;
        for (int64_t p = 0; p < kb; p++) std::fill(panel + p * nr + w, panel + (p + 1) * nr, 0.0f);
      }
      if (g.m * 4 <= mr) {  // a few rows: one matrix-vector product per row and panel, no padded tiles
        float y[64];        // nr <= 64
        for (int64_t jr = 0; jr < nb; jr += nr) {
          const int64_t w = std::min<int64_t>(nr, nb - jr);
          for (int64_t r = 0; r < g.m; r++) {
            K.gemv_rows(kb, w, g.A + r * g.k + pc, packB + jr * kb, nr, y);
            float* c = g.C + r * g.n + jc + jr;
            if (beta == 0.0f) std::copy(y, y + w, c);
            else for (int64_t j = 0; j < w; j++) c[j] += y[j];
          }
        }
        continue;
      }
      for (int64_t ic = 0; ic < g.m; ic += mc) {
        const int64_t mb = std::min(mc, g.m - ic);
        K.pack_a(false, mb, kb, g.A + ic * g.k + pc, g.k, 1.0f, packA);
        for (int64_t jr = 0; jr < nb; jr += nr) {
          const int64_t w = std::min<int64_t>(nr, nb - jr);
          const float* Bp = packB + jr * kb;
          for (int64_t ir = 0; ir < mb; ir += mr) {
            const int64_t h = std::min<int64_t>(mr, mb - ir);
            const float* Ap = packA + ir * kb;
            float* Cp = g.C + (ic + ir) * g.n + jc + jr;
            if (h == mr && w == nr) {
              K.micro(kb, Ap, Bp, Cp, g.n, beta);
            } else {
              K.micro(kb, Ap, Bp, edge, nr, 0.0f);
              for (int64_t r = 0; r < h; r++) {
                float* c = Cp + r * g.n;
                const float* e = edge + r * nr;
                if (beta == 0.0f) std::copy(e, e + w, c);
                else for (int64_t j = 0; j < w; j++) c[j] += e[j];
              }
            }
          }
        }
      }
    }
  }
}

void RunProduct(const QuantProduct& g) {
  if (g.m <= 0 || g.n <= 0 || g.k <= 0) return;
  const Paths paths = PickPaths();
  const Kernels<float>& K = *paths.gemm;
  const BlockFn decode = paths.dec->*g.format;
  const int64_t kc = DepthBlock(K, g.k);
  const double work = static_cast<double>(g.n) * g.k * (static_cast<double>(g.m) + kDecodeMacs);
  const int64_t tiles = CeilDiv(g.n, K.nr);
  const int threads = static_cast<int>(std::max<double>(1.0, std::min<double>({
      static_cast<double>(num_threads()), work / kMacsPerThread, static_cast<double>(tiles)})));
  parallel_tasks(threads, [&](int t, int nt) {
    const int64_t j0 = std::min(g.n, tiles * t / nt * K.nr), j1 = std::min(g.n, tiles * (t + 1) / nt * K.nr);
    if (j0 >= j1) return;
    ProductBlock(K, decode, g, kc, j0, j1);
  });
}

// Rows [r0, r1) of Ŵ (each row `in` wide) into out, row-major, in tasks of kRowsPerTask rows.
void RunDequantize(BlockFn Decoders::*format, const void* weight, int64_t in, int64_t r0, int64_t r1, float* out) {
  if (r1 <= r0) return;
  const BlockFn decode = PickPaths().dec->*format;
  const int64_t tasks = CeilDiv(r1 - r0, kRowsPerTask);
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kMacsPerThread / (kDecodeMacs * kRowsPerTask * in)));
  parallel_for(tasks, grain, [&](int64_t b0, int64_t b1) {
    Scratch tmp(kTmpCols * kTmpDepth);
    for (int64_t b = b0; b < b1; b++) {
      const int64_t p0 = r0 + b * kRowsPerTask, kb = std::min(kRowsPerTask, r1 - p0);
      decode(weight, false, p0, kb, 0, in, in, out + (p0 - r0) * in, tmp.get());
    }
  });
}

}  // namespace

void affine_matmul(const AffineQuant& w, int64_t m, const float* x, float* y, bool accumulate) {
  RunProduct({&Decoders::affine, &w, true, m, w.out, w.in, x, y, accumulate});
}

void affine_matmul_input_grad(const AffineQuant& w, int64_t m, const float* dy, float* dx, bool accumulate) {
  RunProduct({&Decoders::affine, &w, false, m, w.in, w.out, dy, dx, accumulate});
}

void affine_dequantize(const AffineQuant& w, int64_t row_start, int64_t row_end, float* out) {
  RunDequantize(&Decoders::affine, &w, w.in, row_start, row_end, out);
}

void codebook_matmul(const CodebookQuant& w, int64_t m, const float* x, float* y, bool accumulate) {
  RunProduct({&Decoders::codebook, &w, true, m, w.out, w.in, x, y, accumulate});
}

void codebook_matmul_input_grad(const CodebookQuant& w, int64_t m, const float* dy, float* dx, bool accumulate) {
  RunProduct({&Decoders::codebook, &w, false, m, w.in, w.out, dy, dx, accumulate});
}

void codebook_dequantize(const CodebookQuant& w, int64_t row_start, int64_t row_end, float* out) {
  RunDequantize(&Decoders::codebook, &w, w.in, row_start, row_end, out);
}

QuantMatmulInfo quant_matmul_info() {
  const Paths paths = PickPaths();
  const Kernels<float>& K = *paths.gemm;
  return {paths.dec->isa, K.mr, K.nr, static_cast<int>(std::min<int64_t>(K.kc, kTmpDepth)), K.mc,
          static_cast<int>(kNcMax)};
}

}  // namespace modulora
