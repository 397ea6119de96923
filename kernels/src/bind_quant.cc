// Bindings of the fused dequantize-matmul kernels (src/cpu/quant_matmul.h).
//
// Every op takes the weight's stored arrays first, in the order of its format, then the op's own:
//   affine:   (qweight, scales, zeros, zeroKind, gIdx, bits, groupSize, groups, outFeatures, inFeatures, ...)
//   codebook: (codes, levels, absmax, absmaxCodes, absmaxScale, absmaxOffset, bits, blockSize, outFeatures, inFeatures, ...)
//   ...Matmul(..., x, m, y, accumulate)            Y[m, out] = X[m, in] · Ŵᵀ (+ Y)
//   ...MatmulInputGrad(..., dy, m, dx, accumulate) dX[m, in] = dY[m, out] · Ŵ (+ dX)
//   ...Dequantize(..., rowStart, rowEnd, out)      rows [rowStart, rowEnd) of Ŵ
// Everything is checked here before a kernel runs: array types, exact lengths from the shapes,
// bits valid for the format, the grouping, gIdx values, and that outputs do not overlap inputs.
// Errors name the op and the argument, e.g. "affineMatmul: argument 'scales' holds 12 elements,
// expected groups × outFeatures = 3 × 5 = 15".
#include <cstdint>
#include <string>

#include "cpu/quant_matmul.h"
#include "napi_util.h"

