// Argument checking at the C++ boundary: the primitives (one argument of one kind) and the
// cross-argument helpers (lengths from shapes) under the declarative layer of binding.h, which
// every binding file uses. Every error names the op and the argument, so that a wrong call from
// JavaScript reads "gemm: argument 'a' (index 6) must be a Float32Array or Float64Array, got Int32Array".
#pragma once
#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace modulora {

// Element type codes shared with the TypeScript facade (ts/dtype.ts). Never reorder.
enum class DType : int32_t { F32 = 0, F64 = 1, BF16 = 2, F16 = 3, I32 = 4, I8 = 5, U8 = 6, U32 = 7 };
constexpr int kNumDTypes = 8;
const char* DTypeName(DType d);
size_t DTypeSize(DType d);
napi_typedarray_type DTypeArrayType(DType d);
const char* TypedArrayTypeName(napi_typedarray_type t);

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* op) : info_(info), env_(info.Env()), op_(op) {}
  Napi::Env env() const { return env_; }
  const char* op() const { return op_; }
  size_t count() const { return info_.Length(); }

  [[noreturn]] void fail(const std::string& msg) const;       // TypeError with the op prefix
  [[noreturn]] void failRange(const std::string& msg) const;  // RangeError with the op prefix

  int64_t integer(size_t i, const char* name, int64_t lo, int64_t hi) const;
  double number(size_t i, const char* name) const;
  bool boolean(size_t i, const char* name) const;
  std::string string(size_t i, const char* name) const;
  DType dtype(size_t i, const char* name) const;
  // Shape or strides: a JS array of integers or an Int32Array; `maxRank` bounds its length.
  std::vector<int64_t> intList(size_t i, const char* name, size_t maxRank, bool allowNegative) const;

  // A typed array of exactly this type holding at least `minLength` elements.
  template <class T>
  T* array(size_t i, const char* name, size_t minLength) const;
  // Any typed array; returns data pointer, element count and type.
  struct AnyArray { void* data; size_t length; napi_typedarray_type type; };
  AnyArray anyArray(size_t i, const char* name) const;
  // A typed array whose element type matches `d` (bf16/f16 live in Uint16Array).
  void* arrayOf(size_t i, const char* name, DType d, size_t minLength) const;

 private:
  const Napi::CallbackInfo& info_;
  Napi::Env env_;
  const char* op_;
};

template <class T> struct ArrayTypeOf;
template <> struct ArrayTypeOf<float> { static constexpr napi_typedarray_type value = napi_float32_array; };
template <> struct ArrayTypeOf<double> { static constexpr napi_typedarray_type value = napi_float64_array; };
template <> struct ArrayTypeOf<int32_t> { static constexpr napi_typedarray_type value = napi_int32_array; };
template <> struct ArrayTypeOf<uint32_t> { static constexpr napi_typedarray_type value = napi_uint32_array; };
template <> struct ArrayTypeOf<uint16_t> { static constexpr napi_typedarray_type value = napi_uint16_array; };
template <> struct ArrayTypeOf<int8_t> { static constexpr napi_typedarray_type value = napi_int8_array; };
template <> struct ArrayTypeOf<uint8_t> { static constexpr napi_typedarray_type value = napi_uint8_array; };

template <class T>
T* Args::array(size_t i, const char* name, size_t minLength) const {
  AnyArray a = anyArray(i, name);
  if (a.type != ArrayTypeOf<T>::value) {
    fail(std::string("argument '") + name + "' (index " + std::to_string(i) + ") must be a " +
         TypedArrayTypeName(ArrayTypeOf<T>::value) + ", got " + TypedArrayTypeName(a.type));
  }
  if (a.length < minLength) {
    failRange(std::string("argument '") + name + "' holds " + std::to_string(a.length) +
              " elements but the call needs at least " + std::to_string(minLength));
  }
  return static_cast<T*>(a.data);
}

// --- helpers shared by the binding files ---------------------------------------------------------

inline std::string Str(int64_t v) { return std::to_string(v); }

// The shortest decimal that reads back as the same double; NaN and infinities spelled as in JS.
std::string NumStr(double v);

// The product of `dims`, refusing counts beyond 2^53: "<what> has more than 2^53 elements".
int64_t CheckedProduct(const Args& a, std::initializer_list<int64_t> dims, const std::string& what);

