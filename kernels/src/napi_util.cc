#include "napi_util.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace modulora {

const char* DTypeName(DType d) {
  static const char* names[kNumDTypes] = {"f32", "f64", "bf16", "f16", "i32", "i8", "u8", "u32"};
  int i = static_cast<int>(d);
  return (i >= 0 && i < kNumDTypes) ? names[i] : "?";
}

size_t DTypeSize(DType d) {
  static const size_t sizes[kNumDTypes] = {4, 8, 2, 2, 4, 1, 1, 4};
  return sizes[static_cast<int>(d)];
}

napi_typedarray_type DTypeArrayType(DType d) {
  static const napi_typedarray_type types[kNumDTypes] = {
      napi_float32_array, napi_float64_array, napi_uint16_array, napi_uint16_array,
      napi_int32_array,   napi_int8_array,    napi_uint8_array,  napi_uint32_array};
  return types[static_cast<int>(d)];
}

const char* TypedArrayTypeName(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "unknown typed array";
  }
}

std::string NumStr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[40];
  if (std::floor(v) == v && std::fabs(v) < 1e21) {  // integers in full, as JS prints them
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int prec = 1; prec <= 17; prec++) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

int64_t CheckedProduct(const Args& a, std::initializer_list<int64_t> dims, const std::string& what) {
  constexpr int64_t kMax = int64_t{1} << 53;
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d == 0) return 0;
  }
  for (int64_t d : dims) {
    if (__builtin_mul_overflow(n, d, &n) || n > kMax) a.failRange(what + " has more than 2^53 elements");
  }
  return n;
}

void Args::fail(const std::string& msg) const {
  throw Napi::TypeError::New(env_, std::string(op_) + ": " + msg);
}

void Args::failRange(const std::string& msg) const {
  throw Napi::RangeError::New(env_, std::string(op_) + ": " + msg);
}

static std::string Describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return "number";
  if (v.IsBoolean()) return "boolean";
  if (v.IsString()) return "string";
  if (v.IsTypedArray()) return TypedArrayTypeName(v.As<Napi::TypedArray>().TypedArrayType());
  if (v.IsArrayBuffer()) return "ArrayBuffer";
  if (v.IsArray()) return "Array";
  if (v.IsFunction()) return "function";
  return "object";
}

int64_t Args::integer(size_t i, const char* name, int64_t lo, int64_t hi) const {
  Napi::Value v = info_[i];
  if (!v.IsNumber()) fail(std::string("argument '") + name + "' must be an integer, got " + Describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) {
    fail(std::string("argument '") + name + "' must be an integer, got " + std::to_string(d));
  }
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    failRange(std::string("argument '") + name + "' = " + std::to_string(static_cast<int64_t>(d)) +
              " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int64_t>(d);
}

double Args::number(size_t i, const char* name) const {
  Napi::Value v = info_[i];
  if (!v.IsNumber()) fail(std::string("argument '") + name + "' must be a number, got " + Describe(v));
  return v.As<Napi::Number>().DoubleValue();
}

bool Args::boolean(size_t i, const char* name) const {
  Napi::Value v = info_[i];
  if (!v.IsBoolean()) fail(std::string("argument '") + name + "' must be a boolean, got " + Describe(v));
  return v.As<Napi::Boolean>().Value();
}

std::string Args::string(size_t i, const char* name) const {
  Napi::Value v = info_[i];
  if (!v.IsString()) fail(std::string("argument '") + name + "' must be a string, got " + Describe(v));
  return v.As<Napi::String>().Utf8Value();
}

DType Args::dtype(size_t i, const char* name) const {
  int64_t c = integer(i, name, 0, kNumDTypes - 1);
  return static_cast<DType>(c);
}

std::vector<int64_t> Args::intList(size_t i, const char* name, size_t maxRank, bool allowNegative) const {
  Napi::Value v = info_[i];
  std::vector<int64_t> out;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    out.assign(a.Data(), a.Data() + a.ElementLength());
  } else if (v.IsArray()) {
    Napi::Array a = v.As<Napi::Array>();
    out.reserve(a.Length());
    for (uint32_t k = 0; k < a.Length(); k++) {
      Napi::Value e = a.Get(k);
      if (!e.IsNumber()) fail(std::string("argument '") + name + "' must hold integers, element " + std::to_string(k) + " is " + Describe(e));
      double d = e.As<Napi::Number>().DoubleValue();
      if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9.0e15) {
        fail(std::string("argument '") + name + "' must hold integers, element " + std::to_string(k) + " = " + std::to_string(d));
      }
      out.push_back(static_cast<int64_t>(d));
    }
  } else {
    fail(std::string("argument '") + name + "' must be an array of integers or an Int32Array, got " + Describe(v));
  }
  if (out.size() > maxRank) {
    failRange(std::string("argument '") + name + "' has " + std::to_string(out.size()) + " entries, at most " + std::to_string(maxRank) + " are supported");
  }
  if (!allowNegative) {
    for (size_t k = 0; k < out.size(); k++) {
      if (out[k] < 0) failRange(std::string("argument '") + name + "' entry " + std::to_string(k) + " is negative (" + std::to_string(out[k]) + ")");
    }
  }
  return out;
}

Args::AnyArray Args::anyArray(size_t i, const char* name) const {
  Napi::Value v = info_[i];
  if (!v.IsTypedArray()) {
    fail(std::string("argument '") + name + "' (index " + std::to_string(i) + ") must be a typed array, got " + Describe(v));
  }
  Napi::TypedArray t = v.As<Napi::TypedArray>();
  Napi::ArrayBuffer buf = t.ArrayBuffer();
  if (buf.ByteLength() == 0 && t.ElementLength() == 0 && buf.IsDetached()) {
    fail(std::string("argument '") + name + "' refers to released (disposed) storage");
  }
  uint8_t* base = static_cast<uint8_t*>(buf.Data());
  return AnyArray{base + t.ByteOffset(), t.ElementLength(), t.TypedArrayType()};
}

void* Args::arrayOf(size_t i, const char* name, DType d, size_t minLength) const {
  AnyArray a = anyArray(i, name);
  if (a.type != DTypeArrayType(d)) {
    fail(std::string("argument '") + name + "' must be a " + TypedArrayTypeName(DTypeArrayType(d)) + " for dtype " +
         DTypeName(d) + ", got " + TypedArrayTypeName(a.type));
  }
  if (a.length < minLength) {
    failRange(std::string("argument '") + name + "' holds " + std::to_string(a.length) +
              " elements but the call needs at least " + std::to_string(minLength));
  }
  return a.data;
}

}  // namespace modulora
