// The binding layer, declared once. Each exported function is one table entry (OpDef): its JS name,
// its arguments (name + kind + range) and an implementation that receives a Call whose arguments
// have all been checked already: the count, every type, integer and number ranges, the shared
// Float32Array/Float64Array type of the call's float arrays, shapes and optional arguments. The
// errors read as before: "gemm: argument 'a' (index 6) must be a Float32Array or Float64Array, got
// Int32Array", "softmax: expected 5 arguments (x, outer, n, inner, y), got 4".
//
// What depends on several arguments (a length from the shape, a group count that must divide)
// stays in the implementation, with the shared helpers of napi_util.h.
//
//   const OpDef kSoftmax{"softmax", {FloatArr("x"), Int("outer", 0, kMax), ..., FloatArr("y")}, Softmax};
//   Napi::Value Softmax(Call& c) { const auto x = c.arr("x"); const int64_t n = c.i("n"); ... }
#pragma once
#include <napi.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "napi_util.h"

namespace modulora {

enum class ArgKind {
  kFloatArray,  // Float32Array or Float64Array, one type shared by every float array of the call
  kSameArray,   // any typed array, one type shared by every such array of the call
  kTypedArray,  // a typed array of one fixed type (spec.type)
  kAnyArray,    // any typed array (its type is checked by the implementation)
  kInt,         // an integer in [lo, hi]
  kNumber,      // any number (NaN and infinities included)
  kFiniteIn,    // a finite number in [dlo, dhi] or [dlo, dhi)
  kBool,
  kString,
  kEnum,        // one string of `choices`
  kIntList,     // an array of integers or an Int32Array, at most max_rank entries
  kDType,       // a dtype code (DType)
  kBuffer,      // an ArrayBuffer (what it must be is in `expected`)
};

struct ArgSpec {
  const char* name = nullptr;
  ArgKind kind = ArgKind::kAnyArray;
  napi_typedarray_type type = napi_float32_array;  // kTypedArray
  int64_t lo = 0, hi = 0;                            // kInt
  double dlo = 0, dhi = 0;                           // kFiniteIn
  bool hi_open = false;                              // kFiniteIn: [dlo, dhi)
  size_t max_rank = 0;                               // kIntList
  bool allow_negative = false;                       // kIntList
  std::vector<const char*> choices;                  // kEnum
  const char* expected = nullptr;                    // kEnum, kBuffer: what the value must be, for the error
  bool may_be_missing = false;  // a trailing argument that may be left out
  bool undefined_absent = false;  // undefined reads as absent
  bool null_absent = false;       // null reads as absent

  // May be left out (trailing) or passed as undefined.
  ArgSpec optional() const {
    ArgSpec s = *this;
    s.may_be_missing = s.undefined_absent = true;
    return s;
  }
  // May be left out (trailing) but, when passed, must be of its kind (undefined included).
  ArgSpec omittable() const {
    ArgSpec s = *this;
    s.may_be_missing = true;
    return s;
  }
  // Its position must be filled, but null or undefined stand for "absent".
  ArgSpec nullable() const {
    ArgSpec s = *this;
    s.undefined_absent = s.null_absent = true;
    return s;
  }
};

// --- spec builders ---------------------------------------------------------------------------------
inline ArgSpec Spec(const char* name, ArgKind kind) {
  ArgSpec s;
  s.name = name;
  s.kind = kind;
  return s;
}
inline ArgSpec FloatArr(const char* name) { return Spec(name, ArgKind::kFloatArray); }
inline ArgSpec SameArr(const char* name) { return Spec(name, ArgKind::kSameArray); }
inline ArgSpec AnyArr(const char* name) { return Spec(name, ArgKind::kAnyArray); }
template <class T>
ArgSpec Arr(const char* name) {
  ArgSpec s = Spec(name, ArgKind::kTypedArray);
  s.type = ArrayTypeOf<T>::value;
  return s;
}
inline ArgSpec Int(const char* name, int64_t lo, int64_t hi) {
  ArgSpec s = Spec(name, ArgKind::kInt);
  s.lo = lo;
  s.hi = hi;
  return s;
}
inline ArgSpec Num(const char* name) { return Spec(name, ArgKind::kNumber); }
// A finite number in [lo, hi] (hi_open: [lo, hi)); infinite bounds read as "no bound".
inline ArgSpec FiniteIn(const char* name, double lo, double hi, bool hi_open = false) {
  ArgSpec s = Spec(name, ArgKind::kFiniteIn);
  s.dlo = lo;
  s.dhi = hi;
  s.hi_open = hi_open;
  return s;
}
inline ArgSpec Bool(const char* name) { return Spec(name, ArgKind::kBool); }
inline ArgSpec Text(const char* name) { return Spec(name, ArgKind::kString); }
// `expected` completes "argument 'x' must be ..., got "y"".
inline ArgSpec Enum(const char* name, std::vector<const char*> choices, const char* expected) {
  ArgSpec s = Spec(name, ArgKind::kEnum);
  s.choices = std::move(choices);
  s.expected = expected;
  return s;
}
inline ArgSpec IntList(const char* name, size_t max_rank, bool allow_negative = false) {
  ArgSpec s = Spec(name, ArgKind::kIntList);
  s.max_rank = max_rank;
  s.allow_negative = allow_negative;
  return s;
}
inline ArgSpec DTypeArg(const char* name) { return Spec(name, ArgKind::kDType); }
// `expected` completes "argument 'buffer' must be ...".
inline ArgSpec Buffer(const char* name, const char* expected) {
  ArgSpec s = Spec(name, ArgKind::kBuffer);
  s.expected = expected;
  return s;
}

// The most arguments one export may declare (the parsed values live on the stack); RegisterOps
// refuses a table that declares more, or more strings or integer lists than Call holds.
constexpr size_t kMaxOpArgs = 20, kMaxOpStrings = 2, kMaxOpLists = 6;

class Call;
using OpImpl = Napi::Value (*)(Call&);

// One exported function.
struct OpDef {
  const char* name;           // the JS export
  std::vector<ArgSpec> args;  // in call order
  OpImpl impl;
  const char* op = nullptr;   // the name errors start with, when it differs from `name`
  const char* same_type_what = "float arrays";  // names the shared-type arrays in a mismatch error
};

// A call whose arguments have been checked against its OpDef. Accessors take the argument's name
// (a name the OpDef does not declare is a bug, reported as an Error naming both).
class Call : public Args {
 public:
  Call(const Napi::CallbackInfo& info, const OpDef& def);

