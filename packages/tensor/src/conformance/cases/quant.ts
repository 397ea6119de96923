// The quantized ops (quantMatmul forward and, through its backward, the input gradient;
// quantDequantize) for the formats of the quantized format table: `affine` (GPTQ layout) at
// every bit width the kernels take, and `codebook` with plain and double-quantized block scales.
// Each case draws unpacked codes and metadata from the case generator, packs them here
// (quant-pack.ts), uploads the stored arrays to the backend, and checks the op against Ŵ decoded
// in f64 from the unpacked codes.
import { packedWeight, quantDequantize, quantMatmul, type DType, type PackedWeight, type Tensor } from "../../index.js";
import type { F64 } from "../reference.js";
import type { CaseInput, CaseRng, ConformanceCase } from "../types.js";
import { fmt, input, ints } from "./common.js";
import {
  codebookAbsmaxRef, decodeAffineRef, decodeCodebookRef, matmulNNRef, matmulNTRef, packAffineCodes, packCodebookCodes,
} from "./quant-pack.js";

/** Bit widths of the `affine` kernels (core's AFFINE_BITS; the addon refuses others). */
export const AFFINE_CASE_BITS = [2, 3, 4, 8] as const;
/** Bit widths of the `codebook` kernels (core's CODEBOOK_BITS). */
export const CODEBOOK_CASE_BITS = [1, 2, 3, 4] as const;

/** One packed weight of a case: how to draw it, upload it and decode it. */
interface WeightSpec {
  readonly format: string;
  readonly out: number;
  readonly in: number;
  /** `affine b4 g32 zeros=int`. */
  readonly label: string;
  /** The weight's inputs; the first is the unpacked codes `[out, in]` (reference only). */
  inputs(rng: CaseRng): CaseInput[];
  /** The PackedWeight from the uploaded tensors (the inputs less the codes). */
  weight(ts: Tensor[]): PackedWeight;
  /** Ŵ `[out, in]` in f64 from the input values (codes first). */
  decode(vs: F64[]): F64;
}

/** The codes `[out, in]`, as a reference-only input. */
function codesInput(rng: CaseRng, out: number, inF: number, bits: number): CaseInput {
  return { ...ints([out, inF], rng.ints(out * inF, 0, 2 ** bits)), referenceOnly: true };
}

interface AffineConfig {
  readonly bits: number;
  readonly out: number;
  readonly in: number;
  /** Input columns per group (`in`: one group per row). */
  readonly groupSize: number;
  readonly zeros: "int" | "real";
  /** An act-order permutation: gIdx[perm[k]] = ⌊k / groupSize⌋. */
  readonly gIdx?: boolean;
}

function affineSpec(c: AffineConfig): WeightSpec {
  const { bits, out, groupSize } = c;
  const inF = c.in;
  const groups = c.gIdx ? Math.ceil(inF / groupSize) : inF / groupSize;
  if (!Number.isInteger(groups)) throw new Error(`affine case: groupSize ${groupSize} does not divide in = ${inF} (without gIdx)`);
  const words = Math.ceil(inF / 32) * bits;
  const qmax = 2 ** bits - 1;
  return {
    format: "affine", out, in: inF,
    label: `affine b${bits} ${groupSize === inF ? "g=row" : `g${groupSize}`} zeros=${c.zeros}${c.gIdx ? " gIdx" : ""}`,
    inputs: (rng) => {
      const codes = codesInput(rng, out, inF, bits);
      // Scales keep Ŵ of order 1: (q − z) spans ±2^bits.
      const scales = rng.uniform(groups * out, 0.5, 1.5).map((s) => s / 2 ** bits);
      const zeros = c.zeros === "int" ? rng.ints(groups * out, 0, qmax + 1) : rng.uniform(groups * out, 0, qmax);
      const list: CaseInput[] = [
        codes,
        ints([words, out], packAffineCodes(codes.data, out, inF, bits)),
        input([groups, out], "f16", scales),
        c.zeros === "int" ? { shape: [groups, out], dtype: "u8", data: zeros } : input([groups, out], "f16", zeros),
      ];
      if (c.gIdx) {
        const perm = Array.from({ length: inF }, (_, i) => i);
        for (let i = inF - 1; i > 0; i--) {
          const k = Math.floor(rng.next() * (i + 1));
          [perm[i], perm[k]] = [perm[k]!, perm[i]!];
        }
        const g = new Float64Array(inF);
        perm.forEach((col, k) => (g[col] = Math.floor(k / groupSize)));
        list.push(ints([inF], g));
      }
      return list;
    },
    weight: ([qweight, scales, zeros, gIdx]) => packedWeight({
      format: "affine", outFeatures: out, inFeatures: inF, bits,
      tensors: { qweight: qweight!, scales: scales!, zeros: zeros!, gIdx: gIdx ?? null },
      params: { groupSize, groups, zeroKind: c.zeros },
    }),
    decode: ([codes, , scales, zeros, gIdx]) => decodeAffineRef(codes!, scales!, zeros!, gIdx ?? null, out, inF, groupSize),
  };
}

