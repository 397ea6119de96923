// Bindings of the fused attention kernels (src/cpu/attention.h):
//
//   attentionForward(dims, q, k, v, mask, maskStrides, scale, causal, out, lse)
//   attentionBackward(dims, q, k, v, mask, maskStrides, scale, causal, out, lse, dout, dq, dk, dv, mode)
//   attentionBackwardMode(dims)  -> "fused" | "split" (what mode 0 = auto picks now)
//
// dims = [B, T, S, Hq, Hkv, D]; q, out, dout, dq are contiguous [B, T, Hq, D]; k, v, dk, dv are
// contiguous [B, S, Hkv, D]; lse is [B, Hq, T]. mask is null or an array read as [B, Hq, T, S]
// through maskStrides (4 non-negative element strides, 0 along broadcast dims). Every float array
// of one call is a Float32Array or every one a Float64Array. mode: 0 auto, 1 fused, 2 split.
//
// Everything is checked here before a kernel runs; errors name the op and the argument, e.g.
// "attentionForward: argument 'k' holds 60 elements but dims [1,4,5,2,2,3] need 120 ([B, S, Hkv, D])".
#include <cmath>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "cpu/attention.h"
#include "napi_util.h"

namespace modulora {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 53;

// Product of dims, refusing counts beyond 2^53.
int64_t Product(const Args& a, std::initializer_list<int64_t> dims, const char* what) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (__builtin_mul_overflow(n, d, &n) || n > kMaxElements) a.failRange(std::string(what) + " has more than 2^53 elements");
  }
  return n;
}

// The float arrays of one call, all of one type; remembers the ranges each one uses so that the
// outputs can be checked against overlapping anything else.
class Arrays {
 public:
  explicit Arrays(const Args& a) : a_(a), types_(a, true, "arrays") {}

  // A Float32Array/Float64Array of the call's type holding at least `need` elements.
  void* get(size_t i, const char* name, int64_t need, const std::string& layout, bool written) {
    const Args::AnyArray arr = types_.get(i, name);
    if (static_cast<int64_t>(arr.length) < need) {
      a_.failRange(std::string("argument '") + name + "' holds " + std::to_string(arr.length) + " elements but " +
                   layout + " needs " + std::to_string(need));
    }
    const size_t esize = arr.type == napi_float32_array ? 4 : 8;
    const auto* lo = static_cast<const uint8_t*>(arr.data);
    Range r{name, lo, lo + static_cast<size_t>(need) * esize, written};
    for (const Range& o : ranges_) {
      if ((r.written || o.written) && r.lo < o.hi && o.lo < r.hi) {
        a_.failRange(std::string("argument '") + (r.written ? r.name : o.name) + "' overlaps '" +
                     (r.written ? o.name : r.name) + "'; outputs must not share memory with any other argument");
      }
    }
    ranges_.push_back(r);
    return arr.data;
  }
  bool is_f32() const { return types_.is_f32(); }

 private:
  struct Range {
    const char* name;
    const uint8_t *lo, *hi;
    bool written;
  };
  const Args& a_;
  SameTypeArrays types_;
  std::vector<Range> ranges_;
};

// dims = [B, T, S, Hq, Hkv, D], checked against each other and the causal flag.
AttentionDims ReadDims(const Args& a, size_t i) {
  const std::vector<int64_t> v = a.intList(i, "dims", 6, false);
  if (v.size() != 6) {
    a.failRange("argument 'dims' must be [B, T, S, Hq, Hkv, D] (6 entries), got " + ListStr(v));
  }
  AttentionDims d{v[0], v[1], v[2], v[3], v[4], v[5], false, 1.0};
  if (d.Hq < 1 || d.Hkv < 1 || d.D < 1) {
    a.failRange("dims " + ListStr(v) + ": Hq, Hkv and D must be at least 1");
  }
  if (d.Hq % d.Hkv != 0) {
    a.failRange("dims " + ListStr(v) + ": Hq = " + std::to_string(d.Hq) + " query heads is not a multiple of Hkv = " +
                std::to_string(d.Hkv) + " kv heads");
  }
  return d;
}

// "dims [B,T,S,Hq,Hkv,D]", the layout named in the length errors.
std::string DimsLabel(const AttentionDims& d) { return "dims " + ListStr({d.B, d.T, d.S, d.Hq, d.Hkv, d.D}); }

