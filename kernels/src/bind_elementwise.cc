// Bindings of the element-wise, reduction, copy, cast and gather kernels (src/cpu/elementwise.h).
//
// Every argument is checked here, before any kernel runs: array types (all float arrays of one call
// share Float32Array or Float64Array), shape/stride ranks, non-negative dims and strides, and that
// each array holds the furthest element that its shape and strides address. Errors name the op and
// the argument, e.g. "binary: argument 'b' needs 60 elements for shape [3,4,5] with strides
// [20,5,1] but holds 59". The kernels themselves then trust their inputs.
#include <cmath>
#include <string>
#include <vector>

#include "binding.h"
#include "cpu/elementwise.h"

namespace modulora {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 53;  // larger counts are a bug upstream (and lose precision in JS)
using Shape = std::vector<int64_t>;

const char* NameOf(const Args::AnyArray& arr) { return TypedArrayTypeName(arr.type); }

size_t ElementSize(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: return 1;
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    default: return 8;
  }
}

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

// --- binary(op, shape, a, aStrides, b, bStrides, out) ----------------------------------------------
Napi::Value Binary(Call& a) {
  const auto op = static_cast<BinaryOp>(a.i("op"));
  const Shape& shape = a.list("shape");
  const auto x = a.arr("a");
  const Shape& xs = a.list("aStrides");
  const auto y = a.arr("b");
  const Shape& ys = a.list("bStrides");
  const auto out = a.arr("out");
  const int64_t n = Numel(a, shape, "shape");
  CheckView(a, x, "a", shape, xs, "aStrides");
  CheckView(a, y, "b", shape, ys, "bStrides");
  NeedLength(a, out, "out", n, "contiguous output of shape " + ListStr(shape));
  const int r = static_cast<int>(shape.size());
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    binary_kernel<T>(op, r, shape.data(), static_cast<const T*>(x.data), xs.data(), static_cast<const T*>(y.data),
                     ys.data(), static_cast<T*>(out.data));
  });
  return a.env().Undefined();
}

// --- unary(op, x, out, param?) ------------------------------------------------------------------
Napi::Value Unary(Call& a) {
  const auto op = static_cast<UnaryOp>(a.i("op"));
  const auto x = a.arr("x");
  const auto out = a.arr("out");
  SameLength(a, out, "out", x, "x");
  const double param = a.num("param");
  const auto n = static_cast<int64_t>(x.length);
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    unary_kernel<T>(op, static_cast<const T*>(x.data), static_cast<T*>(out.data), n, param);
  });
  return a.env().Undefined();
}

// --- affine(x, alpha, beta, out) ----------------------------------------------------------------
Napi::Value Affine(Call& a) {
  const auto x = a.arr("x");
  const double alpha = a.num("alpha"), beta = a.num("beta");
  const auto out = a.arr("out");
  SameLength(a, out, "out", x, "x");
  const auto n = static_cast<int64_t>(x.length);
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    affine_kernel<T>(static_cast<const T*>(x.data), alpha, beta, static_cast<T*>(out.data), n);
  });
  return a.env().Undefined();
}

// --- unaryGrad(op, x, y, dy, dx, param?) ----------------------------------------------------------
Napi::Value UnaryGrad(Call& a) {
  const auto op = static_cast<UnaryOp>(a.i("op"));
  const auto x = a.arr("x");
  const auto y = a.arr("y");
  const auto dy = a.arr("dy");
  const auto dx = a.arr("dx");
  SameLength(a, y, "y", x, "x");
  SameLength(a, dy, "dy", x, "x");
  SameLength(a, dx, "dx", x, "x");
  const double param = a.num("param");
  const auto n = static_cast<int64_t>(x.length);
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    unary_grad_kernel<T>(op, static_cast<const T*>(x.data), static_cast<const T*>(y.data),
                         static_cast<const T*>(dy.data), static_cast<T*>(dx.data), n, param);
  });
  return a.env().Undefined();
}