interface CodebookConfig {
  readonly bits: number;
  readonly out: number;
  readonly in: number;
  readonly blockSize: number;
  /** Double-quantized block scales (u8 codes, f32 scale and offset per 256 blocks). */
  readonly dq: boolean;
}

function codebookSpec(c: CodebookConfig): WeightSpec {
  const { bits, out, blockSize, dq } = c;
  const inF = c.in;
  const blocks = (out * inF) / blockSize;
  if (!Number.isInteger(inF / blockSize)) throw new Error(`codebook case: blockSize ${blockSize} does not divide in = ${inF}`);
  const supers = Math.ceil(blocks / 256);
  return {
    format: "codebook", out, in: inF,
    label: `codebook b${bits} block${blockSize} absmax=${dq ? "dq" : "f32"}`,
    inputs: (rng) => {
      const codes = codesInput(rng, out, inF, bits);
      const levels = rng.uniform(2 ** bits).sort();
      const list: CaseInput[] = [
        codes,
        { shape: [out, Math.ceil((inF * bits) / 8)], dtype: "u8", data: packCodebookCodes(codes.data, out, inF, bits) },
        input([2 ** bits], "f32", levels),
      ];
      if (!dq) return [...list, input([blocks], "f32", rng.uniform(blocks, 0.5, 2))];
      return [
        ...list,
        { shape: [blocks], dtype: "u8", data: rng.ints(blocks, 0, 256) },
        input([supers], "f32", rng.uniform(supers, 0.002, 0.008)),
        input([supers], "f32", rng.uniform(supers, 0.2, 0.5)),
      ];
    },
    weight: ([codes, levels, a, b, d]) => packedWeight({
      format: "codebook", outFeatures: out, inFeatures: inF, bits,
      tensors: dq
        ? { codes: codes!, levels: levels!, absmax: null, absmaxCodes: a!, absmaxScale: b!, absmaxOffset: d! }
        : { codes: codes!, levels: levels!, absmax: a!, absmaxCodes: null, absmaxScale: null, absmaxOffset: null },
      params: { blockSize },
    }),
    decode: ([codes, , levels, a, b, d]) => {
      const absmax = codebookAbsmaxRef(dq ? null : a!, dq ? { codes: a!, scale: b!, offset: d! } : null);
      return decodeCodebookRef(codes!, levels!, absmax, out, inF, blockSize);
    },
  };
}

/**
 * `quantMatmul` with `x [m, in]`: forward X·Ŵᵀ (f32 accumulation over `in`) and, by the backward
 * of Σ y ⊙ w, the input gradient w·Ŵ (over `out`). `strided`: x is a transposed view. `dtype`:
 * x's (and y's, dx's) dtype, f32 or bf16 (computed in f32, rounded to bf16 once).
 */
function quantMatmulCase(spec: WeightSpec, m: number, strided = false, dtype: DType = "f32"): ConformanceCase {
  const { out } = spec;
  const inF = spec.in;
  return {
    op: "quantMatmul", dtype, label: `${spec.label} x${fmt([m, inF])} w${fmt([out, inF])}${strided ? " strided" : ""}`,
    kernels: strided ? ["contiguous"] : [],
    quantKernels: [`${spec.format}.forward`, `${spec.format}.inputGrad`],
    // The fused kernels decode Ŵ to f32 (one to three roundings per weight) and accumulate in f32.
    depth: inF,
    gradDepth: out,
    inputs: (rng) => [{ ...input([m, inF], dtype, rng.uniform(m * inF), true), layout: strided ? "transposed" : "contiguous" }, ...spec.inputs(rng)],
    forward: ([x, ...w]) => quantMatmul(x!, spec.weight(w)),
    reference: ([x, ...w]) => matmulNTRef(x!, spec.decode(w), m, out, inF),
    referenceGrad: ([, ...w], dy) => [matmulNNRef(dy, spec.decode(w), m, out, inF), ...w.map(() => null)],
  };
}

/** `quantDequantize` of rows `[r0, r1)`: Ŵ in f32, one rounding per weight for affine, up to three for codebook. */
function quantDequantizeCase(spec: WeightSpec, r0: number, r1: number): ConformanceCase {
  const inF = spec.in;
  return {
    op: "quantDequantize", dtype: "f32", label: `${spec.label} w${fmt([spec.out, inF])} rows [${r0},${r1})`,
    kernels: [],
    quantKernels: [`${spec.format}.dequantize`],
    inputs: (rng) => spec.inputs(rng),
    forward: (w) => quantDequantize(spec.weight(w), r0, r1),
    reference: (w) => spec.decode(w).slice(r0 * inF, r1 * inF),
  };
}

/** Row ranges a dequantize case takes, in turn: all rows, an inner range, the last row, none. */
function rowRange(k: number, out: number): [number, number] {
  return ([[0, out], [3, out - 5], [out - 1, out], [2, 2]] as [number, number][])[k % 4]!;
}

