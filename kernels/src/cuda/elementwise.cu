// Element-wise kernels of the CUDA backend: binary ops with broadcasting (and the scaled add of
// addInPlace), unary ops and their fused gradient, the affine map (scale, scaleInPlace), and the
// creation kernels fill, arange and the Philox random fill.
//
// Every kernel is a grid-stride loop over the row-major flat index of the (coalesced) iteration
// space, reading and writing through strides (Strided<K>, elementwise.h); 64-bit element offsets.
// Float dtypes compute in Acc<T> (f32 for f32/bf16, f64 for f64) and round once on store. The
// math of each op is the CPU's (kernels/src/cpu/elementwise.cc), expression for expression.
#include <cmath>
#include <string>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/elementwise.h"

namespace modulora {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// f32/f64 overloads of the math library (the f32 ones are the IEEE-accurate CUDA functions:
// no fast-math intrinsics).
__device__ __forceinline__ float Exp(float x) { return expf(x); }
__device__ __forceinline__ double Exp(double x) { return exp(x); }
__device__ __forceinline__ float Log(float x) { return logf(x); }
__device__ __forceinline__ double Log(double x) { return log(x); }
__device__ __forceinline__ float Sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double Sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float Tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double Tanh(double x) { return tanh(x); }
__device__ __forceinline__ float Pow(float x, float p) { return powf(x, p); }
__device__ __forceinline__ double Pow(double x, double p) { return pow(x, p); }
__device__ __forceinline__ float Fabs(float x) { return fabsf(x); }
__device__ __forceinline__ double Fabs(double x) { return fabs(x); }

// NaN-propagating maximum/minimum (the CPU's nan_max / nan_min).
template <class A> __device__ __forceinline__ A NanMax(A a, A b) { return (a > b || a != a) ? a : b; }
template <class A> __device__ __forceinline__ A NanMin(A a, A b) { return (a < b || a != a) ? a : b; }

// --- binary (no __restrict__: addInPlace writes its first input, element for element) ----------

template <class A>
__device__ __forceinline__ A BinaryOp(int op, A a, A b, A alpha) {
  switch (static_cast<EwBinary>(op)) {
    case EwBinary::Add: return a + b;
    case EwBinary::Sub: return a - b;
    case EwBinary::Mul: return a * b;
    case EwBinary::Div: return a / b;
    case EwBinary::Maximum: return NanMax(a, b);
    case EwBinary::Minimum: return NanMin(a, b);
    case EwBinary::Eq: return a == b ? A(1) : A(0);
    case EwBinary::Gt: return a > b ? A(1) : A(0);
    case EwBinary::Lt: return a < b ? A(1) : A(0);
    case EwBinary::Pow: return Pow(a, b);
    case EwBinary::AddScaled: return AddRn(a, alpha == A(1) ? b : MulRn(alpha, b));
  }
  return a;
}

template <class T, class I>
__global__ void BinaryKernel(int op, Strided<3> d, const T* a, const T* b, T* out,
                             Acc<T> alpha) {
  for (int64_t i = GlobalThread(); i < d.numel; i += GridThreads()) {
    int64_t off[3];
    StridedOffsets<I>(d, i, off);
    st(out + off[2], BinaryOp<Acc<T>>(op, ld(a + off[0]), ld(b + off[1]), alpha));
  }
}

// Both inputs and the output contiguous over the same shape: no index arithmetic.
template <class T>
__global__ void BinaryDenseKernel(int op, int64_t n, const T* a, const T* b, T* out,
                                  Acc<T> alpha) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) st(out + i, BinaryOp<Acc<T>>(op, ld(a + i), ld(b + i), alpha));
}

// --- unary ------------------------------------------------------------------------------------

template <class A> __device__ __forceinline__ A Sigmoid(A x) {
  if (x >= A(0)) return A(1) / (A(1) + Exp(-x));
  const A e = Exp(x);
  return e / (A(1) + e);
}
template <class A> __device__ __forceinline__ A SignOf(A x) { return x > A(0) ? A(1) : (x < A(0) ? A(-1) : x); }

