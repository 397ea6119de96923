// Bindings of the element-wise, reduction, copy, cast and gather kernels (src/cpu/elementwise.h).
//
// Every argument is checked here, before any kernel runs: array types (all float arrays of one call
// share Float32Array or Float64Array), shape/stride ranks, non-negative dims and strides, and that
// each array holds the furthest element that its shape and strides address. Errors name the op and
// the argument, e.g. "binary: argument 'b' needs 60 elements for shape [3,4,5] with strides
// [20,5,1] but holds 59". The kernels themselves then trust their inputs.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cpu/elementwise.h"
#include "napi_util.h"

namespace modulora {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 53;  // larger counts are a bug upstream (and lose precision in JS)
using Shape = std::vector<int64_t>;

// Shortest decimal that reads back as the same double; NaN and Infinity spelled as in JS.
std::string NumberStr(double v) {
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

const char* NameOf(const Args::AnyArray& arr) { return TypedArrayTypeName(arr.type); }

size_t ElementSize(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: return 1;
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    default: return 8;
  }
}

// The array type of one call: every array must match the first one checked (and with
// `float_only` be a Float32Array or Float64Array).
class SameType : public SameTypeArrays {
 public:
  SameType(const Args& a, bool float_only) : SameTypeArrays(a, float_only, "arrays") {}
};

// Product of the dims, refusing counts beyond 2^53.
int64_t Numel(const Args& a, const Shape& shape, const char* name) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d == 0) return 0;
  }
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n) || n > kMaxElements) {
      a.failRange(std::string("argument '") + name + "' = " + ListStr(shape) + " has more than 2^53 elements");
    }
  }
  return n;
}

void SameRank(const Args& a, const Shape& shape, const Shape& strides, const char* name) {
  if (strides.size() != shape.size()) {
    a.failRange(std::string("argument '") + name + "' = " + ListStr(strides) + " has " +
                std::to_string(strides.size()) + " entries but shape " + ListStr(shape) + " has rank " +
                std::to_string(shape.size()));
  }
}

// Elements a view needs: 1 + the offset of its furthest element, or 0 for an empty view.
int64_t Extent(const Args& a, const Shape& shape, const Shape& strides, const char* name) {
  int64_t last = 0;
  for (size_t i = 0; i < shape.size(); i++) {
    if (shape[i] == 0) return 0;
  }
  for (size_t i = 0; i < shape.size(); i++) {
    int64_t span;
    if (__builtin_mul_overflow(shape[i] - 1, strides[i], &span) || __builtin_add_overflow(last, span, &last) ||
        last >= kMaxElements) {
      a.failRange(std::string("argument '") + name + "' = " + ListStr(strides) + " addresses more than 2^53 elements for shape " + ListStr(shape));
    }
  }
  return last + 1;
}

// A strided view of `arr`: the strides' rank must match, and the array must reach its furthest element.
void CheckView(const Args& a, const Args::AnyArray& arr, const char* name, const Shape& shape, const Shape& strides,
               const char* strides_name) {
  SameRank(a, shape, strides, strides_name);
  const int64_t need = Extent(a, shape, strides, strides_name);
  if (static_cast<int64_t>(arr.length) < need) {
    a.failRange(std::string("argument '") + name + "' needs " + std::to_string(need) + " elements for shape " +
                ListStr(shape) + " with strides " + ListStr(strides) + " but holds " + std::to_string(arr.length));
  }
}

// Optional trailing number argument (undefined or missing -> 0).
double OptionalNumber(const Napi::CallbackInfo& info, const Args& a, size_t i, const char* name) {
  if (info.Length() <= i || info[i].IsUndefined()) return 0.0;
  return a.number(i, name);
}

void CountBetween(const Args& a, size_t lo, size_t hi, const char* signature) {
  if (a.count() < lo || a.count() > hi) {
    a.fail(std::string("expected ") + std::to_string(lo) + " or " + std::to_string(hi) + " arguments " + signature +
           ", got " + std::to_string(a.count()));
  }
}

