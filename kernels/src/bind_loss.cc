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

#include "binding.h"
#include "cpu/loss.h"

namespace modulora {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 53;  // exact in a JS number
using List = std::vector<int64_t>;

// Logits as rows: the leading dims (rowShape, rowStrides) and `vocab` contiguous columns.
struct Rows {
  RowLayout layout;
  int64_t n = 0;      // rows
  int64_t v = 0;      // columns
  int64_t extent = 0; // elements of the logits array the rows reach
};

Rows ReadRows(const Call& a) {
  Rows r;
  const List& shape = a.list("rowShape");
  const List& strides = a.list("rowStrides");
  if (strides.size() != shape.size()) {
    a.failRange("argument 'rowStrides' = " + ListStr(strides) + " has " + std::to_string(strides.size()) +
                " entries but 'rowShape' = " + ListStr(shape) + " has " + std::to_string(shape.size()));
  }
  r.v = a.i("vocab");
  r.n = 1;
  for (int64_t d : shape) r.n = CheckedProduct(a, {r.n, d}, "rowShape " + ListStr(shape));
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

CrossEntropyArgs ReadCrossEntropy(const Call& a) {
  CrossEntropyArgs c;
  c.logits = a.arr("logits");
  c.rows = ReadRows(a);
  NeedAtLeast(a, "targets", a.arr("targets"), c.rows.n);
  c.targets = a.data<int32_t>("targets");
  c.ignore = static_cast<int32_t>(a.i("ignoreIndex"));
  c.lse = a.arr("lse");
  return c;
}

// The lengths of 'logits' and 'lse' (checked once every argument has been read).
void CheckLogitsAndLse(const Args& a, const CrossEntropyArgs& c) {
  NeedLength(a, c.logits, "logits", c.rows.extent,
             "rows " + std::to_string(c.rows.n) + " x vocab " + std::to_string(c.rows.v));
  NeedLength(a, c.lse, "lse", c.rows.n, "one per row");
}

// --- crossEntropyForward -------------------------------------------------------------------------
Napi::Value CrossEntropyForward(Call& a) {
  const CrossEntropyArgs c = ReadCrossEntropy(a);
  const Rows& rows = c.rows;
  const auto loss = a.arr("loss");
  CheckLogitsAndLse(a, c);
  NeedLength(a, loss, "loss", rows.n, "one per row");
  CheckTargets(a, c.targets, rows.n, rows.v, c.ignore);
  int64_t counted;
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    counted = cross_entropy_forward<T>(static_cast<const T*>(c.logits.data), rows.layout, rows.v, c.targets, c.ignore,
                                       static_cast<T*>(c.lse.data), static_cast<T*>(loss.data));
  });
  return Napi::Number::New(a.env(), static_cast<double>(counted));
}

// --- crossEntropyBackward ------------------------------------------------------------------------
Napi::Value CrossEntropyBackward(Call& a) {
  const CrossEntropyArgs c = ReadCrossEntropy(a);
  const Rows& rows = c.rows;
  const auto g = a.arr("g");
  const int64_t g_stride = a.i("gStride");
  const bool mean = a.flag("mean");
  const auto dlogits = a.arr("dlogits");
  CheckLogitsAndLse(a, c);
  if (rows.n > 0) {
    int64_t g_last;
    if (__builtin_mul_overflow(rows.n - 1, g_stride, &g_last) || g_last >= kMaxElements) {
      a.failRange("argument 'gStride' = " + std::to_string(g_stride) + " addresses more than 2^53 elements");
    }
    NeedLength(a, g, "g", g_last + 1, std::to_string(rows.n) + " rows with stride " + std::to_string(g_stride));
  }
  const int64_t total = CheckedProduct(a, {rows.n, rows.v}, "dlogits");
  NeedLength(a, dlogits, "dlogits", total, "contiguous [rows, vocab] = [" + std::to_string(rows.n) + "," + std::to_string(rows.v) + "]");
  CheckTargets(a, c.targets, rows.n, rows.v, c.ignore);
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    cross_entropy_backward<T>(static_cast<const T*>(c.logits.data), rows.layout, rows.v, c.targets, c.ignore,
                              static_cast<const T*>(c.lse.data), static_cast<const T*>(g.data), g_stride, mean,
                              static_cast<T*>(dlogits.data));
  });
  return a.env().Undefined();
}