template <class A>
__device__ __forceinline__ A UnaryF(int op, A x, A p) {
  switch (static_cast<EwUnary>(op)) {
    case EwUnary::Neg: return -x;
    case EwUnary::Exp: return Exp(x);
    case EwUnary::Log: return Log(x);
    case EwUnary::Sqrt: return Sqrt(x);
    case EwUnary::Rsqrt: return A(1) / Sqrt(x);
    case EwUnary::Abs: return Fabs(x);
    case EwUnary::Relu: return x < A(0) ? A(0) : x;  // NaN stays NaN
    case EwUnary::Sigmoid: return Sigmoid(x);
    case EwUnary::Tanh: return Tanh(x);
    case EwUnary::Silu: return x * Sigmoid(x);
    case EwUnary::Square: return x * x;
    case EwUnary::Reciprocal: return A(1) / x;
    case EwUnary::Sign: return SignOf(x);
    case EwUnary::PowScalar: return p == A(2) ? x * x : (p == A(1) ? x : Pow(x, p));
  }
  return x;
}

// dy · f'(x) given y = f(x), written as the CPU writes it (left-to-right products).
template <class A>
__device__ __forceinline__ A UnaryG(int op, A x, A y, A dy, A p) {
  switch (static_cast<EwUnary>(op)) {
    case EwUnary::Neg: return -dy;
    case EwUnary::Exp: return dy * y;
    case EwUnary::Log: return dy / x;
    case EwUnary::Sqrt: return dy * A(0.5) / y;
    case EwUnary::Rsqrt: return dy * A(-0.5) * y * y * y;
    case EwUnary::Abs: return x > A(0) ? dy : (x < A(0) ? -dy : A(0));
    case EwUnary::Relu: return x > A(0) ? dy : A(0);
    case EwUnary::Sigmoid: return dy * y * (A(1) - y);
    case EwUnary::Tanh: return dy * (A(1) - y * y);
    case EwUnary::Silu: {
      const A s = Sigmoid(x);
      return dy * (s + x * s * (A(1) - s));
    }
    case EwUnary::Square: return dy * A(2) * x;
    case EwUnary::Reciprocal: return -dy * y * y;
    case EwUnary::Sign: return A(0);
    case EwUnary::PowScalar: return p == A(0) ? A(0) : dy * p * Pow(x, p - A(1));
  }
  return dy;
}

template <class T, class I>
__global__ void UnaryKernel(int op, Strided<2> d, const T* __restrict__ x, T* __restrict__ y, Acc<T> p) {
  for (int64_t i = GlobalThread(); i < d.numel; i += GridThreads()) {
    int64_t off[2];
    StridedOffsets<I>(d, i, off);
    st(y + off[1], UnaryF<Acc<T>>(op, ld(x + off[0]), p));
  }
}

template <class T, class I>
__global__ void UnaryGradKernel(int op, Strided<4> d, const T* __restrict__ x, const T* __restrict__ y,
                                const T* __restrict__ dy, T* __restrict__ dx, Acc<T> p) {
  for (int64_t i = GlobalThread(); i < d.numel; i += GridThreads()) {
    int64_t off[4];
    StridedOffsets<I>(d, i, off);
    st(dx + off[3], UnaryG<Acc<T>>(op, ld(x + off[0]), ld(y + off[1]), ld(dy + off[2]), p));
  }
}

// --- affine -----------------------------------------------------------------------------------

// out may be x itself (scaleInPlace): each element is read before it is written, by one thread.
template <class T, class I>
__global__ void AffineKernel(Strided<2> d, const T* x, T* out, Acc<T> alpha, Acc<T> beta) {
  for (int64_t i = GlobalThread(); i < d.numel; i += GridThreads()) {
    int64_t off[2];
    StridedOffsets<I>(d, i, off);
    st(out + off[1], AddRn(MulRn(alpha, ld(x + off[0])), beta));
  }
}

// --- fill / arange ----------------------------------------------------------------------------

