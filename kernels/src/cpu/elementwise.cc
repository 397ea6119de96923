// Element-wise kernels: binary with broadcasting, unary and its gradient, affine, fill,
// countNonFinite. Each op is a small functor; the loops are templated on it so the compiler can
// vectorise the cheap ones. The reference for all of them is the plain TS code in
// test/elementwise.test.ts.
#include "cpu/elementwise.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "cpu/threadpool.h"

namespace modulora {
namespace {

// Elements per chunk for ops that call libm (exp, log, pow, ...): less work per thread is enough.
constexpr int64_t kTranscendentalGrain = 4096;

// --- binary -----------------------------------------------------------------------------------

template <class T> struct AddF { static T f(T a, T b) { return a + b; } };
template <class T> struct SubF { static T f(T a, T b) { return a - b; } };
template <class T> struct MulF { static T f(T a, T b) { return a * b; } };
template <class T> struct DivF { static T f(T a, T b) { return a / b; } };
template <class T> struct MaxF { static T f(T a, T b) { return nan_max(a, b); } };
template <class T> struct MinF { static T f(T a, T b) { return nan_min(a, b); } };
template <class T> struct EqF { static T f(T a, T b) { return a == b ? T(1) : T(0); } };
template <class T> struct GtF { static T f(T a, T b) { return a > b ? T(1) : T(0); } };
template <class T> struct LtF { static T f(T a, T b) { return a < b ? T(1) : T(0); } };
template <class T> struct PowF { static T f(T a, T b) { return std::pow(a, b); } };

// One run of n outputs. The contiguous, scalar-b and scalar-a forms are the vectorisable fast
// paths: both contiguous, one operand a scalar, row broadcast ([M,N] op [N]: b restarts each row)
// and column broadcast ([M,N] op [M,1]) all end up here with unit or zero inner strides.
// No __restrict__: `o` may alias a contiguous `a` or `b` (each element is read before it is written).
template <class T, class F>
void binary_run(const T* a, int64_t sa, const T* b, int64_t sb, T* o, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; i++) o[i] = F::f(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const T bv = *b;
    for (int64_t i = 0; i < n; i++) o[i] = F::f(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const T av = *a;
    for (int64_t i = 0; i < n; i++) o[i] = F::f(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; i++) o[i] = F::f(a[i * sa], b[i * sb]);
  }
}

// An input is read transposed when it is contiguous along the second-innermost dim but not the
// innermost one (e.g. x.T + y). Walking such an input along output rows touches one cache line per
// element, and with power-of-two strides all those lines share cache sets.
bool reads_transposed(const StridedDims<3>& d, int k) {
  return d.rank >= 2 && d.stride[k][d.rank - 2] == 1 && d.inner_stride(k) > 1 && d.shape[d.rank - 1] >= 8 &&
         d.shape[d.rank - 2] >= 8;
}

// Tiles of the two innermost dims; a transposed input's tile is first copied into a local buffer
// (reading its contiguous columns), so every row of the op then runs on contiguous data.
template <class T, class F>
void binary_tiled(const StridedDims<3>& d, const T* a, const T* b, T* out, int64_t grain) {
  constexpr int64_t kTile = 32;
  const int r = d.rank;
  const int64_t rows = d.shape[r - 2], cols = d.shape[r - 1];
  const int64_t tr = (rows + kTile - 1) / kTile, tc = (cols + kTile - 1) / kTile;
  int64_t outer = 1;
  for (int i = 0; i < r - 2; i++) outer *= d.shape[i];
  const bool stage[2] = {reads_transposed(d, 0), reads_transposed(d, 1)};
  parallel_for(outer * tr * tc, std::max<int64_t>(1, grain / (kTile * kTile)), [&](int64_t tb, int64_t te) {
    T buf[2][kTile * kTile];
    for (int64_t t = tb; t < te; t++) {
      int64_t flat = t / (tr * tc), off[3] = {0, 0, 0};
      for (int i = r - 3; i >= 0; i--) {
        const int64_t c = flat % d.shape[i];
        flat /= d.shape[i];
        for (int k = 0; k < 3; k++) off[k] += c * d.stride[k][i];
      }
      const int64_t r0 = (t % (tr * tc)) / tc * kTile, c0 = (t % tc) * kTile;
      const int64_t nr = std::min(kTile, rows - r0), nc = std::min(kTile, cols - c0);
      const T* src[2] = {a, b};
      const T* p[2];
      int64_t row_step[2], col_step[2];
      for (int k = 0; k < 2; k++) {
        p[k] = src[k] + off[k] + r0 * d.stride[k][r - 2] + c0 * d.stride[k][r - 1];
        row_step[k] = d.stride[k][r - 2];
        col_step[k] = d.stride[k][r - 1];
        if (stage[k]) {
          for (int64_t c = 0; c < nc; c++) {
            const T* col = p[k] + c * col_step[k];
            for (int64_t i = 0; i < nr; i++) buf[k][i * kTile + c] = col[i];
          }
          p[k] = buf[k];
          row_step[k] = kTile;
          col_step[k] = 1;
        }
      }
      T* o = out + off[2] + r0 * d.stride[2][r - 2] + c0;
      for (int64_t i = 0; i < nr; i++) {
        binary_run<T, F>(p[0] + i * row_step[0], col_step[0], p[1] + i * row_step[1], col_step[1],
                         o + i * d.stride[2][r - 2], nc);
      }
    }
  });
}

template <class T, class F>
void binary_impl(const StridedDims<3>& d, const T* a, const T* b, T* out, int64_t grain) {
  if (reads_transposed(d, 0) || reads_transposed(d, 1)) return binary_tiled<T, F>(d, a, b, out, grain);
  const int64_t sa = d.inner_stride(0), sb = d.inner_stride(1);
  parallel_for(d.numel(), grain, [&](int64_t begin, int64_t end) {
    for_each_run(d, begin, end, [&](const int64_t* off, int64_t len) {
      binary_run<T, F>(a + off[0], sa, b + off[1], sb, out + off[2], len);
    });
  });
}

// --- unary ------------------------------------------------------------------------------------

// Overflow-free logistic: exp of a non-positive argument only.
template <class T> inline T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}
template <class T> inline T sign_of(T x) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x); }  // keeps 0, -0, NaN

