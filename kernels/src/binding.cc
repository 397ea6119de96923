#include "binding.h"

#include <cmath>
#include <cstring>

namespace modulora {
namespace {

// What the layer's argument checks say about a bound: "in [0, 1)", ">= 0", "> -Infinity".
std::string BoundsText(const ArgSpec& s) {
  const bool lo_inf = std::isinf(s.dlo), hi_inf = std::isinf(s.dhi);
  if (lo_inf && hi_inf) return "";
  if (hi_inf) return " >= " + NumStr(s.dlo);
  if (lo_inf) return std::string(s.hi_open ? " < " : " <= ") + NumStr(s.dhi);
  return " in [" + NumStr(s.dlo) + ", " + NumStr(s.dhi) + (s.hi_open ? ")" : "]");
}

// Throws "argument 'x' (index 2) must be a Float32Array or Float64Array, got Int32Array".
void RequireFloatArray(const Args& a, size_t i, const char* name, const Args::AnyArray& arr) {
  if (arr.type != napi_float32_array && arr.type != napi_float64_array) {
    a.fail(std::string("argument '") + name + "' (index " + std::to_string(i) +
           ") must be a Float32Array or Float64Array, got " + TypedArrayTypeName(arr.type));
  }
}

bool IsArrayKind(ArgKind k) {
  return k == ArgKind::kFloatArray || k == ArgKind::kSameArray || k == ArgKind::kTypedArray || k == ArgKind::kAnyArray;
}

Napi::Value Invoke(const Napi::CallbackInfo& info) {
  const OpDef& def = *static_cast<const OpDef*>(info.Data());
  Call call(info, def);
  return def.impl(call);
}

}  // namespace

std::string Signature(const OpDef& def) {
  std::string s = "(";
  for (size_t i = 0; i < def.args.size(); i++) {
    s += (i ? ", " : "") + std::string(def.args[i].name) + (def.args[i].may_be_missing ? "?" : "");
  }
  return s + ")";
}

Call::Call(const Napi::CallbackInfo& info, const OpDef& def)
    : Args(info, def.op ? def.op : def.name), cb_(info), def_(def) {
  size_t required = def.args.size();
  while (required > 0 && def.args[required - 1].may_be_missing) required--;
  const size_t n = info.Length(), total = def.args.size();
  if (n < required || n > total) {
    std::string counts = std::to_string(required);
    if (total == required + 1) counts += " or " + std::to_string(total);
    else if (total > required) counts += " to " + std::to_string(total);
    fail("expected " + counts + " arguments " + Signature(def) + ", got " + std::to_string(n));
  }
  for (size_t i = 0; i < total; i++) parse(i, def.args[i], slots_[i]);
}

void Call::parse(size_t i, const ArgSpec& s, Slot& out) {
  if (i >= cb_.Length()) return;  // an omitted trailing argument
  const Napi::Value v = cb_[i];
  if ((s.undefined_absent && v.IsUndefined()) || (s.null_absent && v.IsNull())) return;
  out.present = true;
  switch (s.kind) {
    case ArgKind::kFloatArray:
    case ArgKind::kSameArray: {
      out.arr = anyArray(i, s.name);
      if (s.kind == ArgKind::kFloatArray) RequireFloatArray(*this, i, s.name, out.arr);
      if (!shared_first_) {
        shared_first_ = s.name;
        shared_type_ = out.arr.type;
      } else if (out.arr.type != shared_type_) {
        fail(std::string("argument '") + s.name + "' is a " + TypedArrayTypeName(out.arr.type) + " but '" +
             shared_first_ + "' is a " + TypedArrayTypeName(shared_type_) + "; all " + def_.same_type_what +
             " of one call must have the same type");
      }
      break;
    }
    case ArgKind::kTypedArray:
      out.arr = anyArray(i, s.name);
      if (out.arr.type != s.type) {
        fail(std::string("argument '") + s.name + "' (index " + std::to_string(i) + ") must be a " +
             TypedArrayTypeName(s.type) + ", got " + TypedArrayTypeName(out.arr.type));
      }
      break;
    case ArgKind::kAnyArray: out.arr = anyArray(i, s.name); break;
    case ArgKind::kInt: out.i = integer(i, s.name, s.lo, s.hi); break;
    case ArgKind::kDType: out.i = static_cast<int64_t>(Args::dtype(i, s.name)); break;
    case ArgKind::kNumber: out.d = number(i, s.name); break;
    case ArgKind::kFiniteIn: {
      out.d = number(i, s.name);
      const double x = out.d;
      if (std::isfinite(x) && x >= s.dlo && (s.hi_open ? x < s.dhi : x <= s.dhi)) break;
      const std::string bounds = BoundsText(s);
      if (bounds.empty()) failRange(std::string("argument '") + s.name + "' must be finite, got " + NumStr(x));
      failRange(std::string("argument '") + s.name + "' = " + NumStr(x) + " must be a finite number" + bounds);
    }
    case ArgKind::kBool: out.b = boolean(i, s.name); break;
    case ArgKind::kString:
    case ArgKind::kEnum: {
      out.i = static_cast<int64_t>(n_strs_);
      std::string& str = strs_[n_strs_++];
      str = string(i, s.name);
      if (s.kind == ArgKind::kString) break;
      bool ok = false;
      for (const char* c : s.choices) ok = ok || str == c;
      if (!ok) failRange(std::string("argument '") + s.name + "' must be " + s.expected + ", got \"" + str + "\"");
      break;
    }
    case ArgKind::kIntList:
      out.i = static_cast<int64_t>(n_lists_);
      lists_[n_lists_++] = intList(i, s.name, s.max_rank, s.allow_negative);
      break;
    case ArgKind::kBuffer:
      if (!v.IsArrayBuffer()) fail(std::string("argument '") + s.name + "' must be " + s.expected);
      break;
  }
}

size_t Call::index(const char* name) const {
  for (size_t i = 0; i < def_.args.size(); i++) {
    if (std::strcmp(def_.args[i].name, name) == 0) return i;
  }
  throw Napi::Error::New(env(), std::string(op()) + ": internal error: the binding reads an argument '" + name +
                                    "' that its table does not declare");
}

const Call::Slot& Call::slot(const char* name, ArgKind k1, ArgKind k2, ArgKind k3, ArgKind k4) const {
  const size_t i = index(name);
  const ArgKind k = def_.args[i].kind;
  if (k != k1 && k != k2 && k != k3 && k != k4) {
    throw Napi::Error::New(env(), std::string(op()) + ": internal error: argument '" + name +
                                      "' is read as another kind than its table declares");
  }
  return slots_[i];
}

bool Call::has(const char* name) const { return slots_[index(name)].present; }

const Args::AnyArray& Call::arr(const char* name) const {
  const size_t i = index(name);
  if (!IsArrayKind(def_.args[i].kind)) {
    throw Napi::Error::New(env(), std::string(op()) + ": internal error: argument '" + name + "' is not an array");
  }
  return slots_[i].arr;
}

int64_t Call::i(const char* name) const { return slot(name, ArgKind::kInt, ArgKind::kDType).i; }
double Call::num(const char* name) const { return slot(name, ArgKind::kNumber, ArgKind::kFiniteIn).d; }
bool Call::flag(const char* name) const { return slot(name, ArgKind::kBool).b; }
// An absent string or list reads as empty.
const std::string& Call::str(const char* name) const {
  const Slot& s = slot(name, ArgKind::kString, ArgKind::kEnum);
  static const std::string kEmpty;
  return s.present ? strs_[static_cast<size_t>(s.i)] : kEmpty;
}
const std::vector<int64_t>& Call::list(const char* name) const {
  const Slot& s = slot(name, ArgKind::kIntList);
  static const std::vector<int64_t> kEmpty;
  return s.present ? lists_[static_cast<size_t>(s.i)] : kEmpty;
}

Napi::Value Call::value(const char* name) const {
  const size_t i = index(name);
  return i < cb_.Length() ? cb_[i] : env().Undefined();
}

void RegisterOps(Napi::Env env, Napi::Object exports, const std::vector<OpDef>& table) {
  for (const OpDef& def : table) {
    size_t strings = 0, lists = 0;
    for (const ArgSpec& a : def.args) {
      strings += a.kind == ArgKind::kString || a.kind == ArgKind::kEnum;
      lists += a.kind == ArgKind::kIntList;
    }
    if (def.args.size() > kMaxOpArgs || strings > kMaxOpStrings || lists > kMaxOpLists) {
      throw Napi::Error::New(env, std::string(def.name) + ": declares " + std::to_string(def.args.size()) +
                                      " arguments (" + std::to_string(strings) + " strings, " + std::to_string(lists) +
                                      " integer lists); Call holds at most " + std::to_string(kMaxOpArgs) + " (" +
                                      std::to_string(kMaxOpStrings) + ", " + std::to_string(kMaxOpLists) + ")");
    }
    exports.Set(def.name, Napi::Function::New(env, Invoke, def.name, const_cast<OpDef*>(&def)));
  }
}

}  // namespace modulora
