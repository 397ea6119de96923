// OPTQ/GPTQ (Frantar et al., 2022): quantize W [out, in] column by column, feeding each column's
// quantization error forward to the columns not yet quantized through the upper Cholesky factor
// of the inverse Hessian, with lazy batch updates (blocks of columns, one GEMM per block).
//
// The kernels trust their arguments: bind_optq.cc checks types, lengths and ranges first. The
// plain references are TypeScript, in kernels/test/optq.test.ts.
#pragma once
#include <cstdint>

namespace modulora {

// --- Linear algebra (f64, row-major [n, n]) -----------------------------------------------------
// In place: the lower Cholesky factor L of A (A = L Lᵀ) in the lower triangle, zeros above.
// Returns false (A partly overwritten) if a pivot is not positive or not finite.
bool cholesky_lower(double* a, int64_t n);
// hinv = the upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U), as GPTQ forms it: L = chol(H),
// H⁻¹ = L⁻ᵀ L⁻¹ (one GEMM), U = chol(H⁻¹)ᵀ. h is left untouched. false: not positive definite.
bool optq_hessian_inverse(const double* h, int64_t n, double* hinv);

// --- The quantizer --------------------------------------------------------------------------------
struct OptqParams {
  int bits;             // 2, 3, 4 or 8
  int64_t group_size;   // divides in (in itself: one group per row)
  bool symmetric;
  bool act_order;       // process columns by descending diag(H); g_idx records the groups
  bool static_groups;   // group parameters from the original W up front
  double percdamp;      // H += percdamp · mean(diag H) · I
  int64_t block_size;   // columns per lazy batch (128)
};

enum class OptqStatus { kOk, kNotPositiveDefinite };

// w: f32 [out, in]; h: f64 [in, in] = (2/n) Σ x xᵀ, overwritten (dead columns, damping).
// Outputs: codes u8 [out, in] (original column order), scales f32 [out, groups], zeros u8
// [out, groups], g_idx i32 [in] (group of each original column; plain ⌊i / g⌋ without act-order).
// The weights being updated are held in f64 (error feedback without f32 round-off drift); codes
// and scales follow the f32 min-max rule on the current weights rounded to f32. A group's
// parameters are computed when its first column is reached, from the weights as the unblocked
// algorithm would have them then (in-block updates and this block's pending lazy update included).
OptqStatus optq_quantize(const float* w, double* h, int64_t out, int64_t in, const OptqParams& p, uint8_t* codes,
                         float* scales, uint8_t* zeros, int32_t* g_idx);

}  // namespace modulora