// The value of `v` stored as E (floats round to nearest even; integers truncate: checked before).
template <class E> __device__ __forceinline__ E FromDouble(double v) { return static_cast<E>(v); }
template <> __device__ __forceinline__ bf16 FromDouble<bf16>(double v) { return __double2bfloat16(v); }
template <> __device__ __forceinline__ f16 FromDouble<f16>(double v) { return __double2half(v); }
// JS typed-array stores of integers wrap modulo 2^bits (arange past the range of the dtype).
template <> __device__ __forceinline__ int32_t FromDouble<int32_t>(double v) {
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(static_cast<int64_t>(v))));
}
template <> __device__ __forceinline__ uint32_t FromDouble<uint32_t>(double v) {
  return static_cast<uint32_t>(static_cast<uint64_t>(static_cast<int64_t>(v)));
}
template <> __device__ __forceinline__ int8_t FromDouble<int8_t>(double v) {
  return static_cast<int8_t>(static_cast<uint8_t>(static_cast<uint64_t>(static_cast<int64_t>(v))));
}
template <> __device__ __forceinline__ uint8_t FromDouble<uint8_t>(double v) {
  return static_cast<uint8_t>(static_cast<uint64_t>(static_cast<int64_t>(v)));
}

template <class E, class I>
__global__ void FillKernel(Strided<1> d, E* dst, E v) {
  for (int64_t i = GlobalThread(); i < d.numel; i += GridThreads()) {
    int64_t off[1];
    StridedOffsets<I>(d, i, off);
    dst[off[0]] = v;
  }
}

template <class E>
__global__ void ArangeKernel(int64_t n, E* dst, double start, double step) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    dst[i] = FromDouble<E>(__dadd_rn(start, __dmul_rn(static_cast<double>(i), step)));
  }
}

// --- random -----------------------------------------------------------------------------------

// One thread per Philox block of 4 elements: block j (element 4j .. 4j+3) uses the counter
// (offset + j, 0, stream, 0) split into two u32 words, exactly as random.ts. The word → float maps
// and Box–Muller are computed in f64 like the TypeScript (products and sums rounded separately),
// the sample is stored in T, and the affine map reads the stored value back (as the TS loop does).
template <class T>
__global__ void RandomKernel(int64_t n, T* dst, bool normal, uint32_t k0, uint32_t k1, uint64_t offset, double a,
                             double b, bool affine) {
  const int64_t blocks = (n + 3) / 4;
  const double two_pi = 2.0 * 3.141592653589793;  // 2 * Math.PI, exact
  for (int64_t j = GlobalThread(); j < blocks; j += GridThreads()) {
    const uint64_t ctr = offset + static_cast<uint64_t>(j);
    uint32_t w[4];
    philox4x32(static_cast<uint32_t>(ctr), static_cast<uint32_t>(ctr >> 32), normal ? 1u : 0u, 0u, k0, k1, w);
    double v[4];
    if (!normal) {
#pragma unroll
      for (int k = 0; k < 4; k++) v[k] = static_cast<double>(w[k] >> 8) / 16777216.0;  // exact
    } else {
#pragma unroll
      for (int k = 0; k < 4; k += 2) {
        const double u1 = __ddiv_rn(static_cast<double>((w[k] >> 8) + 1u), 16777217.0);  // (0, 1]
        const double u2 = static_cast<double>(w[k + 1] >> 8) / 16777216.0;
        const double r = sqrt(__dmul_rn(-2.0, log(u1)));
        const double t = __dmul_rn(two_pi, u2);
        v[k] = __dmul_rn(r, cos(t));
        v[k + 1] = __dmul_rn(r, sin(t));
      }
    }
    const int64_t base = 4 * j;
#pragma unroll
    for (int k = 0; k < 4; k++) {
      if (base + k >= n) break;
      double s = static_cast<double>(static_cast<T>(v[k]));  // the stored sample
      if (affine) s = normal ? __dadd_rn(a, __dmul_rn(b, s)) : __dadd_rn(a, __dmul_rn(__dsub_rn(b, a), s));
      dst[base + k] = static_cast<T>(s);
    }
  }
}

// --- dispatch helpers -------------------------------------------------------------------------

// Runs `body` with E bound to the storage type of any of the 8 dtype codes.
template <class Fn>
void DispatchAny(int code, const char* op, Fn&& body) {
  switch (code) {
    case kF32: return body(float{});
    case kF64: return body(double{});
    case kBF16: return body(bf16{});
    case kF16: return body(f16{});
    case kI32: return body(int32_t{});
    case kI8: return body(int8_t{});
    case kU8: return body(uint8_t{});
    case kU32: return body(uint32_t{});
    default: throw CudaError(std::string(op) + ": unknown dtype code " + std::to_string(code));
  }
}

