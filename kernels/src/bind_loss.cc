// Bindings of the cross-entropy and softmax kernels (src/cpu/loss.h):
//
//   crossEntropyForward(logits, rowShape, rowStrides, vocab, targets, ignoreIndex, lse, loss) -> counted rows
//   crossEntropyBackward(logits, rowShape, rowStrides, vocab, targets, ignoreIndex, lse, g, gStride, mean, dlogits)
//   softmax / logSoftmax(x, outer, n, inner, y)
//   softmaxBackward / logSoftmaxBackward(y, dy, outer, n, inner, dx)
//
// Every argument is checked before a kernel runs: float arrays of one call share Float32Array or
// Float64Array, shapes and strides are non-negative, each array reaches the furthest element the
// call addresses, and every target is in [0, vocab) or equal to ignoreIndex. Errors name the op,
// e.g. "crossEntropy: target 7 at row 3 is outside [0, 5) and is not ignoreIndex (-100)".
#include <cstdint>
#include <string>
#include <vector>

#include "cpu/loss.h"
#include "napi_util.h"

namespace modulora {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 53;  // exact in a JS number
using List = std::vector<int64_t>;

int64_t Product(const Args& a, int64_t x, int64_t y, const std::string& what) {
  int64_t p;
  if (__builtin_mul_overflow(x, y, &p) || p > kMaxElements) a.failRange(what + " has more than 2^53 elements");
  return p;
}

// Logits as rows: the leading dims (rowShape, rowStrides) and `vocab` contiguous columns.
struct Rows {
  RowLayout layout;
  int64_t n = 0;      // rows
  int64_t v = 0;      // columns
  int64_t extent = 0; // elements of the logits array the rows reach
};

Rows ReadRows(const Args& a, size_t shape_i, size_t strides_i, size_t vocab_i) {
  Rows r;
  const List shape = a.intList(shape_i, "rowShape", kMaxRank, false);
  const List strides = a.intList(strides_i, "rowStrides", kMaxRank, false);
  if (strides.size() != shape.size()) {
    a.failRange("argument 'rowStrides' = " + ListStr(strides) + " has " + std::to_string(strides.size()) +
                " entries but 'rowShape' = " + ListStr(shape) + " has " + std::to_string(shape.size()));
  }
  r.v = a.integer(vocab_i, "vocab", 0, kMaxElements);
  r.n = 1;
  for (int64_t d : shape) r.n = Product(a, r.n, d, "rowShape " + ListStr(shape));
  r.layout.rank = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); i++) {
    r.layout.shape[i] = shape[i];
    r.layout.stride[i] = strides[i];
  }
  if (r.n > 0 && r.v > 0) {
    int64_t last = 0;
    for (size_t i = 0; i < shape.size(); i++) {
      int64_t span;
      if (__builtin_mul_overflow(shape[i] - 1, strides[i], &span) || __builtin_add_overflow(last, span, &last) ||
          last >= kMaxElements) {
        a.failRange("argument 'rowStrides' = " + ListStr(strides) + " addresses more than 2^53 elements");
      }
    }
    if (__builtin_add_overflow(last, r.v, &r.extent) || r.extent > kMaxElements) {
      a.failRange("the logits address more than 2^53 elements");
    }
  }
  return r;
}

// Every target is in [0, v) or equal to ignore_index.
void CheckTargets(const Args& a, const int32_t* targets, int64_t n, int64_t v, int32_t ignore) {
  for (int64_t r = 0; r < n; r++) {
    const int32_t t = targets[r];
    if (t != ignore && (t < 0 || t >= v)) {
      a.failRange("target " + std::to_string(t) + " at row " + std::to_string(r) + " is outside [0, " +
                  std::to_string(v) + ") and is not ignoreIndex (" + std::to_string(ignore) + ")");
    }
  }
}

