// Reductions (sum, max, min) over any subset of axes of a strided tensor.
//
// The kept axes and the reduced axes become two iteration spaces, each coalesced. Two loop shapes:
//  - row mode: one output at a time reduces its reduced elements; a unit-stride innermost reduced
//    axis (row sums of [N, C] -> [N]) runs a vectorisable 8-lane pairwise sum;
//  - column mode: when the innermost kept axis is contiguous (column sums of [N, C] -> [C], or
//    [A, R, C] -> [A, C]), blocks of 256 outputs accumulate whole rows at a time.
// Accumulation is in double for both float types, so f32 sums of millions of elements keep full
// f32 accuracy. A reduction with few outputs but many elements is cut into a fixed number of parts
// (chosen from the shape alone, never from the thread count) whose partial results are combined in
// order, so the result does not depend on the number of threads.
#include <cmath>
#include <limits>

#include "cpu/elementwise.h"
#include "cpu/storage.h"
#include "cpu/threadpool.h"

namespace modulora {
namespace {

constexpr int64_t kColumnBlock = 256;  // outputs per column-mode unit (2 KiB of double accumulators)
constexpr int64_t kPartElems = 32768;  // least reduced elements per part when a reduction is split
constexpr int64_t kMaxParts = 32;
constexpr int64_t kMinUnits = 16;      // split reductions that have fewer work units than this

struct SumR {
  static double init() { return 0.0; }
  static double comb(double a, double v) { return a + v; }
};
struct MaxR {
  static double init() { return -std::numeric_limits<double>::infinity(); }
  static double comb(double a, double v) { return nan_max(a, v); }
};
struct MinR {
  static double init() { return std::numeric_limits<double>::infinity(); }
  static double comb(double a, double v) { return nan_min(a, v); }
};

// 8 independent accumulators (vectorisable without reassociation), then a pairwise tree.
template <class T, class R>
double reduce_lanes(const T* x, int64_t n) {
  double acc[8];
  for (int k = 0; k < 8; k++) acc[k] = R::init();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; k++) acc[k] = R::comb(acc[k], static_cast<double>(x[i + k]));
  }
  double tail = R::init();
  for (; i < n; i++) tail = R::comb(tail, static_cast<double>(x[i]));
  for (int w = 4; w >= 1; w /= 2) {
    for (int k = 0; k < w; k++) acc[k] = R::comb(acc[k], acc[k + w]);
  }
  return R::comb(acc[0], tail);
}

// Pairwise over blocks: error grows with log(n), not n.
template <class T, class R>
double reduce_contiguous(const T* x, int64_t n) {
  if (n <= 4096) return reduce_lanes<T, R>(x, n);
  const int64_t h = (n / 2) & ~int64_t{7};
  return R::comb(reduce_contiguous<T, R>(x, h), reduce_contiguous<T, R>(x + h, n - h));
}

template <class T, class R>
double reduce_run(const T* x, int64_t n, int64_t s) {
  if (s == 1) return reduce_contiguous<T, R>(x, n);
  double a0 = R::init(), a1 = R::init();
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    a0 = R::comb(a0, static_cast<double>(x[i * s]));
    a1 = R::comb(a1, static_cast<double>(x[(i + 1) * s]));
  }
  if (i < n) a0 = R::comb(a0, static_cast<double>(x[i * s]));
  return R::comb(a0, a1);
}

// Element offset of the flat index `flat` over the first `ndims` dims of d.
int64_t offset_of(const StridedDims<1>& d, int ndims, int64_t flat) {
  int64_t off = 0;
  for (int i = ndims - 1; i >= 0; i--) {
    off += (flat % d.shape[i]) * d.stride[0][i];
    flat /= d.shape[i];
  }
  return off;
}