// --- softmax / logSoftmax ----------------------------------------------------------------------
struct Dims3 {
  int64_t outer, n, inner, total;
};

std::string DimsStr(const Dims3& d) {
  return "[outer, n, inner] = [" + std::to_string(d.outer) + "," + std::to_string(d.n) + "," + std::to_string(d.inner) + "]";
}

Dims3 ReadDims(const Call& a) {
  Dims3 d;
  d.outer = a.i("outer");
  d.n = a.i("n");
  d.inner = a.i("inner");
  const std::string what = DimsStr(d);
  d.total = CheckedProduct(a, {d.outer, d.n, d.inner}, what);
  return d;
}

Napi::Value SoftmaxImpl(Call& a, bool log) {
  const auto x = a.arr("x");
  const Dims3 d = ReadDims(a);
  const auto y = a.arr("y");
  NeedLength(a, x, "x", d.total, DimsStr(d));
  NeedLength(a, y, "y", d.total, DimsStr(d));
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    softmax_forward<T>(static_cast<const T*>(x.data), d.outer, d.n, d.inner, log, static_cast<T*>(y.data));
  });
  return a.env().Undefined();
}

Napi::Value SoftmaxGradImpl(Call& a, bool log) {
  const auto y = a.arr("y");
  const auto dy = a.arr("dy");
  const Dims3 d = ReadDims(a);
  const auto dx = a.arr("dx");
  NeedLength(a, y, "y", d.total, DimsStr(d));
  NeedLength(a, dy, "dy", d.total, DimsStr(d));
  NeedLength(a, dx, "dx", d.total, DimsStr(d));
  a.dispatch_float([&](auto t) {
    using T = decltype(t);
    softmax_backward<T>(static_cast<const T*>(y.data), static_cast<const T*>(dy.data), d.outer, d.n, d.inner, log,
                        static_cast<T*>(dx.data));
  });
  return a.env().Undefined();
}

Napi::Value Softmax(Call& a) { return SoftmaxImpl(a, false); }
Napi::Value LogSoftmax(Call& a) { return SoftmaxImpl(a, true); }
Napi::Value SoftmaxBackward(Call& a) { return SoftmaxGradImpl(a, false); }
Napi::Value LogSoftmaxBackward(Call& a) { return SoftmaxGradImpl(a, true); }

// (logits, rowShape, rowStrides, vocab, targets, ignoreIndex, lse, <rest>)
std::vector<ArgSpec> CrossEntropySpec(std::vector<ArgSpec> rest) {
  std::vector<ArgSpec> v = {FloatArr("logits"),       IntList("rowShape", kMaxRank), IntList("rowStrides", kMaxRank),
                            Int("vocab", 0, kMaxElements), Arr<int32_t>("targets"),
                            Int("ignoreIndex", INT32_MIN, INT32_MAX), FloatArr("lse")};
  v.insert(v.end(), rest.begin(), rest.end());
  return v;
}

}  // namespace

void RegisterLoss(Napi::Env env, Napi::Object exports) {
  // (arrays..., outer, n, inner, out)
  const auto dims = [](std::vector<ArgSpec> before, ArgSpec last) {
    before.insert(before.end(), {Int("outer", 0, kMaxElements), Int("n", 0, kMaxElements), Int("inner", 0, kMaxElements), last});
    return before;
  };
  static const std::vector<OpDef> kOps = {
      {"crossEntropyForward", CrossEntropySpec({FloatArr("loss")}), CrossEntropyForward, "crossEntropy"},
      {"crossEntropyBackward",
       CrossEntropySpec({FloatArr("g"), Int("gStride", 0, kMaxElements), Bool("mean"), FloatArr("dlogits")}),
       CrossEntropyBackward},
      {"softmax", dims({FloatArr("x")}, FloatArr("y")), Softmax},
      {"logSoftmax", dims({FloatArr("x")}, FloatArr("y")), LogSoftmax},
      {"softmaxBackward", dims({FloatArr("y"), FloatArr("dy")}, FloatArr("dx")), SoftmaxBackward},
      {"logSoftmaxBackward", dims({FloatArr("y"), FloatArr("dy")}, FloatArr("dx")), LogSoftmaxBackward},
  };
  RegisterOps(env, exports, kOps);
}

}  // namespace modulora