// Each functor: f(x, p) forward; g(x, y, dy, p) = dy * f'(x) given y = f(x).
template <class T> struct NegU {
  static T f(T x, T) { return -x; }
  static T g(T, T, T dy, T) { return -dy; }
};
template <class T> struct ExpU {
  static T f(T x, T) { return std::exp(x); }
  static T g(T, T y, T dy, T) { return dy * y; }
};
template <class T> struct LogU {
  static T f(T x, T) { return std::log(x); }
  static T g(T x, T, T dy, T) { return dy / x; }
};
template <class T> struct SqrtU {
  static T f(T x, T) { return std::sqrt(x); }
  static T g(T, T y, T dy, T) { return dy * T(0.5) / y; }
};
template <class T> struct RsqrtU {
  static T f(T x, T) { return T(1) / std::sqrt(x); }
  static T g(T, T y, T dy, T) { return dy * T(-0.5) * y * y * y; }  // d/dx x^-1/2 = -x^-3/2 / 2
};
template <class T> struct AbsU {
  static T f(T x, T) { return std::fabs(x); }
  static T g(T x, T, T dy, T) { return x > T(0) ? dy : (x < T(0) ? -dy : T(0)); }
};
template <class T> struct ReluU {
  static T f(T x, T) { return x < T(0) ? T(0) : x; }  // NaN stays NaN
  static T g(T x, T, T dy, T) { return x > T(0) ? dy : T(0); }
};
template <class T> struct SigmoidU {
  static T f(T x, T) { return sigmoid(x); }
  static T g(T, T y, T dy, T) { return dy * y * (T(1) - y); }
};
template <class T> struct TanhU {
  static T f(T x, T) { return std::tanh(x); }
  static T g(T, T y, T dy, T) { return dy * (T(1) - y * y); }
};
template <class T> struct SiluU {
  static T f(T x, T) { return x * sigmoid(x); }
  static T g(T x, T, T dy, T) {
    const T s = sigmoid(x);
    return dy * (s + x * s * (T(1) - s));
  }
};
template <class T> struct SquareU {
  static T f(T x, T) { return x * x; }
  static T g(T x, T, T dy, T) { return dy * T(2) * x; }
};
template <class T> struct ReciprocalU {
  static T f(T x, T) { return T(1) / x; }
  static T g(T, T y, T dy, T) { return -dy * y * y; }
};
template <class T> struct SignU {
  static T f(T x, T) { return sign_of(x); }
  static T g(T, T, T, T) { return T(0); }
};
template <class T> struct PowScalarU {
  static T f(T x, T p) { return p == T(2) ? x * x : (p == T(1) ? x : std::pow(x, p)); }
  static T g(T x, T, T dy, T p) { return p == T(0) ? T(0) : dy * p * std::pow(x, p - T(1)); }
};