// The arguments both cross-entropy ops start with:
// (logits, rowShape, rowStrides, vocab, targets, ignoreIndex, lse), indices 0..6.
struct CrossEntropyArgs {
  Args::AnyArray logits;
  Rows rows;
  const int32_t* targets;
  int32_t ignore;
  Args::AnyArray lse;
};

CrossEntropyArgs ReadCrossEntropy(const Args& a, FloatArrays& floats) {
  CrossEntropyArgs c;
  c.logits = floats.get(0, "logits");
  c.rows = ReadRows(a, 1, 2, 3);
  c.targets = a.array<int32_t>(4, "targets", static_cast<size_t>(c.rows.n));
  c.ignore = static_cast<int32_t>(a.integer(5, "ignoreIndex", INT32_MIN, INT32_MAX));
  c.lse = floats.get(6, "lse");
  return c;
}

// The lengths of 'logits' and 'lse' (checked once every argument has been read).
void CheckLogitsAndLse(const Args& a, const CrossEntropyArgs& c) {
  NeedLength(a, c.logits, "logits", c.rows.extent,
             "rows " + std::to_string(c.rows.n) + " x vocab " + std::to_string(c.rows.v));
  NeedLength(a, c.lse, "lse", c.rows.n, "one per row");
}

// --- crossEntropyForward -------------------------------------------------------------------------
Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  Args a(info, "crossEntropy");
  a.expectCount(8, "(logits, rowShape, rowStrides, vocab, targets, ignoreIndex, lse, loss)");
  FloatArrays floats(a);
  const CrossEntropyArgs c = ReadCrossEntropy(a, floats);
  const Rows& rows = c.rows;
  const auto loss = floats.get(7, "loss");
  CheckLogitsAndLse(a, c);
  NeedLength(a, loss, "loss", rows.n, "one per row");
  CheckTargets(a, c.targets, rows.n, rows.v, c.ignore);
  int64_t counted;
  DispatchFloat(floats.is_f32(), [&](auto t) {
    using T = decltype(t);
    counted = cross_entropy_forward<T>(static_cast<const T*>(c.logits.data), rows.layout, rows.v, c.targets, c.ignore,
                                       static_cast<T*>(c.lse.data), static_cast<T*>(loss.data));
  });
  return Napi::Number::New(info.Env(), static_cast<double>(counted));
}

// --- crossEntropyBackward ------------------------------------------------------------------------
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  Args a(info, "crossEntropyBackward");
  a.expectCount(11, "(logits, rowShape, rowStrides, vocab, targets, ignoreIndex, lse, g, gStride, mean, dlogits)");
  FloatArrays floats(a);
  const CrossEntropyArgs c = ReadCrossEntropy(a, floats);
  const Rows& rows = c.rows;
  const auto g = floats.get(7, "g");
  const int64_t g_stride = a.integer(8, "gStride", 0, kMaxElements);
  const bool mean = a.boolean(9, "mean");
  const auto dlogits = floats.get(10, "dlogits");
  CheckLogitsAndLse(a, c);
  if (rows.n > 0) {
    int64_t g_last;
    if (__builtin_mul_overflow(rows.n - 1, g_stride, &g_last) || g_last >= kMaxElements) {
      a.failRange("argument 'gStride' = " + std::to_string(g_stride) + " addresses more than 2^53 elements");
    }
    NeedLength(a, g, "g", g_last + 1, std::to_string(rows.n) + " rows with stride " + std::to_string(g_stride));
  }
  const int64_t total = Product(a, rows.n, rows.v, "dlogits");
  NeedLength(a, dlogits, "dlogits", total, "contiguous [rows, vocab] = [" + std::to_string(rows.n) + "," + std::to_string(rows.v) + "]");
  CheckTargets(a, c.targets, rows.n, rows.v, c.ignore);
  DispatchFloat(floats.is_f32(), [&](auto t) {
    using T = decltype(t);
    cross_entropy_backward<T>(static_cast<const T*>(c.logits.data), rows.layout, rows.v, c.targets, c.ignore,
                              static_cast<const T*>(c.lse.data), static_cast<const T*>(g.data), g_stride, mean,
                              static_cast<T*>(dlogits.data));
  });
  return info.Env().Undefined();
}

