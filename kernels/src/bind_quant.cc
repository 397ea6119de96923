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
#include <vector>

#include "binding.h"
#include "cpu/quant_matmul.h"

namespace modulora {
namespace {

constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

// --- affine --------------------------------------------------------------------------------------

// (qweight, scales, zeros, zeroKind, gIdx, bits, groupSize, groups, outFeatures, inFeatures)
std::vector<ArgSpec> AffineArgs() {
  return {Arr<int32_t>("qweight"), Arr<uint16_t>("scales"), AnyArr("zeros"),
          Enum("zeroKind", {"int", "real"}, "\"int\" (u8 zero points) or \"real\" (f16 zero points)"),
          Arr<int32_t>("gIdx").nullable(), Int("bits", 0, 64), Int("groupSize", 1, kMaxDim), Int("groups", 1, kMaxDim),
          Int("outFeatures", 1, kMaxDim), Int("inFeatures", 1, kMaxDim)};
}

AffineQuant ParseAffine(const Call& a) {
  AffineQuant w{};
  w.bits = static_cast<int>(a.i("bits"));
  if (w.bits != 2 && w.bits != 3 && w.bits != 4 && w.bits != 8) {
    a.failRange("argument 'bits' must be 2, 3, 4 or 8 for the affine format, got " + Str(w.bits));
  }
  w.group_size = a.i("groupSize");
  w.groups = a.i("groups");
  w.out = a.i("outFeatures");
  w.in = a.i("inFeatures");
  const std::string& zeroKind = a.str("zeroKind");
  const int64_t words = (w.in + 31) / 32 * w.bits;
  w.qweight = reinterpret_cast<const uint32_t*>(ExactArray<int32_t>(
      a, "qweight", words * w.out,
      "⌈inFeatures/32⌉ · bits × outFeatures = " + Str(words) + " × " + Str(w.out)));
  const std::string groupsWhat = "groups × outFeatures = " + Str(w.groups) + " × " + Str(w.out);
  w.scales = ExactArray<uint16_t>(a, "scales", w.groups * w.out, groupsWhat);
  if (zeroKind == "int") {
    w.zeros_int = ExactArray<uint8_t>(a, "zeros", w.groups * w.out, groupsWhat);
  } else {
    w.zeros_real = ExactArray<uint16_t>(a, "zeros", w.groups * w.out, groupsWhat);
  }
  if (a.has("gIdx")) {
    w.g_idx = ExactArray<int32_t>(a, "gIdx", w.in, "inFeatures");
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

// (codes, levels, absmax, absmaxCodes, absmaxScale, absmaxOffset, bits, blockSize, outFeatures, inFeatures)
std::vector<ArgSpec> CodebookArgs() {
  return {Arr<uint8_t>("codes"), Arr<float>("levels"), Arr<float>("absmax").nullable(),
          Arr<uint8_t>("absmaxCodes").nullable(), Arr<float>("absmaxScale").nullable(),
          Arr<float>("absmaxOffset").nullable(), Int("bits", 0, 64), Int("blockSize", 1, kMaxDim),
          Int("outFeatures", 1, kMaxDim), Int("inFeatures", 1, kMaxDim)};
}

CodebookQuant ParseCodebook(const Call& a) {
  CodebookQuant w{};
  w.bits = static_cast<int>(a.i("bits"));
  if (w.bits < 1 || w.bits > 4) a.failRange("argument 'bits' must be 1, 2, 3 or 4 for the codebook format, got " + Str(w.bits));
  w.block_size = a.i("blockSize");
  w.out = a.i("outFeatures");
  w.in = a.i("inFeatures");
  if (w.in % w.block_size != 0) {
    a.failRange("argument 'blockSize' = " + Str(w.block_size) + " does not divide inFeatures = " + Str(w.in));
  }
  w.stride = (w.in * w.bits + 7) / 8;
  w.codes = ExactArray<uint8_t>(a, "codes", w.out * w.stride,
                           "outFeatures × ⌈inFeatures · bits / 8⌉ = " + Str(w.out) + " × " + Str(w.stride));
  w.levels = ExactArray<float>(a, "levels", int64_t{1} << w.bits, "2^bits");
  const int64_t blocks = w.out * (w.in / w.block_size);
  const std::string blocksWhat = "outFeatures × inFeatures / blockSize = " + Str(w.out) + " × " + Str(w.in) + " / " +
                                 Str(w.block_size);
  const bool plain = a.has("absmax");
  const bool dq[3] = {a.has("absmaxCodes"), a.has("absmaxScale"), a.has("absmaxOffset")};
  if (plain && (dq[0] || dq[1] || dq[2])) {
    a.fail("pass either 'absmax' or the double-quantized 'absmaxCodes', 'absmaxScale' and 'absmaxOffset', not both");
  }
  if (plain) {
    w.absmax = ExactArray<float>(a, "absmax", blocks, blocksWhat);
    return w;
  }
  if (!(dq[0] && dq[1] && dq[2])) {
    a.fail("the block scales are missing: pass 'absmax', or all of 'absmaxCodes', 'absmaxScale' and 'absmaxOffset'");
  }
  const int64_t supers = (blocks + kAbsmaxSuperblock - 1) / kAbsmaxSuperblock;
  w.absmax_codes = ExactArray<uint8_t>(a, "absmaxCodes", blocks, blocksWhat);
  const std::string supersWhat = "⌈blocks / 256⌉ = ⌈" + Str(blocks) + " / 256⌉";
  w.absmax_scale = ExactArray<float>(a, "absmaxScale", supers, supersWhat);
  w.absmax_offset = ExactArray<float>(a, "absmaxOffset", supers, supersWhat);
  return w;
}

// --- ops -----------------------------------------------------------------------------------------

void CheckDisjoint(const Call& a, const char* name, const char* other) {
  const Args::AnyArray &x = a.arr(name), &y = a.arr(other);
  const auto* x0 = static_cast<const char*>(x.data);
  const auto* y0 = static_cast<const char*>(y.data);
  if (x.length && y.length && x0 < y0 + y.length * 4 && y0 < x0 + x.length * 4) {
    a.failRange(std::string("argument '") + other + "' overlaps '" + name + "' in memory; the output must not alias the input");
  }
}

// (weight..., a, m, c, accumulate): the operands of a product C[m, n] = A[m, k] · B.
std::vector<ArgSpec> ProductArgs(std::vector<ArgSpec> weight, const char* aName, const char* cName) {
  weight.insert(weight.end(), {Arr<float>(aName), Int("m", 0, kMaxDim), Arr<float>(cName), Bool("accumulate")});
  return weight;
}

// (weight..., rowStart, rowEnd, out): rows [rowStart, rowEnd) of Ŵ.
std::vector<ArgSpec> RowsArgs(std::vector<ArgSpec> weight) {
  weight.insert(weight.end(), {Int("rowStart", 0, kMaxDim), Int("rowEnd", 0, kMaxDim), Arr<float>("out")});
  return weight;
}

struct Product {
  int64_t m;
  const float* A;
  float* C;
  bool accumulate;
};

Product ParseProduct(const Call& a, int64_t k, int64_t n, const char* aName, const char* cName, const char* kName,
                     const char* nName) {
  Product p{};
  p.m = a.i("m");
  p.A = ExactArray<float>(a, aName, p.m * k, std::string("m × ") + kName + " = " + Str(p.m) + " × " + Str(k));
  p.C = ExactArray<float>(a, cName, p.m * n, std::string("m × ") + nName + " = " + Str(p.m) + " × " + Str(n));
  p.accumulate = a.flag("accumulate");
  CheckDisjoint(a, aName, cName);
  return p;
}

struct Rows {
  int64_t r0, r1;
  float* out;
};

Rows ParseRows(const Call& a, int64_t rows, int64_t in) {
  Rows r{};
  r.r0 = a.i("rowStart");
  r.r1 = a.i("rowEnd");
  if (r.r0 > r.r1 || r.r1 > rows) {
    a.failRange("rows [" + Str(r.r0) + ", " + Str(r.r1) + ") are not a range within [0, outFeatures = " + Str(rows) + ")");
  }
  r.out = ExactArray<float>(a, "out", (r.r1 - r.r0) * in,
                            "(rowEnd − rowStart) × inFeatures = " + Str(r.r1 - r.r0) + " × " + Str(in));
  return r;
}

Napi::Value AffineMatmul(Call& a) {
  const AffineQuant w = ParseAffine(a);
  const Product p = ParseProduct(a, w.in, w.out, "x", "y", "inFeatures", "outFeatures");
  affine_matmul(w, p.m, p.A, p.C, p.accumulate);
  return a.env().Undefined();
}

Napi::Value AffineMatmulInputGrad(Call& a) {
  const AffineQuant w = ParseAffine(a);
  const Product p = ParseProduct(a, w.out, w.in, "dy", "dx", "outFeatures", "inFeatures");
  affine_matmul_input_grad(w, p.m, p.A, p.C, p.accumulate);
  return a.env().Undefined();
}

Napi::Value AffineDequantize(Call& a) {
  const AffineQuant w = ParseAffine(a);
  const Rows r = ParseRows(a, w.out, w.in);
  affine_dequantize(w, r.r0, r.r1, r.out);
  return a.env().Undefined();
}

Napi::Value CodebookMatmul(Call& a) {
  const CodebookQuant w = ParseCodebook(a);
  const Product p = ParseProduct(a, w.in, w.out, "x", "y", "inFeatures", "outFeatures");
  codebook_matmul(w, p.m, p.A, p.C, p.accumulate);
  return a.env().Undefined();
}

Napi::Value CodebookMatmulInputGrad(Call& a) {
  const CodebookQuant w = ParseCodebook(a);
  const Product p = ParseProduct(a, w.out, w.in, "dy", "dx", "outFeatures", "inFeatures");
  codebook_matmul_input_grad(w, p.m, p.A, p.C, p.accumulate);
  return a.env().Undefined();
}

Napi::Value CodebookDequantize(Call& a) {
  const CodebookQuant w = ParseCodebook(a);
  const Rows r = ParseRows(a, w.out, w.in);
  codebook_dequantize(w, r.r0, r.r1, r.out);
  return a.env().Undefined();
}

Napi::Value QuantMatmulInfoFn(Call& a) {
  return TileInfoObject(a.env(), quant_matmul_info());
}

}  // namespace

void RegisterQuant(Napi::Env env, Napi::Object exports) {
  static const std::vector<OpDef> kOps = {
      {"affineMatmul", ProductArgs(AffineArgs(), "x", "y"), AffineMatmul},
      {"affineMatmulInputGrad", ProductArgs(AffineArgs(), "dy", "dx"), AffineMatmulInputGrad},
      {"affineDequantize", RowsArgs(AffineArgs()), AffineDequantize},
      {"codebookMatmul", ProductArgs(CodebookArgs(), "x", "y"), CodebookMatmul},
      {"codebookMatmulInputGrad", ProductArgs(CodebookArgs(), "dy", "dx"), CodebookMatmulInputGrad},
      {"codebookDequantize", RowsArgs(CodebookArgs()), CodebookDequantize},
      {"quantMatmulInfo", {}, QuantMatmulInfoFn},
  };
  RegisterOps(env, exports, kOps);
}

}  // namespace modulora