// --- reduce(op, shape, x, xStrides, axes, out) ---------------------------------------------------
Napi::Value Reduce(Call& a) {
  static const char* kNames[kNumReduceOps] = {"sum", "max", "min"};
  const int op_code = static_cast<int>(a.i("op"));
  const Shape& shape = a.list("shape");
  const auto x = a.arr("x");
  const Shape& xs = a.list("xStrides");
  const Shape& axes = a.list("axes");
  const auto out = a.arr("out");
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
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    reduce_kernel<T>(op, r, shape.data(), static_cast<const T*>(x.data), xs.data(), reduce_axis,
                     static_cast<T*>(out.data));
  });
  return a.env().Undefined();
}

// --- copyStrided(shape, src, srcStrides, dst, dstStrides) ------------------------------------------
Napi::Value CopyStrided(Call& a) {
  const Shape& shape = a.list("shape");
  const auto src = a.arr("src");
  const Shape& ss = a.list("srcStrides");
  const auto dst = a.arr("dst");
  const Shape& ds = a.list("dstStrides");
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
  return a.env().Undefined();
}

// --- cast(src, srcDtype, dst, dstDtype, n) ---------------------------------------------------------
Napi::Value Cast(Call& a) {
  const DType sd = a.dtype("srcDtype"), dd = a.dtype("dstDtype");
  const int64_t n = a.i("n");
  const void* src = a.arrayOf(a.index("src"), "src", sd, static_cast<size_t>(n));
  void* dst = a.arrayOf(a.index("dst"), "dst", dd, static_cast<size_t>(n));
  const int st = static_cast<int>(sd), dt = static_cast<int>(dd);
  const int64_t bad = cast_check(src, st, dt, n);
  if (bad >= 0) {
    a.failRange("element " + std::to_string(bad) + " of 'src' (" + NumStr(cast_load(src, st, bad)) + ", " +
                DTypeName(sd) + ") cannot be converted to " + DTypeName(dd) +
                ": NaN, infinities and values out of range after truncation toward zero are rejected");
  }
  cast_kernel(src, st, dst, dt, n);
  return a.env().Undefined();
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

std::string Dims3(int64_t x, int64_t y, int64_t z) {
  return "[" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + "]";
}

// --- gather(src, outer, n, inner, idx, out) ----------------------------------------------------------
Napi::Value Gather(Call& a) {
  const auto src = a.arr("src");
  const int64_t outer = a.i("outer");
  const int64_t n = a.i("n");
  const int64_t inner = a.i("inner");
  const int32_t* idx = a.data<int32_t>("idx");
  const int64_t m = a.len("idx");
  const auto out = a.arr("out");
  NeedLength(a, src, "src", CheckedProduct(a, {outer, n, inner}, "src"), "shape [outer, n, inner] = " + Dims3(outer, n, inner));
  NeedLength(a, out, "out", CheckedProduct(a, {outer, m, inner}, "out"), "shape [outer, m, inner] = " + Dims3(outer, m, inner));
  CheckIndices(a, idx, m, n);
  gather_kernel(ElementSize(src.type), src.data, outer, n, inner, idx, m, out.data);
  return a.env().Undefined();
}

// --- scatterAdd(src, outer, m, inner, idx, out, n) ---------------------------------------------------
Napi::Value ScatterAdd(Call& a) {
  const auto src = a.arr("src");
  const int64_t outer = a.i("outer");
  const int64_t m = a.i("m");
  const int64_t inner = a.i("inner");
  const int32_t* idx = a.data<int32_t>("idx");
  const int64_t idx_len = a.len("idx");
  const auto out = a.arr("out");
  const int64_t n = a.i("n");
  if (idx_len != m) {
    a.failRange("argument 'idx' holds " + std::to_string(idx_len) + " indices but m = " + std::to_string(m));
  }
  NeedLength(a, src, "src", CheckedProduct(a, {outer, m, inner}, "src"), "shape [outer, m, inner] = " + Dims3(outer, m, inner));
  NeedLength(a, out, "out", CheckedProduct(a, {outer, n, inner}, "out"), "shape [outer, n, inner] = " + Dims3(outer, n, inner));
  CheckIndices(a, idx, m, n);
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    scatter_add_kernel<T>(static_cast<const T*>(src.data), outer, m, inner, idx, static_cast<T*>(out.data), n);
  });
  return a.env().Undefined();
}

