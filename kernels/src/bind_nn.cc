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
#include <string>
#include <vector>

#include "binding.h"
#include "cpu/nn.h"
#include "cpu/philox.h"

namespace modulora {
namespace {

constexpr int64_t kMaxSafe = (int64_t{1} << 53) - 1;  // largest exact integer of a JS number
constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

int64_t Len(const Args::AnyArray& arr) { return static_cast<int64_t>(arr.length); }

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
Napi::Value RmsnormForward(Call& a) {
  const auto x = a.arr("x");
  const auto w = a.arr("weight");
  const double eps = a.num("eps");
  const auto y = a.arr("y");
  const auto rstd = a.arr("rstd");
  const RmsRows r = ReadRmsRows(a, x, w);
  const int64_t d = r.d, rows = r.rows;
  SameLength(a, y, "y", x, "x");
  ExactLength(a, rstd, "rstd", rows, "one entry per row (" + Str(rows) + " rows of " + Str(d) + ")");
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    rmsnorm_forward<T>(static_cast<const T*>(x.data), static_cast<const T*>(w.data), static_cast<T*>(y.data),
                       static_cast<T*>(rstd.data), rows, d, eps);
  });
  return a.env().Undefined();
}

// --- rmsnormBackward(x, weight, rstd, dy, dx, dweight | null) -------------------------------------
Napi::Value RmsnormBackward(Call& a) {
  const auto x = a.arr("x");
  const auto w = a.arr("weight");
  const auto rstd = a.arr("rstd");
  const auto dy = a.arr("dy");
  const auto dx = a.arr("dx");
  const bool want_dw = a.has("dweight");
  const auto dw = a.arr("dweight");  // data null when absent
  const RmsRows r = ReadRmsRows(a, x, w);
  const int64_t d = r.d, rows = r.rows;
  ExactLength(a, rstd, "rstd", rows, "one entry per row (" + Str(rows) + " rows of " + Str(d) + ")");
  SameLength(a, dy, "dy", x, "x");
  SameLength(a, dx, "dx", x, "x");
  if (want_dw) SameLength(a, dw, "dweight", w, "weight");
  bool ok = true;
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    ok = rmsnorm_backward<T>(static_cast<const T*>(x.data), static_cast<const T*>(w.data),
                             static_cast<const T*>(rstd.data), static_cast<const T*>(dy.data), static_cast<T*>(dx.data),
                             static_cast<T*>(dw.data), rows, d);
  });
  if (!ok) {
    throw Napi::Error::New(a.env(), "rmsnormBackward: out of memory for the partial sums of dweight (" + Str(rows) +
                                           " rows of " + Str(d) + ")");
  }
  return a.env().Undefined();
}

// --- rope(x, xStrides, shape, positions, invFreq, inverse, out) ---------------------------------
Napi::Value Rope(Call& a) {
  const auto x = a.arr("x");
  const std::vector<int64_t> xs = a.list("xStrides");
  const std::vector<int64_t> shape = a.list("shape");
  if (xs.size() != 3) a.failRange("argument 'xStrides' must hold 3 strides (of B, T, H; D is contiguous), got " + Str(static_cast<int64_t>(xs.size())));
  if (shape.size() != 4) a.failRange("argument 'shape' must be [B, T, H, D], got " + Str(static_cast<int64_t>(shape.size())) + " entries");
  const int64_t B = shape[0], Tn = shape[1], H = shape[2], D = shape[3];
  for (int k = 0; k < 4; k++) {
    if (shape[k] > kMaxDim) a.failRange("argument 'shape' entry " + Str(k) + " = " + Str(shape[k]) + " is too large");
  }
  if (D < 2 || D % 2 != 0) a.failRange("head dim D = " + Str(D) + " must be even and at least 2 (rotate-half pairs i and i + D/2)");
  const int32_t* pos = a.data<int32_t>("positions");
  const int64_t npos = a.len("positions");
  const double* inv_freq = a.data<double>("invFreq");
  const int64_t nfreq = a.len("invFreq");
  const bool inverse = a.flag("inverse");
  const auto out = a.arr("out");

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
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    rope_kernel<T>(static_cast<const T*>(x.data), strides, B, Tn, H, D, pos, batched, inv_freq, inverse,
                   static_cast<T*>(out.data));
  });
  return a.env().Undefined();
}

// --- swigluForward(gate, up, out) ---------------------------------------------------------------
Napi::Value SwigluForward(Call& a) {
  const auto g = a.arr("gate");
  const auto u = a.arr("up");
  const auto out = a.arr("out");
  SameLength(a, u, "up", g, "gate");
  SameLength(a, out, "out", g, "gate");
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    swiglu_forward<T>(static_cast<const T*>(g.data), static_cast<const T*>(u.data), static_cast<T*>(out.data), Len(g));
  });
  return a.env().Undefined();
}