bool is_cheap(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: case UnaryOp::Abs: case UnaryOp::Relu: case UnaryOp::Square:
    case UnaryOp::Reciprocal: case UnaryOp::Sign: case UnaryOp::Sqrt: case UnaryOp::Rsqrt:
      return true;
    default:
      return false;
  }
}

template <class T, class U>
void unary_impl(const T* x, T* out, int64_t n, T p, int64_t grain) {
  parallel_for(n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) out[i] = U::f(x[i], p);
  });
}

template <class T, class U>
void unary_grad_impl(const T* x, const T* y, const T* dy, T* dx, int64_t n, T p, int64_t grain) {
  parallel_for(n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) dx[i] = U::g(x[i], y[i], dy[i], p);
  });
}

// Calls fn(functor) with the functor of the unary op (a value of an empty struct).
template <class T, class Fn>
void dispatch_unary(UnaryOp op, Fn&& fn) {
  switch (op) {
    case UnaryOp::Neg: return fn(NegU<T>());
    case UnaryOp::Exp: return fn(ExpU<T>());
    case UnaryOp::Log: return fn(LogU<T>());
    case UnaryOp::Sqrt: return fn(SqrtU<T>());
    case UnaryOp::Rsqrt: return fn(RsqrtU<T>());
    case UnaryOp::Abs: return fn(AbsU<T>());
    case UnaryOp::Relu: return fn(ReluU<T>());
    case UnaryOp::Sigmoid: return fn(SigmoidU<T>());
    case UnaryOp::Tanh: return fn(TanhU<T>());
    case UnaryOp::Silu: return fn(SiluU<T>());
    case UnaryOp::Square: return fn(SquareU<T>());
    case UnaryOp::Reciprocal: return fn(ReciprocalU<T>());
    case UnaryOp::Sign: return fn(SignU<T>());
    case UnaryOp::PowScalar: return fn(PowScalarU<T>());
  }
}

}  // namespace

template <class T>
void binary_kernel(BinaryOp op, int rank, const int64_t* shape, const T* a, const int64_t* a_strides,
                   const T* b, const int64_t* b_strides, T* out) {
  StridedDims<3> d;
  int64_t out_stride[kMaxRank];
  int64_t s = 1;
  for (int i = rank - 1; i >= 0; i--) {
    if (shape[i] == 0) return;
    out_stride[i] = s;
    s *= shape[i];
  }
  for (int i = 0; i < rank; i++) {
    const int64_t st[3] = {a_strides[i], b_strides[i], out_stride[i]};
    d.push(shape[i], st);
  }
  d.coalesce();
  const int64_t g = kElementwiseGrain;
  switch (op) {
    case BinaryOp::Add: return binary_impl<T, AddF<T>>(d, a, b, out, g);
    case BinaryOp::Sub: return binary_impl<T, SubF<T>>(d, a, b, out, g);
    case BinaryOp::Mul: return binary_impl<T, MulF<T>>(d, a, b, out, g);
    case BinaryOp::Div: return binary_impl<T, DivF<T>>(d, a, b, out, g);
    case BinaryOp::Maximum: return binary_impl<T, MaxF<T>>(d, a, b, out, g);
    case BinaryOp::Minimum: return binary_impl<T, MinF<T>>(d, a, b, out, g);
    case BinaryOp::Eq: return binary_impl<T, EqF<T>>(d, a, b, out, g);
    case BinaryOp::Gt: return binary_impl<T, GtF<T>>(d, a, b, out, g);
    case BinaryOp::Lt: return binary_impl<T, LtF<T>>(d, a, b, out, g);
    case BinaryOp::Pow: return binary_impl<T, PowF<T>>(d, a, b, out, kTranscendentalGrain);
  }
}

