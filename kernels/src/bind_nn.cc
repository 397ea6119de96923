// Bindings of the fused LLaMA-block kernels (src/cpu/nn.h):
//   rmsnormForward(x, weight, eps, y, rstd)
//   rmsnormBackward(x, weight, rstd, dy, dx, dweight | null)
//   rope(x, xStrides[3], shape[4] = [B, T, H, D], positions, invFreq, inverse, out)
//   swigluForward(gate, up, out), swigluBackward(gate, up, dy, dgate, dup)
//   dropout(x, p, seed, offset, out)
//   adamwStep(param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step)
// Every argument is checked before a kernel runs: float arrays of one call share Float32Array or
// Float64Array, lengths agree, scalars are in range. Errors name the op and the argument, e.g.
// "rope: argument 'invFreq' holds 3 elements but head dim 8 needs D/2 = 4".
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cpu/nn.h"
#include "cpu/philox.h"
#include "napi_util.h"

namespace modulora {
namespace {

constexpr int64_t kMaxSafe = (int64_t{1} << 53) - 1;  // largest exact integer of a JS number
constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

std::string Str(int64_t v) { return std::to_string(v); }

int64_t Len(const Args::AnyArray& arr) { return static_cast<int64_t>(arr.length); }

void ExactLength(const Args& a, const Args::AnyArray& arr, const char* name, int64_t need, const std::string& what) {
  if (Len(arr) != need) {
    a.failRange(std::string("argument '") + name + "' holds " + Str(Len(arr)) + " elements but " + what + " needs " +
                Str(need));
  }
}

// A number as JS would print it (enough for messages).
std::string Num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// A finite number in [lo, hi] (hi_open: [lo, hi)).
double NumberIn(const Args& a, size_t i, const char* name, double lo, double hi, bool hi_open) {
  const double v = a.number(i, name);
  if (!(v >= lo && (hi_open ? v < hi : v <= hi)) || !std::isfinite(v)) {
    a.failRange(std::string("argument '") + name + "' = " + Num(v) + " must be a finite number in [" + Num(lo) +
                ", " + Num(hi) + (hi_open ? ")" : "]"));
  }
  return v;
}

// The rows of 'x' under rmsnorm: 'weight' holds the normalized dim d >= 1, and 'x' holds rows × d.
struct RmsRows {
  int64_t d, rows;
};

RmsRows ReadRmsRows(const Args& a, const Args::AnyArray& x, const Args::AnyArray& w) {
  const int64_t d = Len(w);
  if (d == 0) a.failRange("argument 'weight' is empty; the normalized dim must be at least 1");
  if (Len(x) % d != 0) {
    a.failRange("argument 'x' holds " + Str(Len(x)) + " elements, not a multiple of the dim " + Str(d) +
                " of 'weight'");
  }
  return {d, Len(x) / d};
}

// --- rmsnormForward(x, weight, eps, y, rstd) ----------------------------------------------------
Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  Args a(info, "rmsnormForward");
  a.expectCount(5, "(x, weight, eps, y, rstd)");
  FloatArrays types(a);
  const auto x = types.get(0, "x");
  const auto w = types.get(1, "weight");
  const double eps = NumberIn(a, 2, "eps", 0.0, INFINITY, true);
  const auto y = types.get(3, "y");
  const auto rstd = types.get(4, "rstd");
  const RmsRows r = ReadRmsRows(a, x, w);
  const int64_t d = r.d, rows = r.rows;
  SameLength(a, y, "y", x, "x");
  ExactLength(a, rstd, "rstd", rows, "one entry per row (" + Str(rows) + " rows of " + Str(d) + ")");
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    rmsnorm_forward<T>(static_cast<const T*>(x.data), static_cast<const T*>(w.data), static_cast<T*>(y.data),
                       static_cast<T*>(rstd.data), rows, d, eps);
  });
  return info.Env().Undefined();
}