// --- swigluBackward(gate, up, dy, dgate, dup) ----------------------------------------------------
Napi::Value SwigluBackward(Call& a) {
  const auto g = a.arr("gate");
  const auto u = a.arr("up");
  const auto dy = a.arr("dy");
  const auto dg = a.arr("dgate");
  const auto du = a.arr("dup");
  SameLength(a, u, "up", g, "gate");
  SameLength(a, dy, "dy", g, "gate");
  SameLength(a, dg, "dgate", g, "gate");
  SameLength(a, du, "dup", g, "gate");
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    swiglu_backward<T>(static_cast<const T*>(g.data), static_cast<const T*>(u.data), static_cast<const T*>(dy.data),
                       static_cast<T*>(dg.data), static_cast<T*>(du.data), Len(g));
  });
  return a.env().Undefined();
}

// --- dropout(x, p, seed, offset, out) -----------------------------------------------------------
Napi::Value Dropout(Call& a) {
  const auto x = a.arr("x");
  const double p = a.num("p");
  const int64_t seed = a.i("seed");
  const int64_t offset = a.i("offset");
  const auto out = a.arr("out");
  SameLength(a, out, "out", x, "x");
  const int64_t blocks = (Len(x) + 3) / 4;
  if (offset > kMaxSafe - blocks) {
    a.failRange("offset " + Str(offset) + " + " + Str(blocks) + " counters of this call exceeds 2^53 - 1");
  }
  uint32_t k0, k1;
  philox_seed_to_key(static_cast<double>(seed), &k0, &k1);
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    dropout_kernel<T>(static_cast<const T*>(x.data), static_cast<T*>(out.data), Len(x), p, k0, k1,
                      static_cast<uint64_t>(offset));
  });
  return a.env().Undefined();
}

// --- adamwStep(param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step) ----------------------
Napi::Value AdamwStep(Call& a) {
  const auto p = a.arr("param");
  const auto g = a.arr("grad");
  const auto m = a.arr("m");
  const auto v = a.arr("v");
  AdamwHyper h;
  h.lr = a.num("lr");
  h.beta1 = a.num("beta1");
  h.beta2 = a.num("beta2");
  h.eps = a.num("eps");
  h.weight_decay = a.num("weightDecay");
  h.step = a.i("step");
  SameLength(a, g, "grad", p, "param");
  SameLength(a, m, "m", p, "param");
  SameLength(a, v, "v", p, "param");
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    adamw_step<T>(static_cast<T*>(p.data), static_cast<const T*>(g.data), static_cast<T*>(m.data),
                  static_cast<T*>(v.data), Len(p), h);
  });
  return a.env().Undefined();
}

}  // namespace

void RegisterNn(Napi::Env env, Napi::Object exports) {
  static const std::vector<OpDef> kOps = {
      {"rmsnormForward", {FloatArr("x"), FloatArr("weight"), FiniteIn("eps", 0.0, INFINITY), FloatArr("y"), FloatArr("rstd")},
       RmsnormForward},
      {"rmsnormBackward",
       {FloatArr("x"), FloatArr("weight"), FloatArr("rstd"), FloatArr("dy"), FloatArr("dx"), FloatArr("dweight").nullable()},
       RmsnormBackward},
      {"rope",
       {FloatArr("x"), IntList("xStrides", 3), IntList("shape", 4), Arr<int32_t>("positions"), Arr<double>("invFreq"),
        Bool("inverse"), FloatArr("out")},
       Rope},
      {"swigluForward", {FloatArr("gate"), FloatArr("up"), FloatArr("out")}, SwigluForward},
      {"swigluBackward", {FloatArr("gate"), FloatArr("up"), FloatArr("dy"), FloatArr("dgate"), FloatArr("dup")},
       SwigluBackward},
      {"dropout",
       {FloatArr("x"), FiniteIn("p", 0.0, 1.0, true), Int("seed", -kMaxSafe, kMaxSafe), Int("offset", 0, kMaxSafe),
        FloatArr("out")},
       Dropout},
      {"adamwStep",
       {FloatArr("param"), FloatArr("grad"), FloatArr("m"), FloatArr("v"), FiniteIn("lr", 0.0, INFINITY),
        FiniteIn("beta1", 0.0, 1.0, true), FiniteIn("beta2", 0.0, 1.0, true), FiniteIn("eps", 0.0, INFINITY),
        FiniteIn("weightDecay", 0.0, INFINITY), Int("step", 1, kMaxSafe)},
       AdamwStep},
  };
  RegisterOps(env, exports, kOps);
}

}  // namespace modulora
