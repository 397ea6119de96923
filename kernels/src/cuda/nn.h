// Launchers of the CUDA kernels of the fused LLaMA-block ops (nn.cu), the loss ops (loss.cu) and
// the optimizer and gradient-norm ops (optim.cu). Plain C++ (bind_nn.cc is compiled by the C++
// compiler): device pointers, sizes and dtype codes in, work queued on the device's stream out.
//
// The math, accumulation types and edge cases follow the CPU kernels (src/cpu/nn.cc, loss.cc):
// f32 computes in f32 (with the CPU's f64 statistics where it keeps them), f64 in f64, bf16 loads
// as f32 and rounds once to bf16 on store. Statistics kept for the backward (RMSNorm's rstd,
// cross-entropy's lse) and losses are Acc<T>: f32 for f32 and bf16, f64 for f64. Every launcher
// accepts empty sizes (it queues nothing then) and indexes with 64-bit integers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda/runtime.h"

namespace modulora {
namespace cuda {

// --- nn.cu ---------------------------------------------------------------------------------------

// x, y [rows, d] contiguous; w [d]; rstd [rows] (Acc<T>) = 1 / sqrt(mean(x²) + eps), the mean of
// squares accumulated in f64 (as the CPU); y = w * (x * rstd) in Acc<T>.
void RmsnormForward(Context& c, int code, const void* x, const void* w, void* y, void* rstd, int64_t rows, int64_t d,
                    double eps);
// dx = rs*w*dy - x * rs³/d * Σ w*dy*x (in f64, as the CPU); dw (when not null) = Σ_rows dy*x*rs,
// summed deterministically: per-chunk partial sums in f64, then the chunks added in order.
// rows == 0 with dw: dw is zeroed.
void RmsnormBackward(Context& c, int code, const void* x, const void* w, const void* rstd, const void* dy, void* dx,
                     void* dw, int64_t rows, int64_t d);

// x a view of [B, T, H, D] with strides (xs[0], xs[1], xs[2], 1); out contiguous [B, T, H, D].
// pos: T positions, or B*T when `batched`. inv_freq: D/2 f64 values in host memory (copied to the
// device here). Angles and cos/sin in f64, rounded once to Acc<T>.
void Rope(Context& c, int code, const void* x, const int64_t xs[3], int64_t B, int64_t Tn, int64_t H, int64_t D,
          const int32_t* pos, bool batched, const std::vector<double>& inv_freq, bool inverse, void* out);

void SwigluForward(Context& c, int code, const void* gate, const void* up, void* out, int64_t n);
void SwigluBackward(Context& c, int code, const void* gate, const void* up, const void* dy, void* dgate, void* dup,
                    int64_t n);

// The CPU's dropout_kernel: element i keeps iff (w >> 8) >= threshold, w = word i%4 of
// philox4x32((c lo, c hi, kPhiloxStreamDropout, 0), (k0, k1)), c = offset + i/4.
void Dropout(Context& c, int code, const void* x, void* out, int64_t n, double p, uint32_t k0, uint32_t k1,
             uint64_t offset);

// --- optim.cu ------------------------------------------------------------------------------------

struct AdamwParams {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // t >= 1
};
// One tensor of a multi-tensor AdamW step (device addresses; all contiguous, n elements).
struct AdamwEntry {
  void* param;
  const void* grad;
  void* m;
  void* v;
  int64_t n;
};
// In place, f32 or f64 (code), the CPU's adamw_step arithmetic without contraction (each product
// and sum rounded as on the CPU). One launch over all entries (a device table of the entries;
// blocks mapped to (entry, chunk)); a single entry is launched without a table.
void AdamwStep(Context& c, int code, const std::vector<AdamwEntry>& entries, const AdamwParams& h);

// One float tensor (f32, bf16 or f64 by code) of the fused gradient norm.
struct NormEntry {
  const void* data;
  int64_t n;
  int code;
};
// out (device, 2 f64) = [Σ x², Σ (x − x)] over all entries, in f64: per-block partials, then one
// block adds them in a fixed order (deterministic). With no elements out = [0, 0].
void GradNormStats(Context& c, const std::vector<NormEntry>& entries, double* out);

// --- loss.cu -------------------------------------------------------------------------------------

// Leading dims of a row layout (the CPU's kMaxRank).
constexpr int kMaxRankRows = 8;

// Where the rows of a [..., V] tensor start (leading dims' shape and strides, in elements).
struct RowSpec {
  int rank = 0;
  int64_t shape[kMaxRankRows] = {};
  int64_t stride[kMaxRankRows] = {};
};

enum Reduction : int { kReduceNone = 0, kReduceSum = 1, kReduceMean = 2 };

// Per row: lse (Acc<T>) and loss = lse − x[target] (ignored rows: 0, 0), online max/sum-exp over
// the vocabulary in Acc<T>, one block per row. kReduceNone: `out` holds the per-row losses [n];
// otherwise `out` is one Acc<T>: the sum in f64 (deterministic), or the mean over the rows not
// ignored (0 when none is). A target outside [0, v) that is not ignore_index throws CudaError
// "target <t> at row <r> is outside [0, <v>) and is not ignoreIndex (<i>)" (first such row; this
// reads a flag back, so it waits for the stream).
void CrossEntropyForward(Context& c, int code, const void* logits, const RowSpec& rows, int64_t n, int64_t v,
                         const int32_t* targets, int32_t ignore, int reduction, void* lse, void* out);
// dlogits [n, v] contiguous = (exp(x − lse) − onehot) · g_r with g_r = g[r * g_stride] (Acc<T>),
// divided by the number of rows not ignored when `mean`; zero rows for ignored targets.
void CrossEntropyBackward(Context& c, int code, const void* logits, const RowSpec& rows, int64_t n, int64_t v,
                          const int32_t* targets, int32_t ignore, const void* lse, const void* g, int64_t g_stride,
                          bool mean, void* dlogits);

// softmax / logSoftmax along the middle axis of contiguous [outer, n, inner].
void SoftmaxForward(Context& c, int code, const void* x, int64_t outer, int64_t n, int64_t inner, bool log, void* y);
void SoftmaxBackward(Context& c, int code, const void* y, const void* dy, int64_t outer, int64_t n, int64_t inner,
                     bool log, void* dx);

// out [n, d] contiguous = weight[ids[i], :] for weight [rows, d] with strides (ws0, ws1) and
// elements of elem_size bytes (1, 2, 4 or 8). An id outside [0, rows) throws CudaError
// "id <id> at flat position <i> of ids is outside [0, <rows>) (weight has <rows> rows)" (first such
// position; this reads a flag back).
void Embedding(Context& c, int elem_size, const void* weight, int64_t rows, int64_t d, int64_t ws0, int64_t ws1,
               const int32_t* ids, int64_t n, void* out);

}  // namespace cuda
}  // namespace modulora