// --- binary(op, shape, a, aStrides, b, bStrides, out) ----------------------------------------------
Napi::Value Binary(const Napi::CallbackInfo& info) {
  Args a(info, "binary");
  a.expectCount(7, "(op, shape, a, aStrides, b, bStrides, out)");
  const auto op = static_cast<BinaryOp>(a.integer(0, "op", 0, kNumBinaryOps - 1));
  const Shape shape = a.intList(1, "shape", kMaxRank, false);
  SameType types(a, true);
  const auto x = types.get(2, "a");
  const Shape xs = a.intList(3, "aStrides", kMaxRank, false);
  const auto y = types.get(4, "b");
  const Shape ys = a.intList(5, "bStrides", kMaxRank, false);
  const auto out = types.get(6, "out");
  const int64_t n = Numel(a, shape, "shape");
  CheckView(a, x, "a", shape, xs, "aStrides");
  CheckView(a, y, "b", shape, ys, "bStrides");
  NeedLength(a, out, "out", n, "contiguous output of shape " + ListStr(shape));
  const int r = static_cast<int>(shape.size());
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    binary_kernel<T>(op, r, shape.data(), static_cast<const T*>(x.data), xs.data(), static_cast<const T*>(y.data),
                     ys.data(), static_cast<T*>(out.data));
  });
  return info.Env().Undefined();
}

// --- unary(op, x, out, param?) ------------------------------------------------------------------
Napi::Value Unary(const Napi::CallbackInfo& info) {
  Args a(info, "unary");
  CountBetween(a, 3, 4, "(op, x, out, param)");
  const auto op = static_cast<UnaryOp>(a.integer(0, "op", 0, kNumUnaryOps - 1));
  SameType types(a, true);
  const auto x = types.get(1, "x");
  const auto out = types.get(2, "out");
  SameLength(a, out, "out", x, "x");
  const double param = OptionalNumber(info, a, 3, "param");
  const auto n = static_cast<int64_t>(x.length);
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    unary_kernel<T>(op, static_cast<const T*>(x.data), static_cast<T*>(out.data), n, param);
  });
  return info.Env().Undefined();
}

// --- affine(x, alpha, beta, out) ----------------------------------------------------------------
Napi::Value Affine(const Napi::CallbackInfo& info) {
  Args a(info, "affine");
  a.expectCount(4, "(x, alpha, beta, out)");
  SameType types(a, true);
  const auto x = types.get(0, "x");
  const double alpha = a.number(1, "alpha"), beta = a.number(2, "beta");
  const auto out = types.get(3, "out");
  SameLength(a, out, "out", x, "x");
  const auto n = static_cast<int64_t>(x.length);
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    affine_kernel<T>(static_cast<const T*>(x.data), alpha, beta, static_cast<T*>(out.data), n);
  });
  return info.Env().Undefined();
}

// --- unaryGrad(op, x, y, dy, dx, param?) ----------------------------------------------------------
Napi::Value UnaryGrad(const Napi::CallbackInfo& info) {
  Args a(info, "unaryGrad");
  CountBetween(a, 5, 6, "(op, x, y, dy, dx, param)");
  const auto op = static_cast<UnaryOp>(a.integer(0, "op", 0, kNumUnaryOps - 1));
  SameType types(a, true);
  const auto x = types.get(1, "x");
  const auto y = types.get(2, "y");
  const auto dy = types.get(3, "dy");
  const auto dx = types.get(4, "dx");
  SameLength(a, y, "y", x, "x");
  SameLength(a, dy, "dy", x, "x");
  SameLength(a, dx, "dx", x, "x");
  const double param = OptionalNumber(info, a, 5, "param");
  const auto n = static_cast<int64_t>(x.length);
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    unary_grad_kernel<T>(op, static_cast<const T*>(x.data), static_cast<const T*>(y.data),
                         static_cast<const T*>(dy.data), static_cast<T*>(dx.data), n, param);
  });
  return info.Env().Undefined();
}