namespace modulora {
namespace {

constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;
constexpr size_t kWeightArgs = 10;  // both formats describe the weight with 10 arguments

std::string Str(int64_t v) { return std::to_string(v); }

// --- affine --------------------------------------------------------------------------------------

AffineQuant ParseAffine(const Napi::CallbackInfo& info, const Args& a) {
  AffineQuant w{};
  w.bits = static_cast<int>(a.integer(5, "bits", 0, 64));
  if (w.bits != 2 && w.bits != 3 && w.bits != 4 && w.bits != 8) {
    a.failRange("argument 'bits' must be 2, 3, 4 or 8 for the affine format, got " + Str(w.bits));
  }
  w.group_size = a.integer(6, "groupSize", 1, kMaxDim);
  w.groups = a.integer(7, "groups", 1, kMaxDim);
  w.out = a.integer(8, "outFeatures", 1, kMaxDim);
  w.in = a.integer(9, "inFeatures", 1, kMaxDim);
  const std::string zeroKind = a.string(3, "zeroKind");
  if (zeroKind != "int" && zeroKind != "real") {
    a.failRange("argument 'zeroKind' must be \"int\" (u8 zero points) or \"real\" (f16 zero points), got \"" +
                zeroKind + "\"");
  }
  const int64_t words = (w.in + 31) / 32 * w.bits;
  w.qweight = reinterpret_cast<const uint32_t*>(ExactArray<int32_t>(
      a, 0, "qweight", words * w.out,
      "⌈inFeatures/32⌉ · bits × outFeatures = " + Str(words) + " × " + Str(w.out)));
  const std::string groupsWhat = "groups × outFeatures = " + Str(w.groups) + " × " + Str(w.out);
  w.scales = ExactArray<uint16_t>(a, 1, "scales", w.groups * w.out, groupsWhat);
  if (zeroKind == "int") {
    w.zeros_int = ExactArray<uint8_t>(a, 2, "zeros", w.groups * w.out, groupsWhat);
  } else {
    w.zeros_real = ExactArray<uint16_t>(a, 2, "zeros", w.groups * w.out, groupsWhat);
  }
  if (!IsAbsent(info, 4)) {
    w.g_idx = ExactArray<int32_t>(a, 4, "gIdx", w.in, "inFeatures");
    for (int64_t i = 0; i < w.in; i++) {
      if (w.g_idx[i] < 0 || w.g_idx[i] >= w.groups) {
        a.failRange("gIdx[" + Str(i) + "] = " + Str(w.g_idx[i]) + " is not a group in [0, " + Str(w.groups) + ")");
      }
    }
  } else if (w.group_size * w.groups != w.in) {
    a.failRange("without gIdx, groupSize × groups must equal inFeatures (group = ⌊i / groupSize⌋), got " +
                Str(w.group_size) + " × " + Str(w.groups) + " for inFeatures = " + Str(w.in));
  }
  return w;
}

// --- codebook ------------------------------------------------------------------------------------

CodebookQuant ParseCodebook(const Napi::CallbackInfo& info, const Args& a) {
  CodebookQuant w{};
  w.bits = static_cast<int>(a.integer(6, "bits", 0, 64));
  if (w.bits < 1 || w.bits > 4) a.failRange("argument 'bits' must be 1, 2, 3 or 4 for the codebook format, got " + Str(w.bits));
  w.block_size = a.integer(7, "blockSize", 1, kMaxDim);
  w.out = a.integer(8, "outFeatures", 1, kMaxDim);
  w.in = a.integer(9, "inFeatures", 1, kMaxDim);
  if (w.in % w.block_size != 0) {
    a.failRange("argument 'blockSize' = " + Str(w.block_size) + " does not divide inFeatures = " + Str(w.in));
  }
  w.stride = (w.in * w.bits + 7) / 8;
  w.codes = ExactArray<uint8_t>(a, 0, "codes", w.out * w.stride,
                           "outFeatures × ⌈inFeatures · bits / 8⌉ = " + Str(w.out) + " × " + Str(w.stride));
  w.levels = ExactArray<float>(a, 1, "levels", int64_t{1} << w.bits, "2^bits");
  const int64_t blocks = w.out * (w.in / w.block_size);
  const std::string blocksWhat = "outFeatures × inFeatures / blockSize = " + Str(w.out) + " × " + Str(w.in) + " / " +
                                 Str(w.block_size);
  const bool plain = !IsAbsent(info, 2);
  const bool dq[3] = {!IsAbsent(info, 3), !IsAbsent(info, 4), !IsAbsent(info, 5)};
  if (plain && (dq[0] || dq[1] || dq[2])) {
    a.fail("pass either 'absmax' or the double-quantized 'absmaxCodes', 'absmaxScale' and 'absmaxOffset', not both");
  }
  if (plain) {
    w.absmax = ExactArray<float>(a, 2, "absmax", blocks, blocksWhat);
    return w;
  }
  if (!(dq[0] && dq[1] && dq[2])) {
    a.fail("the block scales are missing: pass 'absmax', or all of 'absmaxCodes', 'absmaxScale' and 'absmaxOffset'");
  }
  const int64_t supers = (blocks + kAbsmaxSuperblock - 1) / kAbsmaxSuperblock;
  w.absmax_codes = ExactArray<uint8_t>(a, 3, "absmaxCodes", blocks, blocksWhat);
  const std::string supersWhat = "⌈blocks / 256⌉ = ⌈" + Str(blocks) + " / 256⌉";
  w.absmax_scale = ExactArray<float>(a, 4, "absmaxScale", supers, supersWhat);
  w.absmax_offset = ExactArray<float>(a, 5, "absmaxOffset", supers, supersWhat);
  return w;
}

// --- ops -----------------------------------------------------------------------------------------

void CheckDisjoint(const Args& a, size_t i, const char* name, size_t j, const char* other) {
  const Args::AnyArray x = a.anyArray(i, name), y = a.anyArray(j, other);
  const auto* x0 = static_cast<const char*>(x.data);
  const auto* y0 = static_cast<const char*>(y.data);
  if (x.length && y.length && x0 < y0 + y.length * 4 && y0 < x0 + x.length * 4) {
    a.failRange(std::string("argument '") + other + "' overlaps '" + name + "' in memory; the output must not alias the input");
  }
}

// (weight..., a, m, c, accumulate): checks the operands of a product C[m, n] = A[m, k] · B.
struct ProductArgs {
  int64_t m;
  const float* A;
  float* C;
  bool accumulate;
};

ProductArgs ParseProduct(const Args& a, int64_t k, int64_t n, const char* aName, const char* cName, const char* kName,
                         const char* nName) {
  const size_t i = kWeightArgs;
  ProductArgs p{};
  p.m = a.integer(i + 1, "m", 0, kMaxDim);
  p.A = ExactArray<float>(a, i, aName, p.m * k, std::string("m × ") + kName + " = " + Str(p.m) + " × " + Str(k));
  p.C = ExactArray<float>(a, i + 2, cName, p.m * n, std::string("m × ") + nName + " = " + Str(p.m) + " × " + Str(n));
  p.accumulate = a.boolean(i + 3, "accumulate");
  CheckDisjoint(a, i, aName, i + 2, cName);
  return p;
}

struct RowsArgs {
  int64_t r0, r1;
  float* out;
};

RowsArgs ParseRows(const Args& a, int64_t rows, int64_t in) {
  const size_t i = kWeightArgs;
  RowsArgs r{};
  r.r0 = a.integer(i, "rowStart", 0, kMaxDim);
  r.r1 = a.integer(i + 1, "rowEnd", 0, kMaxDim);
  if (r.r0 > r.r1 || r.r1 > rows) {
    a.failRange("rows [" + Str(r.r0) + ", " + Str(r.r1) + ") are not a range within [0, outFeatures = " + Str(rows) + ")");
  }
  r.out = ExactArray<float>(a, i + 2, "out", (r.r1 - r.r0) * in,
                          "(rowEnd − rowStart) × inFeatures = " + Str(r.r1 - r.r0) + " × " + Str(in));
  return r;
}

#define AFFINE_SIG "(qweight, scales, zeros, zeroKind, gIdx, bits, groupSize, groups, outFeatures, inFeatures, "
#define CODEBOOK_SIG "(codes, levels, absmax, absmaxCodes, absmaxScale, absmaxOffset, bits, blockSize, outFeatures, inFeatures, "

Napi::Value AffineMatmul(const Napi::CallbackInfo& info) {
  Args a(info, "affineMatmul");
  a.expectCount(kWeightArgs + 4, AFFINE_SIG "x, m, y, accumulate)");
  const AffineQuant w = ParseAffine(info, a);
  const ProductArgs p = ParseProduct(a, w.in, w.out, "x", "y", "inFeatures", "outFeatures");
  affine_matmul(w, p.m, p.A, p.C, p.accumulate);
  return info.Env().Undefined();
}

Napi::Value AffineMatmulInputGrad(const Napi::CallbackInfo& info) {
  Args a(info, "affineMatmulInputGrad");
  a.expectCount(kWeightArgs + 4, AFFINE_SIG "dy, m, dx, accumulate)");
  const AffineQuant w = ParseAffine(info, a);
  const ProductArgs p = ParseProduct(a, w.out, w.in, "dy", "dx", "outFeatures", "inFeatures");
  affine_matmul_input_grad(w, p.m, p.A, p.C, p.accumulate);
  return info.Env().Undefined();
}

Napi::Value AffineDequantize(const Napi::CallbackInfo& info) {
  Args a(info, "affineDequantize");
  a.expectCount(kWeightArgs + 3, AFFINE_SIG "rowStart, rowEnd, out)");
  const AffineQuant w = ParseAffine(info, a);
  const RowsArgs r = ParseRows(a, w.out, w.in);
  affine_dequantize(w, r.r0, r.r1, r.out);
  return info.Env().Undefined();
}

Napi::Value CodebookMatmul(const Napi::CallbackInfo& info) {
  Args a(info, "codebookMatmul");
  a.expectCount(kWeightArgs + 4, CODEBOOK_SIG "x, m, y, accumulate)");
  const CodebookQuant w = ParseCodebook(info, a);
  const ProductArgs p = ParseProduct(a, w.in, w.out, "x", "y", "inFeatures", "outFeatures");
  codebook_matmul(w, p.m, p.A, p.C, p.accumulate);
  return info.Env().Undefined();
}

Napi::Value CodebookMatmulInputGrad(const Napi::CallbackInfo& info) {
  Args a(info, "codebookMatmulInputGrad");
  a.expectCount(kWeightArgs + 4, CODEBOOK_SIG "dy, m, dx, accumulate)");
  const CodebookQuant w = ParseCodebook(info, a);
  const ProductArgs p = ParseProduct(a, w.out, w.in, "dy", "dx", "outFeatures", "inFeatures");
  codebook_matmul_input_grad(w, p.m, p.A, p.C, p.accumulate);
  return info.Env().Undefined();
}

Napi::Value CodebookDequantize(const Napi::CallbackInfo& info) {
  Args a(info, "codebookDequantize");
  a.expectCount(kWeightArgs + 3, CODEBOOK_SIG "rowStart, rowEnd, out)");
  const CodebookQuant w = ParseCodebook(info, a);
  const RowsArgs r = ParseRows(a, w.out, w.in);
  codebook_dequantize(w, r.r0, r.r1, r.out);
  return info.Env().Undefined();
}

#undef AFFINE_SIG
#undef CODEBOOK_SIG

Napi::Value QuantMatmulInfoFn(const Napi::CallbackInfo& info) {
  Args a(info, "quantMatmulInfo");
  a.expectCount(0, "()");
  const QuantMatmulInfo q = quant_matmul_info();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("isa", Napi::String::New(info.Env(), q.isa));
  o.Set("mr", Napi::Number::New(info.Env(), q.mr));
  o.Set("nr", Napi::Number::New(info.Env(), q.nr));
  o.Set("kc", Napi::Number::New(info.Env(), q.kc));
  o.Set("mc", Napi::Number::New(info.Env(), q.mc));
  o.Set("nc", Napi::Number::New(info.Env(), q.nc));
  return o;
}

}  // namespace

void RegisterQuant(Napi::Env env, Napi::Object exports) {
  exports.Set("affineMatmul", Napi::Function::New(env, AffineMatmul, "affineMatmul"));
  exports.Set("affineMatmulInputGrad", Napi::Function::New(env, AffineMatmulInputGrad, "affineMatmulInputGrad"));
  exports.Set("affineDequantize", Napi::Function::New(env, AffineDequantize, "affineDequantize"));
  exports.Set("codebookMatmul", Napi::Function::New(env, CodebookMatmul, "codebookMatmul"));
  exports.Set("codebookMatmulInputGrad", Napi::Function::New(env, CodebookMatmulInputGrad, "codebookMatmulInputGrad"));
  exports.Set("codebookDequantize", Napi::Function::New(env, CodebookDequantize, "codebookDequantize"));
  exports.Set("quantMatmulInfo", Napi::Function::New(env, QuantMatmulInfoFn, "quantMatmulInfo"));
}

}  // namespace modulora
