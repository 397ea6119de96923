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

#include "binding.h"
#include "cpu/attention.h"

namespace modulora {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 53;

// The float arrays of one call (their shared type checked by the binding layer); remembers the
// ranges each one uses so that the outputs can be checked against overlapping anything else.
class Arrays {
 public:
  explicit Arrays(const Call& a) : a_(a) {}

  // The array `name`, holding at least `need` elements.
  void* get(const char* name, int64_t need, const std::string& layout, bool written) {
    const Args::AnyArray& arr = a_.arr(name);
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

 private:
  struct Range {
    const char* name;
    const uint8_t *lo, *hi;
    bool written;
  };
  const Call& a_;
  std::vector<Range> ranges_;
};

// dims = [B, T, S, Hq, Hkv, D], checked against each other and the causal flag.
AttentionDims ReadDims(const Call& a) {
  const std::vector<int64_t>& v = a.list("dims");
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
Common ReadCommon(const Call& a, Arrays& arrays) {
  Common c;
  c.d = ReadDims(a);
  AttentionDims& d = c.d;
  const std::string dl = DimsLabel(d);
  const int64_t nq = CheckedProduct(a, {d.B, d.T, d.Hq, d.D}, "q"), nk = CheckedProduct(a, {d.B, d.S, d.Hkv, d.D}, "k");
  d.scale = a.num("scale");
  d.causal = a.flag("causal");
  if (d.causal && d.S < d.T) {
    a.failRange(dl + ": causal attention needs S >= T (the T queries are the newest of S positions), got S = " +
                std::to_string(d.S) + " < T = " + std::to_string(d.T));
  }
  c.q = arrays.get("q", nq, dl + " as [B, T, Hq, D]", false);
  c.k = arrays.get("k", nk, dl + " as [B, S, Hkv, D]", false);
  c.v = arrays.get("v", nk, dl + " as [B, S, Hkv, D]", false);
  return c;
}

// mask (index 4) and maskStrides (index 5): both absent, or an array and 4 strides that stay inside it.
void ReadMask(const Call& a, Arrays& arrays, Common& c) {
  const bool no_mask = !a.has("mask"), no_strides = !a.has("maskStrides");
  if (no_mask != no_strides) {
    a.fail(no_mask ? "argument 'maskStrides' is given but 'mask' is null" : "argument 'mask' needs 'maskStrides' (4 strides over [B, Hq, T, S])");
  }
  if (no_mask) return;
  const std::vector<int64_t>& s = a.list("maskStrides");
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
  c.mask = arrays.get("mask", need,
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
void ReadOutAndLse(const Call& a, Arrays& arrays, Common& c, bool written) {
  const AttentionDims& d = c.d;
  const std::string dl = DimsLabel(d);
  c.out = arrays.get("out", CheckedProduct(a, {d.B, d.T, d.Hq, d.D}, "out"), dl + " as [B, T, Hq, D]", written);
  c.lse = arrays.get("lse", CheckedProduct(a, {d.B, d.Hq, d.T}, "lse"), dl + " as [B, Hq, T]", written);
}

[[noreturn]] void OutOfMemory(const Args& a) {
  a.failRange("out of memory allocating kernel scratch");
}

Napi::Value Forward(Call& a) {
  Arrays arrays(a);
  Common c = ReadCommon(a, arrays);
  ReadMask(a, arrays, c);
  ReadOutAndLse(a, arrays, c, true);
  const AttentionDims& d = c.d;
  try {
    a.dispatch_float( [&](auto t) {
      using T = decltype(t);
      attention_forward<T>(d, static_cast<const T*>(c.q), static_cast<const T*>(c.k), static_cast<const T*>(c.v),
                           MaskOf<T>(c), static_cast<T*>(c.out), static_cast<T*>(c.lse));
    });
  } catch (const std::bad_alloc&) {
    OutOfMemory(a);
  }
  return a.env().Undefined();
}

Napi::Value Backward(Call& a) {
  Arrays arrays(a);
  Common c = ReadCommon(a, arrays);
  ReadMask(a, arrays, c);
  ReadOutAndLse(a, arrays, c, false);
  const AttentionDims& d = c.d;
  const std::string dl = DimsLabel(d);
  const int64_t nq = CheckedProduct(a, {d.B, d.T, d.Hq, d.D}, "dq"), nk = CheckedProduct(a, {d.B, d.S, d.Hkv, d.D}, "dk");
  void* dout = arrays.get("dout", nq, dl + " as [B, T, Hq, D]", false);
  void* dq = arrays.get("dq", nq, dl + " as [B, T, Hq, D]", true);
  void* dk = arrays.get("dk", nk, dl + " as [B, S, Hkv, D]", true);
  void* dv = arrays.get("dv", nk, dl + " as [B, S, Hkv, D]", true);
  const auto mode = static_cast<AttentionBackwardMode>(a.i("mode"));
  try {
    a.dispatch_float( [&](auto t) {
      using T = decltype(t);
      attention_backward<T>(d, static_cast<const T*>(c.q), static_cast<const T*>(c.k), static_cast<const T*>(c.v),
                            MaskOf<T>(c), static_cast<const T*>(c.out), static_cast<const T*>(c.lse),
                            static_cast<const T*>(dout), static_cast<T*>(dq), static_cast<T*>(dk),
                            static_cast<T*>(dv), mode);
    });
  } catch (const std::bad_alloc&) {
    OutOfMemory(a);
  }
  return a.env().Undefined();
}

Napi::Value BackwardMode(Call& a) {
  const AttentionDims d = ReadDims(a);
  const bool fused = attention_backward_mode(d) == AttentionBackwardMode::Fused;
  return Napi::String::New(a.env(), fused ? "fused" : "split");
}

Napi::Value BlockSizes(Call& a) {
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("query", static_cast<double>(kAttnBlockQ));
  o.Set("keyForward", static_cast<double>(kAttnBlockKForward));
  o.Set("keyBackward", static_cast<double>(kAttnBlockKBackward));
  return o;
}

// dims, q, k, v, mask, maskStrides, scale, causal, out, lse: what both directions start with.
std::vector<ArgSpec> CommonArgs() {
  return {IntList("dims", 6),         FloatArr("q"),       FloatArr("k"),
          FloatArr("v"),              FloatArr("mask").nullable(), IntList("maskStrides", 4).nullable(),
          FiniteIn("scale", -INFINITY, INFINITY), Bool("causal"), FloatArr("out"),
          FloatArr("lse")};
}

std::vector<ArgSpec> BackwardArgs() {
  std::vector<ArgSpec> v = CommonArgs();
  v.insert(v.end(), {FloatArr("dout"), FloatArr("dq"), FloatArr("dk"), FloatArr("dv"), Int("mode", 0, 2)});
  return v;
}

}  // namespace

void RegisterAttention(Napi::Env env, Napi::Object exports) {
  static const std::vector<OpDef> kOps = {
      {"attentionForward", CommonArgs(), Forward, nullptr, "arrays"},
      {"attentionBackward", BackwardArgs(), Backward, nullptr, "arrays"},
      {"attentionBackwardMode", {IntList("dims", 6)}, BackwardMode},
      {"attentionBlockSizes", {}, BlockSizes},
  };
  RegisterOps(env, exports, kOps);
}

}  // namespace modulora