// --- reduce(op, shape, x, xStrides, axes, out) ---------------------------------------------------
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  static const char* kNames[kNumReduceOps] = {"sum", "max", "min"};
  Args a(info, "reduce");
  a.expectCount(6, "(op, shape, x, xStrides, axes, out)");
  const int op_code = static_cast<int>(a.integer(0, "op", 0, kNumReduceOps - 1));
  const Shape shape = a.intList(1, "shape", kMaxRank, false);
  SameType types(a, true);
  const auto x = types.get(2, "x");
  const Shape xs = a.intList(3, "xStrides", kMaxRank, false);
  const Shape axes = a.intList(4, "axes", kMaxRank, true);
  const auto out = types.get(5, "out");
  Numel(a, shape, "shape");
  CheckView(a, x, "x", shape, xs, "xStrides");
  const auto rank = static_cast<int64_t>(shape.size());
  bool reduce_axis[kMaxRank] = {};
  for (int64_t ax : axes) {
    if (ax < 0 || ax >= rank) {
      a.failRange("axis " + std::to_string(ax) + " in 'axes' " + ListStr(axes) + " is out of range for shape " +
                  ListStr(shape) + " (rank " + std::to_string(rank) + ")");
    }
    if (reduce_axis[ax]) a.failRange("axis " + std::to_string(ax) + " appears twice in 'axes' " + ListStr(axes));
    reduce_axis[ax] = true;
  }
  int64_t kept = 1;
  for (int64_t i = 0; i < rank; i++) {
    if (!reduce_axis[i]) kept *= shape[i];
    if (reduce_axis[i] && shape[i] == 0 && op_code != static_cast<int>(ReduceOp::Sum)) {
      a.failRange(std::string(kNames[op_code]) + " of zero elements: axis " + std::to_string(i) + " of shape " +
                  ListStr(shape) + " has size 0");
    }
  }
  NeedLength(a, out, "out", kept, "the kept axes of shape " + ListStr(shape) + " reducing " + ListStr(axes));
  const auto op = static_cast<ReduceOp>(op_code);
  const int r = static_cast<int>(rank);
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    reduce_kernel<T>(op, r, shape.data(), static_cast<const T*>(x.data), xs.data(), reduce_axis,
                     static_cast<T*>(out.data));
  });
  return info.Env().Undefined();
}

// --- copyStrided(shape, src, srcStrides, dst, dstStrides) ------------------------------------------
Napi::Value CopyStrided(const Napi::CallbackInfo& info) {
  Args a(info, "copyStrided");
  a.expectCount(5, "(shape, src, srcStrides, dst, dstStrides)");
  const Shape shape = a.intList(0, "shape", kMaxRank, false);
  SameType types(a, false);
  const auto src = types.get(1, "src");
  const Shape ss = a.intList(2, "srcStrides", kMaxRank, false);
  const auto dst = types.get(3, "dst");
  const Shape ds = a.intList(4, "dstStrides", kMaxRank, false);
  Numel(a, shape, "shape");
  CheckView(a, src, "src", shape, ss, "srcStrides");
  CheckView(a, dst, "dst", shape, ds, "dstStrides");
  for (size_t i = 0; i < shape.size(); i++) {
    if (ds[i] == 0 && shape[i] > 1) {
      a.failRange("argument 'dstStrides' = " + ListStr(ds) + " has stride 0 on axis " + std::to_string(i) +
                  " of size " + std::to_string(shape[i]) + " (shape " + ListStr(shape) +
                  "): the destination would be written more than once");
    }
  }
  copy_strided_kernel(ElementSize(src.type), static_cast<int>(shape.size()), shape.data(), src.data, ss.data(),
                      dst.data, ds.data());
  return info.Env().Undefined();
}

// --- cast(src, srcDtype, dst, dstDtype, n) ---------------------------------------------------------
Napi::Value Cast(const Napi::CallbackInfo& info) {
  Args a(info, "cast");
  a.expectCount(5, "(src, srcDtype, dst, dstDtype, n)");
  const DType sd = a.dtype(1, "srcDtype"), dd = a.dtype(3, "dstDtype");
  const int64_t n = a.integer(4, "n", 0, kMaxElements);
  const void* src = a.arrayOf(0, "src", sd, static_cast<size_t>(n));
  void* dst = a.arrayOf(2, "dst", dd, static_cast<size_t>(n));
  const int st = static_cast<int>(sd), dt = static_cast<int>(dd);
  const int64_t bad = cast_check(src, st, dt, n);
  if (bad >= 0) {
    a.failRange("element " + std::to_string(bad) + " of 'src' (" + NumberStr(cast_load(src, st, bad)) + ", " +
                DTypeName(sd) + ") cannot be converted to " + DTypeName(dd) +
                ": NaN, infinities and values out of range after truncation toward zero are rejected");
  }
  cast_kernel(src, st, dst, dt, n);
  return info.Env().Undefined();
}