// --- rmsnormBackward(x, weight, rstd, dy, dx, dweight | null) -------------------------------------
Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "rmsnormBackward");
  a.expectCount(6, "(x, weight, rstd, dy, dx, dweight)");
  FloatArrays types(a);
  const auto x = types.get(0, "x");
  const auto w = types.get(1, "weight");
  const auto rstd = types.get(2, "rstd");
  const auto dy = types.get(3, "dy");
  const auto dx = types.get(4, "dx");
  const bool want_dw = !IsAbsent(info, 5);
  Args::AnyArray dw{nullptr, 0, napi_float32_array};
  if (want_dw) dw = types.get(5, "dweight");
  const RmsRows r = ReadRmsRows(a, x, w);
  const int64_t d = r.d, rows = r.rows;
  ExactLength(a, rstd, "rstd", rows, "one entry per row (" + Str(rows) + " rows of " + Str(d) + ")");
  SameLength(a, dy, "dy", x, "x");
  SameLength(a, dx, "dx", x, "x");
  if (want_dw) SameLength(a, dw, "dweight", w, "weight");
  bool ok = true;
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    ok = rmsnorm_backward<T>(static_cast<const T*>(x.data), static_cast<const T*>(w.data),
                             static_cast<const T*>(rstd.data), static_cast<const T*>(dy.data), static_cast<T*>(dx.data),
                             static_cast<T*>(dw.data), rows, d);
  });
  if (!ok) {
    throw Napi::Error::New(info.Env(), "rmsnormBackward: out of memory for the partial sums of dweight (" + Str(rows) +
                                           " rows of " + Str(d) + ")");
  }
  return info.Env().Undefined();
}

// --- rope(x, xStrides, shape, positions, invFreq, inverse, out) ---------------------------------
Napi::Value Rope(const Napi::CallbackInfo& info) {
  Args a(info, "rope");
  a.expectCount(7, "(x, xStrides, shape, positions, invFreq, inverse, out)");
  FloatArrays types(a);
  const auto x = types.get(0, "x");
  const std::vector<int64_t> xs = a.intList(1, "xStrides", 3, false);
  const std::vector<int64_t> shape = a.intList(2, "shape", 4, false);
  if (xs.size() != 3) a.failRange("argument 'xStrides' must hold 3 strides (of B, T, H; D is contiguous), got " + Str(static_cast<int64_t>(xs.size())));
  if (shape.size() != 4) a.failRange("argument 'shape' must be [B, T, H, D], got " + Str(static_cast<int64_t>(shape.size())) + " entries");
  const int64_t B = shape[0], Tn = shape[1], H = shape[2], D = shape[3];
  for (int k = 0; k < 4; k++) {
    if (shape[k] > kMaxDim) a.failRange("argument 'shape' entry " + Str(k) + " = " + Str(shape[k]) + " is too large");
  }
  if (D < 2 || D % 2 != 0) a.failRange("head dim D = " + Str(D) + " must be even and at least 2 (rotate-half pairs i and i + D/2)");
  const int32_t* pos = a.array<int32_t>(3, "positions", 0);
  const int64_t npos = Len(a.anyArray(3, "positions"));
  const double* inv_freq = a.array<double>(4, "invFreq", 0);
  const int64_t nfreq = Len(a.anyArray(4, "invFreq"));
  const bool inverse = a.boolean(5, "inverse");
  const auto out = types.get(6, "out");

  __int128 total = static_cast<__int128>(B) * Tn * H * D;
  if (total > kMaxSafe) a.failRange("shape has more than 2^53 elements");
  const int64_t n = static_cast<int64_t>(total);
  if (nfreq != D / 2) a.failRange("argument 'invFreq' holds " + Str(nfreq) + " elements but head dim " + Str(D) + " needs D/2 = " + Str(D / 2));
  const bool batched = npos == B * Tn && B != 1;
  if (!batched && npos != Tn) {
    a.failRange("argument 'positions' holds " + Str(npos) + " entries; expected T = " + Str(Tn) +
                " (shared by the batch) or B*T = " + Str(B * Tn));
  }
  if (n > 0) {
    const __int128 extent = static_cast<__int128>(B - 1) * xs[0] + static_cast<__int128>(Tn - 1) * xs[1] +
                            static_cast<__int128>(H - 1) * xs[2] + D;
    if (extent > Len(x)) {
      a.failRange("argument 'x' holds " + Str(Len(x)) + " elements but the view [" + Str(B) + "," + Str(Tn) + "," +
                  Str(H) + "," + Str(D) + "] with strides [" + Str(xs[0]) + "," + Str(xs[1]) + "," + Str(xs[2]) +
                  ",1] reaches element " + (extent > kMaxSafe ? std::string("beyond 2^53") : Str(static_cast<int64_t>(extent) - 1)));
    }
  }
  ExactLength(a, out, "out", n, "the contiguous output [B, T, H, D]");
  const int64_t strides[3] = {xs[0], xs[1], xs[2]};
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    rope_kernel<T>(static_cast<const T*>(x.data), strides, B, Tn, H, D, pos, batched, inv_freq, inverse,
                   static_cast<T*>(out.data));
  });
  return info.Env().Undefined();
}

