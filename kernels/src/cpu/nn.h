// Fused kernels of a LLaMA block (besides attention and the loss), forward and backward side by
// side: RMSNorm, rotary embedding (rotate-half convention), SwiGLU, counter-based dropout, and the
// fused AdamW step. CPU, portable C++, instantiated for float and double.
//
// The kernels trust their arguments: bind_nn.cc checks types and lengths first. Arrays are
// contiguous row-major unless a stride argument says otherwise. The plain references are the TS
// code in kernels/test/nn.test.ts (raw kernels) and packages/tensor/test/nn.test.ts (ops).
#pragma once
#include <cstdint>

namespace modulora {

// --- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w over rows of length d ---------------------------
// x, y [rows, d]; w [d]; rstd [rows] receives 1 / sqrt(mean(x^2) + eps). The mean of squares is
// accumulated in double for both types (HF computes it in f32 or better); y = w * (x * rstd).
template <class T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t d, double eps);

// Backward from the saved x and rstd: dx = rstd * (w*dy - x * rstd^2 * mean(w*dy*x)) and, when
// dw is not null, dw[j] = sum_r dy[r,j] * x[r,j] * rstd[r]. dw is summed in fixed chunks of rows
// (partials in kernel scratch, then added in chunk order), so it is race-free and bit-identical
// for any number of threads. Returns false (nothing written) if that scratch cannot be allocated.
template <class T>
bool rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, T* dx, T* dw, int64_t rows, int64_t d);

// --- Rotary embedding (LLaMA "rotate half") -----------------------------------------------------
// x is a view of [B, T, H, D] with strides (xs[0], xs[1], xs[2], 1); out is contiguous [B, T, H, D].
// pos holds T positions shared by the batch, or B*T when pos_batched. inv_freq holds D/2 inverse
// frequencies. For i < D/2, a = pos * inv_freq[i] (in double), c = cos a, s = sin a rounded to T:
//   out[i] = x[i]*c - x[i+D/2]*s,  out[i+D/2] = x[i+D/2]*c + x[i]*s.
// inverse rotates by -a instead (the backward: dx = R(-a) dy).
template <class T>
void rope_kernel(const T* x, const int64_t xs[3], int64_t B, int64_t Tn, int64_t H, int64_t D, const int32_t* pos,
                 bool pos_batched, const double* inv_freq, bool inverse, T* out);

// --- SwiGLU: out = silu(gate) * up --------------------------------------------------------------
template <class T>
void swiglu_forward(const T* gate, const T* up, T* out, int64_t n);
// dgate = dy * up * s * (1 + g * (1 - s)), dup = dy * g * s with s = sigmoid(g), in one pass.
template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dy, T* dgate, T* dup, int64_t n);

// --- Dropout -------------------------------------------------------------------------------------
// out[i] = keep(i) ? x[i] / (1 - p) : 0. Element i keeps iff (w >> 8) / 2^24 >= p, w being word
// i mod 4 of philox4x32(counter = (c mod 2^32, c / 2^32, kPhiloxStreamDropout, 0), key(seed)),
// c = offset + i / 4. The mask is a pure function of (seed, offset, i): the backward calls this
// again on dy, and any backend reproduces it. One call uses ceil(n / 4) counters.
template <class T>
void dropout_kernel(const T* x, T* out, int64_t n, double p, uint32_t k0, uint32_t k1, uint64_t offset);

// --- AdamW step (in place) ----------------------------------------------------------------------
// p -= lr*wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). Scalars are formed in double, the
// per-element arithmetic runs in T (as PyTorch's AdamW does).
struct AdamwHyper {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // t >= 1
};
template <class T>
void adamw_step(T* param, const T* grad, T* m, T* v, int64_t n, const AdamwHyper& h);

}  // namespace modulora