// Checks idx[0..m) against [0, n); the error names the first bad position and its value.
void CheckIndices(const Args& a, const int32_t* idx, int64_t m, int64_t n) {
  for (int64_t j = 0; j < m; j++) {
    if (idx[j] < 0 || idx[j] >= n) {
      a.failRange("idx[" + std::to_string(j) + "] = " + std::to_string(idx[j]) + " is out of range for n = " +
                  std::to_string(n) + (n > 0 ? " (valid: 0.." + std::to_string(n - 1) + ")" : " (no valid index)"));
    }
  }
}

int64_t Product3(const Args& a, int64_t x, int64_t y, int64_t z, const char* what) {
  int64_t p;
  if (__builtin_mul_overflow(x, y, &p) || __builtin_mul_overflow(p, z, &p) || p > kMaxElements) {
    a.failRange(std::string(what) + " has more than 2^53 elements");
  }
  return p;
}

std::string Dims3(int64_t x, int64_t y, int64_t z) {
  return "[" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + "]";
}

// --- gather(src, outer, n, inner, idx, out) ----------------------------------------------------------
Napi::Value Gather(const Napi::CallbackInfo& info) {
  Args a(info, "gather");
  a.expectCount(6, "(src, outer, n, inner, idx, out)");
  SameType types(a, false);
  const auto src = types.get(0, "src");
  const int64_t outer = a.integer(1, "outer", 0, kMaxElements);
  const int64_t n = a.integer(2, "n", 0, kMaxElements);
  const int64_t inner = a.integer(3, "inner", 0, kMaxElements);
  const int32_t* idx = a.array<int32_t>(4, "idx", 0);
  const auto m = static_cast<int64_t>(a.anyArray(4, "idx").length);
  const auto out = types.get(5, "out");
  NeedLength(a, src, "src", Product3(a, outer, n, inner, "src"), "shape [outer, n, inner] = " + Dims3(outer, n, inner));
  NeedLength(a, out, "out", Product3(a, outer, m, inner, "out"), "shape [outer, m, inner] = " + Dims3(outer, m, inner));
  CheckIndices(a, idx, m, n);
  gather_kernel(ElementSize(src.type), src.data, outer, n, inner, idx, m, out.data);
  return info.Env().Undefined();
}

// --- scatterAdd(src, outer, m, inner, idx, out, n) ---------------------------------------------------
Napi::Value ScatterAdd(const Napi::CallbackInfo& info) {
  Args a(info, "scatterAdd");
  a.expectCount(7, "(src, outer, m, inner, idx, out, n)");
  SameType types(a, true);
  const auto src = types.get(0, "src");
  const int64_t outer = a.integer(1, "outer", 0, kMaxElements);
  const int64_t m = a.integer(2, "m", 0, kMaxElements);
  const int64_t inner = a.integer(3, "inner", 0, kMaxElements);
  const int32_t* idx = a.array<int32_t>(4, "idx", 0);
  const auto idx_len = static_cast<int64_t>(a.anyArray(4, "idx").length);
  const auto out = types.get(5, "out");
  const int64_t n = a.integer(6, "n", 0, kMaxElements);
  if (idx_len != m) {
    a.failRange("argument 'idx' holds " + std::to_string(idx_len) + " indices but m = " + std::to_string(m));
  }
  NeedLength(a, src, "src", Product3(a, outer, m, inner, "src"), "shape [outer, m, inner] = " + Dims3(outer, m, inner));
  NeedLength(a, out, "out", Product3(a, outer, n, inner, "out"), "shape [outer, n, inner] = " + Dims3(outer, n, inner));
  CheckIndices(a, idx, m, n);
  DispatchFloat(types.is_f32(), [&](auto t) {
    using T = decltype(t);
    scatter_add_kernel<T>(static_cast<const T*>(src.data), outer, m, inner, idx, static_cast<T*>(out.data), n);
  });
  return info.Env().Undefined();
}