struct Common {
  AttentionDims d;
  void *q, *k, *v, *out, *lse;
  const void* mask = nullptr;
  int64_t ms[4] = {0, 0, 0, 0};
};

// Reads dims, q, k, v, mask, maskStrides, scale, causal, out, lse (argument indices 0..9).
Common ReadCommon(const Args& a, Arrays& arrays) {
  Common c;
  c.d = ReadDims(a, 0);
  AttentionDims& d = c.d;
  const std::string dl = DimsLabel(d);
  const int64_t nq = Product(a, {d.B, d.T, d.Hq, d.D}, "q"), nk = Product(a, {d.B, d.S, d.Hkv, d.D}, "k");
  d.scale = a.number(6, "scale");
  if (!std::isfinite(d.scale)) a.failRange("argument 'scale' must be finite, got " + std::to_string(d.scale));
  d.causal = a.boolean(7, "causal");
  if (d.causal && d.S < d.T) {
    a.failRange(dl + ": causal attention needs S >= T (the T queries are the newest of S positions), got S = " +
                std::to_string(d.S) + " < T = " + std::to_string(d.T));
  }
  c.q = arrays.get(1, "q", nq, dl + " as [B, T, Hq, D]", false);
  c.k = arrays.get(2, "k", nk, dl + " as [B, S, Hkv, D]", false);
  c.v = arrays.get(3, "v", nk, dl + " as [B, S, Hkv, D]", false);
  return c;
}

// mask (index 4) and maskStrides (index 5): both absent, or an array and 4 strides that stay inside it.
void ReadMask(const Napi::CallbackInfo& info, const Args& a, Arrays& arrays, Common& c) {
  const bool no_mask = IsAbsent(info, 4), no_strides = IsAbsent(info, 5);
  if (no_mask != no_strides) {
    a.fail(no_mask ? "argument 'maskStrides' is given but 'mask' is null" : "argument 'mask' needs 'maskStrides' (4 strides over [B, Hq, T, S])");
  }
  if (no_mask) return;
  const std::vector<int64_t> s = a.intList(5, "maskStrides", 4, false);
  if (s.size() != 4) a.failRange("argument 'maskStrides' must have 4 entries (strides over [B, Hq, T, S]), got " + ListStr(s));
  const AttentionDims& d = c.d;
  const int64_t dims[4] = {d.B, d.Hq, d.T, d.S};
  int64_t last = 0;
  bool empty = false;
  for (int i = 0; i < 4; i++) empty = empty || dims[i] == 0;
  for (int i = 0; i < 4 && !empty; i++) {
    int64_t span;
    if (__builtin_mul_overflow(dims[i] - 1, s[i], &span) || __builtin_add_overflow(last, span, &last) || last >= kMaxElements) {
      a.failRange("argument 'maskStrides' = " + ListStr(s) + " addresses more than 2^53 elements");
    }
  }
  const int64_t need = empty ? 0 : last + 1;
  c.mask = arrays.get(4, "mask", need,
                      "maskStrides " + ListStr(s) + " over [B, Hq, T, S] = " + ListStr({d.B, d.Hq, d.T, d.S}), false);
  for (int i = 0; i < 4; i++) c.ms[i] = s[i];
}

template <class T>
AttentionMask<T> MaskOf(const Common& c) {
  AttentionMask<T> m;
  m.data = static_cast<const T*>(c.mask);
  m.sb = c.ms[0];
  m.sh = c.ms[1];
  m.st = c.ms[2];
  m.ss = c.ms[3];
  return m;
}

// out and lse (indices 8, 9): written by the forward, read by the backward.
void ReadOutAndLse(const Args& a, Arrays& arrays, Common& c, bool written) {
  const AttentionDims& d = c.d;
  const std::string dl = DimsLabel(d);
  c.out = arrays.get(8, "out", Product(a, {d.B, d.T, d.Hq, d.D}, "out"), dl + " as [B, T, Hq, D]", written);
  c.lse = arrays.get(9, "lse", Product(a, {d.B, d.Hq, d.T}, "lse"), dl + " as [B, Hq, T]", written);
}

