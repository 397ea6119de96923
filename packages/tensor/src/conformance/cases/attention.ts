// Fused attention: causal, GQA ratios 1/2/4, a KV cache (S > T), additive masks, decode (T = 1).
import { attention, type DType } from "../../index.js";
import { attentionGradRef, attentionRef } from "../reference.js";
import type { CaseInput, ConformanceCase } from "../types.js";
import { count, input, perDType } from "./common.js";

interface AttentionRow {
  B: number; T: number; S: number; Hq: number; Hkv: number; D: number;
  causal: boolean;
  scale?: number;
  /** Shape of an additive mask; `hideRow` hides every key of query row 0 (its output is 0). */
  mask?: number[];
  hideRow?: boolean;
  what: string;
  /** Magnitude of q and k (default 2): 12 gives scores in the hundreds (the online softmax must rescale). */
  spread?: number;
}

const ROWS: AttentionRow[] = [
  { B: 1, T: 5, S: 5, Hq: 2, Hkv: 2, D: 8, causal: true, what: "causal G=1" },
  { B: 2, T: 7, S: 7, Hq: 4, Hkv: 2, D: 4, causal: true, what: "causal G=2" },
  { B: 1, T: 3, S: 9, Hq: 4, Hkv: 1, D: 8, causal: true, what: "causal G=4 KV cache S>T" },
  { B: 1, T: 1, S: 17, Hq: 2, Hkv: 1, D: 3, causal: true, what: "decode T=1 G=2 odd D" },
  { B: 1, T: 17, S: 17, Hq: 2, Hkv: 1, D: 8, causal: true, what: "causal G=2 T=17" },
  { B: 1, T: 4, S: 6, Hq: 2, Hkv: 1, D: 8, causal: false, mask: [4, 6], hideRow: true, what: "mask [T,S] with a fully masked row" },
  { B: 2, T: 5, S: 5, Hq: 2, Hkv: 2, D: 8, causal: true, mask: [2, 1, 5, 5], what: "causal + mask [B,1,T,S]" },
  { B: 1, T: 3, S: 4, Hq: 1, Hkv: 1, D: 5, causal: false, scale: 0.7, what: "non-causal scale=0.7" },
  { B: 1, T: 9, S: 9, Hq: 2, Hkv: 1, D: 8, causal: true, spread: 12, what: "large scores" },
  { B: 1, T: 0, S: 3, Hq: 2, Hkv: 1, D: 4, causal: true, what: "no queries T=0" },
  { B: 1, T: 2, S: 0, Hq: 2, Hkv: 1, D: 4, causal: false, what: "no keys S=0 (output 0)" },
  { B: 0, T: 2, S: 2, Hq: 2, Hkv: 2, D: 4, causal: true, what: "empty batch B=0" },
];

function attentionCase(dtype: DType, r: AttentionRow): ConformanceCase {
  const qs = [r.B, r.T, r.Hq, r.D];
  const ks = [r.B, r.S, r.Hkv, r.D];
  const scale = r.scale ?? 1 / Math.sqrt(r.D);
  return {
    op: "attention", dtype, label: `q[${qs}] kv[${ks}] ${r.what}`, kernels: ["attention", "attentionBackward"],
    ulps: 16, depth: r.S * r.D, gradDepth: r.S * r.D * (r.Hq / r.Hkv),
    fdStep: r.spread ? 1e-4 : undefined, // scores in the hundreds: the finite-difference check needs a finer step
    inputs: (rng) => {
      const xs: CaseInput[] = [
        input(qs, dtype, rng.uniform(count(qs), -(r.spread ?? 2), r.spread ?? 2), true),
        input(ks, dtype, rng.uniform(count(ks), -(r.spread ?? 2), r.spread ?? 2), true),
        input(ks, dtype, rng.uniform(count(ks)), true),
      ];
      if (r.mask) {
        const m = rng.uniform(count(r.mask), -1, 0);
        // Hide a random third of the keys, never a whole row unless asked (causal rows keep key 0).
        for (let i = 0; i < m.length; i++) if (i % r.S !== 0 && rng.next() < 0.33) m[i] = -Infinity;
        if (r.hideRow) for (let j = 0; j < r.S; j++) m[j] = -Infinity;
        xs.push(input(r.mask, dtype, m));
      }
      return xs;
    },
    forward: ([q, k, v, mask]) => attention(q!, k!, v!, { causal: r.causal, scale: r.scale, mask: mask ?? null }),
    reference: ([q, k, v, mask]) => attentionRef(q!, k!, v!, qs, ks, { causal: r.causal, scale, mask: mask && { data: mask, shape: r.mask! } }),
    referenceGrad: ([q, k, v, mask], w) => [
      ...attentionGradRef(q!, k!, v!, qs, ks, { causal: r.causal, scale, mask: mask && { data: mask, shape: r.mask! } }, w),
      ...(mask ? [null] : []),
    ],
  };
}

/** Attention cases (the reference gradient is analytic; a test checks it against finite differences). */
export const ATTENTION_CASES: ConformanceCase[] = perDType((dtype) => ROWS.map((r) => attentionCase(dtype, r)));