function affineCases(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  for (const bits of AFFINE_CASE_BITS) {
    // [m, config]: out and in off the tiles (quantMatmulInfo() on avx512: mr 14, nr 32, kc 512,
    // nc 512), in not a multiple of 32 (padded bit streams), one group per row, act-order, real
    // zeros; m ≤ 3 takes the kernels' few-rows path (m·4 ≤ mr), m = 5 the tiled one.
    const rows: [number, AffineConfig][] = [
      [5, { bits, out: 37, in: 96, groupSize: 32, zeros: "int" }],
      [5, { bits, out: 37, in: 96, groupSize: 32, zeros: "real" }],
      [5, { bits, out: 37, in: 100, groupSize: 32, zeros: "int", gIdx: true }],
      [3, { bits, out: 45, in: 100, groupSize: 100, zeros: "int" }],
      [1, { bits, out: 33, in: 256, groupSize: 128, zeros: "real", gIdx: true }],
    ];
    rows.forEach(([m, cfg], k) => {
      const spec = affineSpec(cfg);
      cases.push(quantMatmulCase(spec, m));
      if (k === 0 || k === 2) cases.push(quantMatmulCase(spec, m, false, "bf16"));
      if (k < 4) cases.push(quantDequantizeCase(spec, ...rowRange(k + bits, cfg.out)));
    });
  }
  // Larger blocks: m > mr, in > kc = 512 (several depth blocks), out > nc = 512, m = 0.
  const big4 = affineSpec({ bits: 4, out: 70, in: 640, groupSize: 128, zeros: "int" });
  const big3 = affineSpec({ bits: 3, out: 70, in: 640, groupSize: 128, zeros: "real", gIdx: true });
  const wide = affineSpec({ bits: 4, out: 530, in: 64, groupSize: 64, zeros: "int" });
  const b8 = affineSpec({ bits: 8, out: 40, in: 160, groupSize: 32, zeros: "real" });
  const base4 = affineSpec({ bits: 4, out: 37, in: 96, groupSize: 32, zeros: "int" });
  cases.push(
    quantMatmulCase(big4, 17), quantMatmulCase(big3, 17), quantMatmulCase(wide, 2), quantMatmulCase(b8, 16),
    quantMatmulCase(base4, 0), quantMatmulCase(base4, 5, true),
    quantDequantizeCase(big3, 10, 60), quantDequantizeCase(wide, 500, 530),
    // bf16 inputs: several depth blocks, act-order, wide out, 8 bits, m = 0, a strided input.
    quantMatmulCase(big3, 17, false, "bf16"), quantMatmulCase(wide, 2, false, "bf16"), quantMatmulCase(b8, 16, false, "bf16"),
    quantMatmulCase(base4, 0, false, "bf16"), quantMatmulCase(base4, 5, true, "bf16"),
  );
  return cases;
}

function codebookCases(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  for (const bits of CODEBOOK_CASE_BITS) {
    for (const dq of [false, true]) {
      // in = 100 with 20-wide blocks: rows whose bit streams end mid-byte (1 and 3 bits).
      const rows: [number, CodebookConfig][] = [
        [5, { bits, out: 37, in: 128, blockSize: 64, dq }],
        [3, { bits, out: 45, in: 100, blockSize: 20, dq }],
      ];
      rows.forEach(([m, cfg], k) => {
        const spec = codebookSpec(cfg);
        cases.push(quantMatmulCase(spec, m));
        if (k === 0) cases.push(quantMatmulCase(spec, m, false, "bf16"));
        if (k === 0) cases.push(quantDequantizeCase(spec, ...rowRange(bits + (dq ? 1 : 0), cfg.out)));
      });
    }
  }
  // 700 blocks: three super-blocks of double-quantized scales; m > mr, in > kc, out > nc, m = 0.
  const big = codebookSpec({ bits: 4, out: 70, in: 640, blockSize: 64, dq: true });
  const big3 = codebookSpec({ bits: 3, out: 70, in: 640, blockSize: 64, dq: false });
  const wide = codebookSpec({ bits: 4, out: 530, in: 64, blockSize: 32, dq: true });
  const base = codebookSpec({ bits: 4, out: 37, in: 128, blockSize: 64, dq: false });
  cases.push(
    quantMatmulCase(big, 17), quantMatmulCase(big3, 17), quantMatmulCase(wide, 1), quantMatmulCase(base, 0),
    quantDequantizeCase(big, 0, 70), quantDequantizeCase(wide, 250, 530),
    quantMatmulCase(big, 17, false, "bf16"), quantMatmulCase(wide, 1, false, "bf16"), quantMatmulCase(base, 0, false, "bf16"),
    quantMatmulCase(base, 5, true, "bf16"),
  );
  return cases;
}

/**
 * The quantized cases: quantMatmul at f32 and bf16 (bf16 inputs computed in f32 with f32
 * accumulation, outputs and input gradients rounded to bf16), quantDequantize at f32 (Ŵ is always
 * decoded to f32; the op has no input dtype).
 */
export const QUANT_CASES: ConformanceCase[] = [...affineCases(), ...codebookCases()];