[[noreturn]] void OutOfMemory(const Args& a) {
  a.failRange("out of memory allocating kernel scratch");
}

Napi::Value Forward(const Napi::CallbackInfo& info) {
  Args a(info, "attentionForward");
  a.expectCount(10, "(dims, q, k, v, mask, maskStrides, scale, causal, out, lse)");
  Arrays arrays(a);
  Common c = ReadCommon(a, arrays);
  ReadMask(info, a, arrays, c);
  ReadOutAndLse(a, arrays, c, true);
  const AttentionDims& d = c.d;
  try {
    DispatchFloat(arrays.is_f32(), [&](auto t) {
      using T = decltype(t);
      attention_forward<T>(d, static_cast<const T*>(c.q), static_cast<const T*>(c.k), static_cast<const T*>(c.v),
                           MaskOf<T>(c), static_cast<T*>(c.out), static_cast<T*>(c.lse));
    });
  } catch (const std::bad_alloc&) {
    OutOfMemory(a);
  }
  return info.Env().Undefined();
}

Napi::Value Backward(const Napi::CallbackInfo& info) {
  Args a(info, "attentionBackward");
  a.expectCount(15, "(dims, q, k, v, mask, maskStrides, scale, causal, out, lse, dout, dq, dk, dv, mode)");
  Arrays arrays(a);
  Common c = ReadCommon(a, arrays);
  ReadMask(info, a, arrays, c);
  ReadOutAndLse(a, arrays, c, false);
  const AttentionDims& d = c.d;
  const std::string dl = DimsLabel(d);
  const int64_t nq = Product(a, {d.B, d.T, d.Hq, d.D}, "dq"), nk = Product(a, {d.B, d.S, d.Hkv, d.D}, "dk");
  void* dout = arrays.get(10, "dout", nq, dl + " as [B, T, Hq, D]", false);
  void* dq = arrays.get(11, "dq", nq, dl + " as [B, T, Hq, D]", true);
  void* dk = arrays.get(12, "dk", nk, dl + " as [B, S, Hkv, D]", true);
  void* dv = arrays.get(13, "dv", nk, dl + " as [B, S, Hkv, D]", true);
  const auto mode = static_cast<AttentionBackwardMode>(a.integer(14, "mode", 0, 2));
  try {
    DispatchFloat(arrays.is_f32(), [&](auto t) {
      using T = decltype(t);
      attention_backward<T>(d, static_cast<const T*>(c.q), static_cast<const T*>(c.k), static_cast<const T*>(c.v),
                            MaskOf<T>(c), static_cast<const T*>(c.out), static_cast<const T*>(c.lse),
                            static_cast<const T*>(dout), static_cast<T*>(dq), static_cast<T*>(dk),
                            static_cast<T*>(dv), mode);
    });
  } catch (const std::bad_alloc&) {
    OutOfMemory(a);
  }
  return info.Env().Undefined();
}

Napi::Value BackwardMode(const Napi::CallbackInfo& info) {
  Args a(info, "attentionBackwardMode");
  a.expectCount(1, "(dims)");
  const AttentionDims d = ReadDims(a, 0);
  const bool fused = attention_backward_mode(d) == AttentionBackwardMode::Fused;
  return Napi::String::New(info.Env(), fused ? "fused" : "split");
}

}  // namespace

void RegisterAttention(Napi::Env env, Napi::Object exports) {
  exports.Set("attentionForward", Napi::Function::New(env, Forward, "attentionForward"));
  exports.Set("attentionBackward", Napi::Function::New(env, Backward, "attentionBackward"));
  exports.Set("attentionBackwardMode", Napi::Function::New(env, BackwardMode, "attentionBackwardMode"));
  exports.Set("attentionBlockSizes", Napi::Function::New(
                                         env,
                                         [](const Napi::CallbackInfo& info) -> Napi::Value {
                                           Napi::Object o = Napi::Object::New(info.Env());
                                           o.Set("query", static_cast<double>(kAttnBlockQ));
                                           o.Set("keyForward", static_cast<double>(kAttnBlockKForward));
                                           o.Set("keyBackward", static_cast<double>(kAttnBlockKBackward));
                                           return o;
                                         },
                                         "attentionBlockSizes"));
}

}  // namespace modulora