void CheckOp(int op, int count, const char* what) {
  if (op < 0 || op >= count) throw CudaError(std::string(what) + ": unknown op code " + std::to_string(op));
}

}  // namespace

void EwBinaryLaunch(Context& c, int op, int dtype, const Dims& shape, const void* a, const Dims& a_strides,
                    const void* b, const Dims& b_strides, void* out, const Dims& out_strides, double alpha) {
  CheckOp(op, kEwNumBinary, "binary");
  const Strided<3> d = MakeStrided<3>(shape, {&a_strides, &b_strides, &out_strides}, "binary");
  if (d.numel == 0) return;
  const unsigned grid = Blocks(d.numel, kThreads);
  const bool dense = d.rank == 1 && d.stride[0][0] == 1 && d.stride[1][0] == 1 && d.stride[2][0] == 1;
  MODULORA_DISPATCH_FLOAT(dtype, "binary", T, {
    const auto* pa = static_cast<const T*>(a);
    const auto* pb = static_cast<const T*>(b);
    auto* po = static_cast<T*>(out);
    const Acc<T> al = static_cast<Acc<T>>(alpha);
    if (dense) {
      BinaryDenseKernel<T><<<grid, kThreads, 0, c.stream()>>>(op, d.numel, pa, pb, po, al);
    } else if (Small(d.numel)) {
      BinaryKernel<T, uint32_t><<<grid, kThreads, 0, c.stream()>>>(op, d, pa, pb, po, al);
    } else {
      BinaryKernel<T, int64_t><<<grid, kThreads, 0, c.stream()>>>(op, d, pa, pb, po, al);
    }
  });
}

void EwUnaryLaunch(Context& c, int op, int dtype, const Dims& shape, const void* x, const Dims& x_strides, void* y,
                   double param) {
  CheckOp(op, kEwNumUnary, "unary");
  Dims ys(shape.size());
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1, s = 1; i >= 0; i--) {
    ys[i] = s;
    s *= shape[i];
  }
  const Strided<2> d = MakeStrided<2>(shape, {&x_strides, &ys}, "unary");
  if (d.numel == 0) return;
  const unsigned grid = Blocks(d.numel, kThreads);
  MODULORA_DISPATCH_FLOAT(dtype, "unary", T, {
    const Acc<T> p = static_cast<Acc<T>>(param);
    if (Small(d.numel)) {
      UnaryKernel<T, uint32_t><<<grid, kThreads, 0, c.stream()>>>(op, d, static_cast<const T*>(x), static_cast<T*>(y), p);
    } else {
      UnaryKernel<T, int64_t><<<grid, kThreads, 0, c.stream()>>>(op, d, static_cast<const T*>(x), static_cast<T*>(y), p);
    }
  });
}

void EwUnaryGradLaunch(Context& c, int op, int dtype, const Dims& shape, const void* x, const Dims& x_strides,
                       const void* y, const Dims& y_strides, const void* dy, const Dims& dy_strides, void* dx,
                       double param) {
  CheckOp(op, kEwNumUnary, "unaryGrad");
  Dims ds(shape.size());
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1, s = 1; i >= 0; i--) {
    ds[i] = s;
    s *= shape[i];
  }
  const Strided<4> d = MakeStrided<4>(shape, {&x_strides, &y_strides, &dy_strides, &ds}, "unaryGrad");
  if (d.numel == 0) return;
  const unsigned grid = Blocks(d.numel, kThreads);
  MODULORA_DISPATCH_FLOAT(dtype, "unaryGrad", T, {
    const Acc<T> p = static_cast<Acc<T>>(param);
    const auto* px = static_cast<const T*>(x);
    const auto* py = static_cast<const T*>(y);
    const auto* pdy = static_cast<const T*>(dy);
    auto* pdx = static_cast<T*>(dx);
    if (Small(d.numel)) {
      UnaryGradKernel<T, uint32_t><<<grid, kThreads, 0, c.stream()>>>(op, d, px, py, pdy, pdx, p);
    } else {
      UnaryGradKernel<T, int64_t><<<grid, kThreads, 0, c.stream()>>>(op, d, px, py, pdy, pdx, p);
    }
  });
}