// A list of integers as "[1,2,3]", for messages.
inline std::string ListStr(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

// Calls fn(float{}) or fn(double{}): a generic lambda then runs the kernel for that element type.
template <class F>
void DispatchFloat(bool f32, F&& fn) {
  if (f32) fn(float{});
  else fn(double{});
}

// Throws "argument 'x' needs 60 elements (<what>) but holds 59" when `arr` holds fewer than `need`.
inline void NeedLength(const Args& a, const Args::AnyArray& arr, const char* name, int64_t need,
                       const std::string& what) {
  if (static_cast<int64_t>(arr.length) < need) {
    a.failRange(std::string("argument '") + name + "' needs " + std::to_string(need) + " elements (" + what +
                ") but holds " + std::to_string(arr.length));
  }
}

// Throws "argument 'rstd' holds 3 elements but <what> needs 4" unless `arr` holds exactly `need`.
inline void ExactLength(const Args& a, const Args::AnyArray& arr, const char* name, int64_t need,
                        const std::string& what) {
  if (static_cast<int64_t>(arr.length) != need) {
    a.failRange(std::string("argument '") + name + "' holds " + std::to_string(arr.length) + " elements but " + what +
                " needs " + std::to_string(need));
  }
}

// Throws "argument 'y' holds 3 elements but 'x' holds 4; they must match" unless the lengths agree.
inline void SameLength(const Args& a, const Args::AnyArray& arr, const char* name, const Args::AnyArray& ref,
                       const char* ref_name) {
  if (arr.length != ref.length) {
    a.failRange(std::string("argument '") + name + "' holds " + std::to_string(arr.length) + " elements but '" +
                ref_name + "' holds " + std::to_string(ref.length) + "; they must match");
  }
}

// A count for messages: the number, or "more than 2^63".
inline std::string Str128(__int128 v) {
  if (v <= static_cast<__int128>(INT64_MAX)) return Str(static_cast<int64_t>(v));
  return "more than 2^63";
}

// Throws "argument 'a' holds 5 elements but the call needs at least 6" when `arr` holds fewer than `need`.
inline void NeedAtLeast(const Args& a, const char* name, const Args::AnyArray& arr, __int128 need) {
  if (static_cast<__int128>(arr.length) < need) {
    a.failRange(std::string("argument '") + name + "' holds " + std::to_string(arr.length) +
                " elements but the call needs at least " + Str128(need));
  }
}

// A typed array of exactly type T holding exactly `need` elements; the error explains the count:
// "argument 'scales' holds 12 elements, expected groups × outFeatures = 3 × 5 = 15".
template <class T>
T* ExactArray(const Args& a, size_t i, const char* name, int64_t need, const std::string& what) {
  T* p = a.array<T>(i, name, 0);
  const auto len = static_cast<int64_t>(a.anyArray(i, name).length);
  if (len != need) {
    a.failRange(std::string("argument '") + name + "' holds " + std::to_string(len) + " elements, expected " + what +
                " = " + std::to_string(need));
  }
  return p;
}

// Registration functions, one per binding file; addon.cc calls them all.
void RegisterStorage(Napi::Env env, Napi::Object exports);
void RegisterGemm(Napi::Env env, Napi::Object exports);
void RegisterElementwise(Napi::Env env, Napi::Object exports);
void RegisterIo(Napi::Env env, Napi::Object exports);
void RegisterAttention(Napi::Env env, Napi::Object exports);
void RegisterNn(Napi::Env env, Napi::Object exports);
void RegisterLoss(Napi::Env env, Napi::Object exports);
void RegisterQuant(Napi::Env env, Napi::Object exports);
void RegisterOptq(Napi::Env env, Napi::Object exports);

// The blocking of a GEMM-like kernel (GemmInfo, QuantMatmulInfo: isa, mr, nr, kc, mc, nc) as a JS object.
template <class Info>
Napi::Object TileInfoObject(Napi::Env env, const Info& g) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", Napi::String::New(env, g.isa));
  for (const auto& [name, v] : {std::pair<const char*, int>{"mr", g.mr}, {"nr", g.nr}, {"kc", g.kc}, {"mc", g.mc}, {"nc", g.nc}}) {
    o.Set(name, Napi::Number::New(env, v));
  }
  return o;
}

}  // namespace modulora