// --- fill(dst, value) ---------------------------------------------------------------------------
Napi::Value Fill(Call& a) {
  const auto& dst = a.arr("dst");
  const double v = a.num("value");
  const auto n = static_cast<int64_t>(dst.length);
  auto integral = [&](double lo, double hi) {
    if (!(std::floor(v) == v && v >= lo && v <= hi)) {
      a.failRange("value " + NumStr(v) + " cannot be stored in a " + NameOf(dst) + " (integers in [" +
                  NumStr(lo) + ", " + NumStr(hi) + "])");
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
  return a.env().Undefined();
}

// --- countNonFinite(x) ----------------------------------------------------------------------------
Napi::Value CountNonFinite(Call& a) {
  const auto x = a.arr("x");
  const auto n = static_cast<int64_t>(x.length);
  const int64_t c = a.is_f32() ? count_nonfinite_kernel<float>(static_cast<const float*>(x.data), n)
                                   : count_nonfinite_kernel<double>(static_cast<const double*>(x.data), n);
  return Napi::Number::New(a.env(), static_cast<double>(c));
}

}  // namespace

void RegisterElementwise(Napi::Env env, Napi::Object exports) {
  // Every typed array of one call here has the type of the first ("all arrays of one call ...").
  const auto op = [](const char* name, std::vector<ArgSpec> args, OpImpl impl) {
    return OpDef{name, std::move(args), impl, nullptr, "arrays"};
  };
  const auto shape = [] { return IntList("shape", kMaxRank); };
  static const std::vector<OpDef> kOps = {
      op("binary",
         {Int("op", 0, kNumBinaryOps - 1), shape(), FloatArr("a"), IntList("aStrides", kMaxRank), FloatArr("b"),
          IntList("bStrides", kMaxRank), FloatArr("out")},
         Binary),
      op("unary", {Int("op", 0, kNumUnaryOps - 1), FloatArr("x"), FloatArr("out"), Num("param").optional()}, Unary),
      op("affine", {FloatArr("x"), Num("alpha"), Num("beta"), FloatArr("out")}, Affine),
      op("unaryGrad",
         {Int("op", 0, kNumUnaryOps - 1), FloatArr("x"), FloatArr("y"), FloatArr("dy"), FloatArr("dx"),
          Num("param").optional()},
         UnaryGrad),
      op("reduce",
         {Int("op", 0, kNumReduceOps - 1), shape(), FloatArr("x"), IntList("xStrides", kMaxRank),
          IntList("axes", kMaxRank, true), FloatArr("out")},
         Reduce),
      op("copyStrided",
         {shape(), SameArr("src"), IntList("srcStrides", kMaxRank), SameArr("dst"), IntList("dstStrides", kMaxRank)},
         CopyStrided),
      op("cast", {AnyArr("src"), DTypeArg("srcDtype"), AnyArr("dst"), DTypeArg("dstDtype"), Int("n", 0, kMaxElements)},
         Cast),
      op("gather",
         {SameArr("src"), Int("outer", 0, kMaxElements), Int("n", 0, kMaxElements), Int("inner", 0, kMaxElements),
          Arr<int32_t>("idx"), SameArr("out")},
         Gather),
      op("scatterAdd",
         {FloatArr("src"), Int("outer", 0, kMaxElements), Int("m", 0, kMaxElements), Int("inner", 0, kMaxElements),
          Arr<int32_t>("idx"), FloatArr("out"), Int("n", 0, kMaxElements)},
         ScatterAdd),
      op("fill", {AnyArr("dst"), Num("value")}, Fill),
      op("countNonFinite", {FloatArr("x")}, CountNonFinite),
  };
  RegisterOps(env, exports, kOps);
}

}  // namespace modulora