template <class T>
void unary_kernel(UnaryOp op, const T* x, T* out, int64_t n, double param) {
  const int64_t grain = is_cheap(op) ? kElementwiseGrain : kTranscendentalGrain;
  dispatch_unary<T>(op, [&](auto u) { unary_impl<T, decltype(u)>(x, out, n, static_cast<T>(param), grain); });
}

template <class T>
void unary_grad_kernel(UnaryOp op, const T* x, const T* y, const T* dy, T* dx, int64_t n, double param) {
  const int64_t grain = is_cheap(op) ? kElementwiseGrain : kTranscendentalGrain;
  dispatch_unary<T>(op, [&](auto u) {
    unary_grad_impl<T, decltype(u)>(x, y, dy, dx, n, static_cast<T>(param), grain);
  });
}

template <class T>
void affine_kernel(const T* x, double alpha, double beta, T* out, int64_t n) {
  const T al = static_cast<T>(alpha), be = static_cast<T>(beta);
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) out[i] = al * x[i] + be;
  });
}

template <class T>
int64_t count_nonfinite_kernel(const T* x, int64_t n) {
  std::atomic<int64_t> total{0};
  parallel_for(n, kElementwiseGrain * 4, [&](int64_t b, int64_t e) {
    int64_t c = 0;
    // x - x is 0 for finite x and NaN for NaN/Inf: a branch-free, vectorisable test.
    for (int64_t i = b; i < e; i++) c += (x[i] - x[i] != T(0));
    total.fetch_add(c, std::memory_order_relaxed);
  });
  return total.load();
}

namespace {
template <class E>
void fill_typed(E* dst, int64_t n, E v) {
  parallel_for(n, kElementwiseGrain * 4, [&](int64_t b, int64_t e) { std::fill(dst + b, dst + e, v); });
}
}  // namespace

void fill_kernel(void* dst, size_t elem_size, int64_t n, const void* value) {
  switch (elem_size) {
    case 1: { uint8_t v; std::memcpy(&v, value, 1); return fill_typed(static_cast<uint8_t*>(dst), n, v); }
    case 2: { uint16_t v; std::memcpy(&v, value, 2); return fill_typed(static_cast<uint16_t*>(dst), n, v); }
    case 4: { uint32_t v; std::memcpy(&v, value, 4); return fill_typed(static_cast<uint32_t*>(dst), n, v); }
    default: { uint64_t v; std::memcpy(&v, value, 8); return fill_typed(static_cast<uint64_t*>(dst), n, v); }
  }
}

#define MODULORA_INSTANTIATE(T)                                                                         \
  template void binary_kernel<T>(BinaryOp, int, const int64_t*, const T*, const int64_t*, const T*,      \
                                 const int64_t*, T*);                                                    \
  template void unary_kernel<T>(UnaryOp, const T*, T*, int64_t, double);                                 \
  template void unary_grad_kernel<T>(UnaryOp, const T*, const T*, const T*, T*, int64_t, double);        \
  template void affine_kernel<T>(const T*, double, double, T*, int64_t);                                 \
  template int64_t count_nonfinite_kernel<T>(const T*, int64_t);
MODULORA_INSTANTIATE(float)
MODULORA_INSTANTIATE(double)
#undef MODULORA_INSTANTIATE

}  // namespace modulora