// --- fill(dst, value) ---------------------------------------------------------------------------
Napi::Value Fill(const Napi::CallbackInfo& info) {
  Args a(info, "fill");
  a.expectCount(2, "(dst, value)");
  const auto dst = a.anyArray(0, "dst");
  const double v = a.number(1, "value");
  const auto n = static_cast<int64_t>(dst.length);
  auto integral = [&](double lo, double hi) {
    if (!(std::floor(v) == v && v >= lo && v <= hi)) {
      a.failRange("value " + NumberStr(v) + " cannot be stored in a " + NameOf(dst) + " (integers in [" +
                  NumberStr(lo) + ", " + NumberStr(hi) + "])");
    }
  };
  switch (dst.type) {
    case napi_float32_array: { const float f = static_cast<float>(v); fill_kernel(dst.data, 4, n, &f); break; }
    case napi_float64_array: fill_kernel(dst.data, 8, n, &v); break;
    case napi_int8_array: { integral(-128, 127); const auto e = static_cast<int8_t>(v); fill_kernel(dst.data, 1, n, &e); break; }
    case napi_uint8_array:
    case napi_uint8_clamped_array: { integral(0, 255); const auto e = static_cast<uint8_t>(v); fill_kernel(dst.data, 1, n, &e); break; }
    case napi_int16_array: { integral(-32768, 32767); const auto e = static_cast<int16_t>(v); fill_kernel(dst.data, 2, n, &e); break; }
    case napi_uint16_array: { integral(0, 65535); const auto e = static_cast<uint16_t>(v); fill_kernel(dst.data, 2, n, &e); break; }
    case napi_int32_array: { integral(-2147483648.0, 2147483647.0); const auto e = static_cast<int32_t>(v); fill_kernel(dst.data, 4, n, &e); break; }
    case napi_uint32_array: { integral(0, 4294967295.0); const auto e = static_cast<uint32_t>(v); fill_kernel(dst.data, 4, n, &e); break; }
    default: a.fail(std::string("argument 'dst' must not be a ") + NameOf(dst) + " (BigInt arrays are not supported)");
  }
  return info.Env().Undefined();
}

// --- countNonFinite(x) ----------------------------------------------------------------------------
Napi::Value CountNonFinite(const Napi::CallbackInfo& info) {
  Args a(info, "countNonFinite");
  a.expectCount(1, "(x)");
  SameType types(a, true);
  const auto x = types.get(0, "x");
  const auto n = static_cast<int64_t>(x.length);
  const int64_t c = types.is_f32() ? count_nonfinite_kernel<float>(static_cast<const float*>(x.data), n)
                                   : count_nonfinite_kernel<double>(static_cast<const double*>(x.data), n);
  return Napi::Number::New(info.Env(), static_cast<double>(c));
}

}  // namespace

void RegisterElementwise(Napi::Env env, Napi::Object exports) {
  exports.Set("binary", Napi::Function::New(env, Binary, "binary"));
  exports.Set("unary", Napi::Function::New(env, Unary, "unary"));
  exports.Set("affine", Napi::Function::New(env, Affine, "affine"));
  exports.Set("unaryGrad", Napi::Function::New(env, UnaryGrad, "unaryGrad"));
  exports.Set("reduce", Napi::Function::New(env, Reduce, "reduce"));
  exports.Set("copyStrided", Napi::Function::New(env, CopyStrided, "copyStrided"));
  exports.Set("cast", Napi::Function::New(env, Cast, "cast"));
  exports.Set("gather", Napi::Function::New(env, Gather, "gather"));
  exports.Set("scatterAdd", Napi::Function::New(env, ScatterAdd, "scatterAdd"));
  exports.Set("fill", Napi::Function::New(env, Fill, "fill"));
  exports.Set("countNonFinite", Napi::Function::New(env, CountNonFinite, "countNonFinite"));
}

}  // namespace modulora