// --- swigluForward(gate, up, out) ---------------------------------------------------------------
Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  Args a(info, "swigluForward");
  a.expectCount(3, "(gate, up, out)");
  FloatArrays types(a);
  const auto g = types.get(0, "gate");
  const auto u = types.get(1, "up");
  const auto out = types.get(2, "out");
  SameLength(a, u, "up", g, "gate");
  SameLength(a, out, "out", g, "gate");
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    swiglu_forward<T>(static_cast<const T*>(g.data), static_cast<const T*>(u.data), static_cast<T*>(out.data), Len(g));
  });
  return info.Env().Undefined();
}

// --- swigluBackward(gate, up, dy, dgate, dup) ----------------------------------------------------
Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "swigluBackward");
  a.expectCount(5, "(gate, up, dy, dgate, dup)");
  FloatArrays types(a);
  const auto g = types.get(0, "gate");
  const auto u = types.get(1, "up");
  const auto dy = types.get(2, "dy");
  const auto dg = types.get(3, "dgate");
  const auto du = types.get(4, "dup");
  SameLength(a, u, "up", g, "gate");
  SameLength(a, dy, "dy", g, "gate");
  SameLength(a, dg, "dgate", g, "gate");
  SameLength(a, du, "dup", g, "gate");
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    swiglu_backward<T>(static_cast<const T*>(g.data), static_cast<const T*>(u.data), static_cast<const T*>(dy.data),
                       static_cast<T*>(dg.data), static_cast<T*>(du.data), Len(g));
  });
  return info.Env().Undefined();
}

// --- dropout(x, p, seed, offset, out) -----------------------------------------------------------
Napi::Value Dropout(const Napi::CallbackInfo& info) {
  Args a(info, "dropout");
  a.expectCount(5, "(x, p, seed, offset, out)");
  FloatArrays types(a);
  const auto x = types.get(0, "x");
  const double p = NumberIn(a, 1, "p", 0.0, 1.0, true);
  const int64_t seed = a.integer(2, "seed", -kMaxSafe, kMaxSafe);
  const int64_t offset = a.integer(3, "offset", 0, kMaxSafe);
  const auto out = types.get(4, "out");
  SameLength(a, out, "out", x, "x");
  const int64_t blocks = (Len(x) + 3) / 4;
  if (offset > kMaxSafe - blocks) {
    a.failRange("offset " + Str(offset) + " + " + Str(blocks) + " counters of this call exceeds 2^53 - 1");
  }
  uint32_t k0, k1;
  philox_seed_to_key(static_cast<double>(seed), &k0, &k1);
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    dropout_kernel<T>(static_cast<const T*>(x.data), static_cast<T*>(out.data), Len(x), p, k0, k1,
                      static_cast<uint64_t>(offset));
  });
  return info.Env().Undefined();
}

// --- adamwStep(param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step) ----------------------
Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
  Args a(info, "adamwStep");
  a.expectCount(10, "(param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step)");
  FloatArrays types(a);
  const auto p = types.get(0, "param");
  const auto g = types.get(1, "grad");
  const auto m = types.get(2, "m");
  const auto v = types.get(3, "v");
  AdamwHyper h;
  h.lr = NumberIn(a, 4, "lr", 0.0, INFINITY, true);
  h.beta1 = NumberIn(a, 5, "beta1", 0.0, 1.0, true);
  h.beta2 = NumberIn(a, 6, "beta2", 0.0, 1.0, true);
  h.eps = NumberIn(a, 7, "eps", 0.0, INFINITY, true);
  h.weight_decay = NumberIn(a, 8, "weightDecay", 0.0, INFINITY, true);
  h.step = a.integer(9, "step", 1, kMaxSafe);
  SameLength(a, g, "grad", p, "param");
  SameLength(a, m, "m", p, "param");
  SameLength(a, v, "v", p, "param");
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    adamw_step<T>(static_cast<T*>(p.data), static_cast<const T*>(g.data), static_cast<T*>(m.data),
                  static_cast<T*>(v.data), Len(p), h);
  });
  return info.Env().Undefined();
}

}  // namespace

void RegisterNn(Napi::Env env, Napi::Object exports) {
  exports.Set("rmsnormForward", Napi::Function::New(env, RmsnormForward, "rmsnormForward"));
  exports.Set("rmsnormBackward", Napi::Function::New(env, RmsnormBackward, "rmsnormBackward"));
  exports.Set("rope", Napi::Function::New(env, Rope, "rope"));
  exports.Set("swigluForward", Napi::Function::New(env, SwigluForward, "swigluForward"));
  exports.Set("swigluBackward", Napi::Function::New(env, SwigluBackward, "swigluBackward"));
  exports.Set("dropout", Napi::Function::New(env, Dropout, "dropout"));
  exports.Set("adamwStep", Napi::Function::New(env, AdamwStep, "adamwStep"));
}

}  // namespace modulora