// RAII kernel scratch (counted in memoryStats().scratchBytes); data() is null if allocation failed.
class Scratch {
 public:
  explicit Scratch(size_t bytes) : bytes_(bytes), p_(bytes ? scratch_alloc(bytes) : nullptr) {}
  ~Scratch() { if (p_) scratch_free(p_, bytes_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  double* data() const { return static_cast<double*>(p_); }
 private:
  size_t bytes_;
  void* p_;
};

template <class T, class R>
void reduce_impl(const StridedDims<1>& kept, const StridedDims<1>& red, const T* x, T* out) {
  const int64_t num_out = kept.numel(), num_red = red.numel();
  const int64_t rs = red.inner_stride(0);
  const bool column = kept.rank >= 1 && kept.inner_stride(0) == 1 && kept.shape[kept.rank - 1] >= 8 && rs != 1;
  const int64_t cols = column ? kept.shape[kept.rank - 1] : 1;
  const int64_t blocks = column ? (cols + kColumnBlock - 1) / kColumnBlock : 1;
  const int64_t units = (num_out / cols) * blocks;
  const int64_t width = column ? std::min(cols, kColumnBlock) : 1;  // outputs per unit

  int64_t parts = 1;
  if (units < kMinUnits) parts = std::min(kMaxParts, std::max<int64_t>(1, num_red * width / kPartElems));
  Scratch scratch(parts > 1 ? static_cast<size_t>(parts * num_out) * sizeof(double) : 0);
  if (!scratch.data()) parts = 1;  // out of memory for partials: run unsplit (slower, same result class)
  double* partial = scratch.data();

  // Row mode over a single reduced axis (the common case: a softmax or norm row, or a few
  // interleaved channels): walk the outputs with an odometer instead of dividing per output.
  if (!column && parts == 1 && red.rank <= 1) {
    const int64_t ks = kept.inner_stride(0);
    parallel_for(num_out, std::max<int64_t>(1, kElementwiseGrain / num_red), [&](int64_t b, int64_t e) {
      int64_t o = b;
      for_each_run(kept, b, e, [&](const int64_t* off, int64_t len) {
        for (int64_t i = 0; i < len; i++) out[o++] = static_cast<T>(reduce_run<T, R>(x + off[0] + i * ks, num_red, rs));
      });
    });
    return;
  }

  const int64_t cost = std::max<int64_t>(1, num_red / parts * width);
  parallel_for(units * parts, std::max<int64_t>(1, kElementwiseGrain / cost), [&](int64_t tb, int64_t te) {
    for (int64_t t = tb; t < te; t++) {
      const int64_t u = t / parts, part = t % parts;
      const int64_t r0 = num_red * part / parts, r1 = num_red * (part + 1) / parts;
      if (!column) {
        const T* base = x + offset_of(kept, kept.rank, u);
        double acc = R::init();
        for_each_run(red, r0, r1, [&](const int64_t* off, int64_t len) {
          acc = R::comb(acc, reduce_run<T, R>(base + off[0], len, rs));
        });
        if (parts > 1) partial[part * num_out + u] = acc;
        else out[u] = static_cast<T>(acc);
      } else {
        const int64_t p = u / blocks, c0 = (u % blocks) * kColumnBlock;
        const int64_t cl = std::min(kColumnBlock, cols - c0);
        const T* base = x + offset_of(kept, kept.rank - 1, p) + c0;
        double acc[kColumnBlock];
        for (int64_t c = 0; c < cl; c++) acc[c] = R::init();
        for_each_run(red, r0, r1, [&](const int64_t* off, int64_t len) {
          for (int64_t i = 0; i < len; i++) {
            const T* row = base + off[0] + i * rs;
            for (int64_t c = 0; c < cl; c++) acc[c] = R::comb(acc[c], static_cast<double>(row[c]));
          }
        });
        const int64_t o = p * cols + c0;
        if (parts > 1) {
          for (int64_t c = 0; c < cl; c++) partial[part * num_out + o + c] = acc[c];
        } else {
          for (int64_t c = 0; c < cl; c++) out[o + c] = static_cast<T>(acc[c]);
        }
      }
    }
  });
  if (parts > 1) {
    for (int64_t o = 0; o < num_out; o++) {
      double acc = partial[o];
      for (int64_t part = 1; part < parts; part++) acc = R::comb(acc, partial[part * num_out + o]);
      out[o] = static_cast<T>(acc);
    }
  }
}

}  // namespace

template <class T>
void reduce_kernel(ReduceOp op, int rank, const int64_t* shape, const T* x, const int64_t* x_strides,
                   const bool* reduce_axis, T* out) {
  StridedDims<1> kept, red;
  bool empty_reduction = false;
  for (int i = 0; i < rank; i++) {
    if (shape[i] == 0 && !reduce_axis[i]) return;  // no outputs
    if (shape[i] == 0) empty_reduction = true;
  }
  int64_t num_out = 1;
  for (int i = 0; i < rank; i++) {
    if (reduce_axis[i]) continue;
    kept.push(shape[i], &x_strides[i]);
    num_out *= shape[i];
  }
  if (empty_reduction) {  // only reachable for sum (the caller rejects max/min of nothing)
    std::fill(out, out + num_out, T(0));
    return;
  }
  // Reduced axes: the order does not change the set reduced, so sort them by decreasing stride
  // (stable) to let more of them coalesce and to walk memory forwards.
  int order[kMaxRank];
  int nr = 0;
  for (int i = 0; i < rank; i++) {
    if (!reduce_axis[i]) continue;
    int j = nr++;
    while (j > 0 && x_strides[order[j - 1]] < x_strides[i]) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = i;
  }
  for (int j = 0; j < nr; j++) red.push(shape[order[j]], &x_strides[order[j]]);
  kept.coalesce();
  red.coalesce();
  switch (op) {
    case ReduceOp::Sum: return reduce_impl<T, SumR>(kept, red, x, out);
    case ReduceOp::Max: return reduce_impl<T, MaxR>(kept, red, x, out);
    case ReduceOp::Min: return reduce_impl<T, MinR>(kept, red, x, out);
  }
}

template void reduce_kernel<float>(ReduceOp, int, const int64_t*, const float*, const int64_t*, const bool*, float*);
template void reduce_kernel<double>(ReduceOp, int, const int64_t*, const double*, const int64_t*, const bool*,
                                    double*);

}  // namespace modulora