// --- softmax / logSoftmax ----------------------------------------------------------------------
struct Dims3 {
  int64_t outer, n, inner, total;
};

std::string DimsStr(const Dims3& d) {
  return "[outer, n, inner] = [" + std::to_string(d.outer) + "," + std::to_string(d.n) + "," + std::to_string(d.inner) + "]";
}

Dims3 ReadDims(const Args& a, size_t first) {
  Dims3 d;
  d.outer = a.integer(first, "outer", 0, kMaxElements);
  d.n = a.integer(first + 1, "n", 0, kMaxElements);
  d.inner = a.integer(first + 2, "inner", 0, kMaxElements);
  const std::string what = DimsStr(d);
  d.total = Product(a, Product(a, d.outer, d.n, what), d.inner, what);
  return d;
}

Napi::Value SoftmaxImpl(const Napi::CallbackInfo& info, const char* op, bool log) {
  Args a(info, op);
  a.expectCount(5, "(x, outer, n, inner, y)");
  FloatArrays floats(a);
  const auto x = floats.get(0, "x");
  const Dims3 d = ReadDims(a, 1);
  const auto y = floats.get(4, "y");
  NeedLength(a, x, "x", d.total, DimsStr(d));
  NeedLength(a, y, "y", d.total, DimsStr(d));
  DispatchFloat(floats.is_f32(), [&](auto t) {
    using T = decltype(t);
    softmax_forward<T>(static_cast<const T*>(x.data), d.outer, d.n, d.inner, log, static_cast<T*>(y.data));
  });
  return info.Env().Undefined();
}

Napi::Value SoftmaxGradImpl(const Napi::CallbackInfo& info, const char* op, bool log) {
  Args a(info, op);
  a.expectCount(6, "(y, dy, outer, n, inner, dx)");
  FloatArrays floats(a);
  const auto y = floats.get(0, "y");
  const auto dy = floats.get(1, "dy");
  const Dims3 d = ReadDims(a, 2);
  const auto dx = floats.get(5, "dx");
  NeedLength(a, y, "y", d.total, DimsStr(d));
  NeedLength(a, dy, "dy", d.total, DimsStr(d));
  NeedLength(a, dx, "dx", d.total, DimsStr(d));
  DispatchFloat(floats.is_f32(), [&](auto t) {
    using T = decltype(t);
    softmax_backward<T>(static_cast<const T*>(y.data), static_cast<const T*>(dy.data), d.outer, d.n, d.inner, log,
                        static_cast<T*>(dx.data));
  });
  return info.Env().Undefined();
}

Napi::Value Softmax(const Napi::CallbackInfo& info) { return SoftmaxImpl(info, "softmax", false); }
Napi::Value LogSoftmax(const Napi::CallbackInfo& info) { return SoftmaxImpl(info, "logSoftmax", true); }
Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) { return SoftmaxGradImpl(info, "softmaxBackward", false); }
Napi::Value LogSoftmaxBackward(const Napi::CallbackInfo& info) { return SoftmaxGradImpl(info, "logSoftmaxBackward", true); }

}  // namespace

void RegisterLoss(Napi::Env env, Napi::Object exports) {
  exports.Set("crossEntropyForward", Napi::Function::New(env, CrossEntropyForward, "crossEntropyForward"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, CrossEntropyBackward, "crossEntropyBackward"));
  exports.Set("softmax", Napi::Function::New(env, Softmax, "softmax"));
  exports.Set("logSoftmax", Napi::Function::New(env, LogSoftmax, "logSoftmax"));
  exports.Set("softmaxBackward", Napi::Function::New(env, SoftmaxBackward, "softmaxBackward"));
  exports.Set("logSoftmaxBackward", Napi::Function::New(env, LogSoftmaxBackward, "logSoftmaxBackward"));
}

}  // namespace modulora