void EwAffineLaunch(Context& c, int dtype, const Dims& shape, const void* x, const Dims& x_strides, void* out,
                    const Dims& out_strides, double alpha, double beta) {
  const Strided<2> d = MakeStrided<2>(shape, {&x_strides, &out_strides}, "affine");
  if (d.numel == 0) return;
  const unsigned grid = Blocks(d.numel, kThreads);
  MODULORA_DISPATCH_FLOAT(dtype, "affine", T, {
    const Acc<T> al = static_cast<Acc<T>>(alpha), be = static_cast<Acc<T>>(beta);
    if (Small(d.numel)) {
      AffineKernel<T, uint32_t><<<grid, kThreads, 0, c.stream()>>>(d, static_cast<const T*>(x), static_cast<T*>(out), al, be);
    } else {
      AffineKernel<T, int64_t><<<grid, kThreads, 0, c.stream()>>>(d, static_cast<const T*>(x), static_cast<T*>(out), al, be);
    }
  });
}

namespace {
// The host-side value of a fill (the same conversions as FromDouble, done once on the host for the
// types the host compiler handles; bf16/f16 go through the device conversion in FillValueKernel).
template <class E>
__global__ void FillValueKernel(Strided<1> d, E* dst, double v, bool via_f32) {
  const E e = via_f32 ? FromDouble<E>(static_cast<double>(static_cast<float>(v))) : FromDouble<E>(v);
  for (int64_t i = GlobalThread(); i < d.numel; i += GridThreads()) {
    int64_t off[1];
    StridedOffsets<int64_t>(d, i, off);
    dst[off[0]] = e;
  }
}
}  // namespace

void EwFillLaunch(Context& c, int dtype, const Dims& shape, void* dst, const Dims& dst_strides, double value,
                  bool via_f32) {
  const Strided<1> d = MakeStrided<1>(shape, {&dst_strides}, "fill");
  if (d.numel == 0) return;
  const unsigned grid = Blocks(d.numel, kThreads);
  DispatchAny(dtype, "fill", [&](auto tag) {
    using E = decltype(tag);
    if constexpr (std::is_same_v<E, bf16> || std::is_same_v<E, f16>) {
      // bf16(f32(v)) for via_f32: __float2bfloat16_rn of the f32 value, i.e. cvt<bf16>.
      FillValueKernel<E><<<grid, kThreads, 0, c.stream()>>>(d, static_cast<E*>(dst), value, via_f32);
    } else {
      const E e = via_f32 ? static_cast<E>(static_cast<float>(value)) : static_cast<E>(value);
      if (Small(d.numel)) {
        FillKernel<E, uint32_t><<<grid, kThreads, 0, c.stream()>>>(d, static_cast<E*>(dst), e);
      } else {
        FillKernel<E, int64_t><<<grid, kThreads, 0, c.stream()>>>(d, static_cast<E*>(dst), e);
      }
    }
  });
}

void EwArangeLaunch(Context& c, int dtype, int64_t n, void* dst, double start, double step) {
  if (n <= 0) return;
  const unsigned grid = Blocks(n, kThreads);
  DispatchAny(dtype, "arange", [&](auto tag) {
    using E = decltype(tag);
    ArangeKernel<E><<<grid, kThreads, 0, c.stream()>>>(n, static_cast<E*>(dst), start, step);
  });
}

void EwRandomLaunch(Context& c, int dtype, int64_t n, void* dst, bool normal, uint32_t k0, uint32_t k1,
                    uint64_t offset, double a, double b) {
  if (n <= 0) return;
  const bool affine = a != 0 || b != 1;  // the TS skips the map for the default a = 0, b = 1
  const unsigned grid = Blocks((n + 3) / 4, kThreads);
  switch (dtype) {
    case kF32:
      RandomKernel<float><<<grid, kThreads, 0, c.stream()>>>(n, static_cast<float*>(dst), normal, k0, k1, offset, a, b, affine);
      break;
    case kF64:
      RandomKernel<double><<<grid, kThreads, 0, c.stream()>>>(n, static_cast<double*>(dst), normal, k0, k1, offset, a, b, affine);
      break;
    default:
      throw CudaError(std::string("random: dtype ") + CodeName(dtype) + " is not drawn on cuda (f32 and f64 are; draw f32 and cast)");
  }
}

}  // namespace cuda
}  // namespace modulora