  const Napi::CallbackInfo& info() const { return cb_; }
  const OpDef& def() const { return def_; }

  bool has(const char* name) const;               // present: neither left out nor null/undefined where allowed
  const AnyArray& arr(const char* name) const;    // any array kind
  template <class T>
  T* data(const char* name) const { return static_cast<T*>(arr(name).data); }
  int64_t len(const char* name) const { return static_cast<int64_t>(arr(name).length); }
  int64_t i(const char* name) const;              // kInt, kDType (code)
  double num(const char* name) const;             // kNumber, kFiniteIn; 0 when absent
  bool flag(const char* name) const;              // kBool
  const std::string& str(const char* name) const; // kString, kEnum
  const std::vector<int64_t>& list(const char* name) const;  // kIntList
  DType dtype(const char* name) const { return static_cast<DType>(i(name)); }
  Napi::Value value(const char* name) const;      // the raw JS value
  size_t index(const char* name) const;           // position in the call

  // The shared type of the call's kFloatArray / kSameArray arguments (f32 when there are none).
  napi_typedarray_type shared_type() const { return shared_type_; }
  bool is_f32() const { return shared_type_ == napi_float32_array; }
  template <class F>
  void dispatch_float(F&& fn) const { DispatchFloat(is_f32(), fn); }

 private:
  // Plain values per argument; strings and integer lists (few per op) live in their own pools, so
  // a call constructs no string or vector it does not use.
  struct Slot {
    bool present = false;
    AnyArray arr{nullptr, 0, napi_float32_array};
    int64_t i = 0;  // kInt, kDType; kString/kEnum/kIntList: index into strs_/lists_
    double d = 0;
    bool b = false;
  };
  const Slot& slot(const char* name, ArgKind k1, ArgKind k2 = ArgKind::kBuffer, ArgKind k3 = ArgKind::kBuffer,
                   ArgKind k4 = ArgKind::kBuffer) const;
  void parse(size_t i, const ArgSpec& s, Slot& out);

  const Napi::CallbackInfo& cb_;
  const OpDef& def_;
  std::array<Slot, kMaxOpArgs> slots_;
  std::array<std::string, kMaxOpStrings> strs_;
  std::array<std::vector<int64_t>, kMaxOpLists> lists_;
  size_t n_strs_ = 0, n_lists_ = 0;
  napi_typedarray_type shared_type_ = napi_float32_array;
  const char* shared_first_ = nullptr;
};

// The array `name` of type T holding exactly `need` elements (napi_util.h's ExactArray, by name):
// "argument 'scales' holds 12 elements, expected groups × outFeatures = 3 × 5 = 15".
template <class T>
T* ExactArray(const Call& a, const char* name, int64_t need, const std::string& what) {
  return ExactArray<T>(static_cast<const Args&>(a), a.index(name), name, need, what);
}

// Exports every entry of `table` (which must outlive the addon: a function-local static).
void RegisterOps(Napi::Env env, Napi::Object exports, const std::vector<OpDef>& table);

// "(x, outer, n, inner, y)": the signature of an op for messages; omittable arguments end in '?'.
std::string Signature(const OpDef& def);

}  // namespace modulora
