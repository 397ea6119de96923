// A quantizer written in plain TypeScript with its own (custom) format: ternary weights
// {−a_j, 0, +a_j} per output row (threshold 0.7·mean|w|, as ternary weight networks do).
import { keep, tensorFrom, type Tensor } from "@modulora/tensor";
import { checkQuantizeInputs, QUANTIZER_SPEC_VERSION, type CustomWeight, type QuantizerPlugin } from "../src/index.js";

export class TernaryWeight implements CustomWeight {
  readonly format = "custom" as const;
  readonly plugin = "ternary";
  readonly bits = 2;
  materializeCalls = 0;
  constructor(readonly outFeatures: number, readonly inFeatures: number, readonly signs: Tensor, readonly alpha: Tensor) {}
  materialize(r0: number, r1: number, out: Float32Array): void {
    this.materializeCalls++;
    // Plain host arrays, copied out of the weight's tensors (on any device).
    const s = this.signs.dataSync() as Int8Array;
    const a = this.alpha.dataSync() as Float32Array;
    for (let j = r0; j < r1; j++) for (let i = 0; i < this.inFeatures; i++) out[(j - r0) * this.inFeatures + i] = a[j]! * s[j * this.inFeatures + i]!;
  }
  storageBytes(): number {
    return this.signs.size + this.alpha.size * 4;
  }
  bitsPerWeight(): number {
    return (this.storageBytes() * 8) / (this.outFeatures * this.inFeatures);
  }
  dispose(): void {
    this.signs.dispose();
    this.alpha.dispose();
  }
}

export const ternaryQuantizer: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "ternary",
  calibration: "none",
  supportedBits: [2],
  quantize(weight, options) {
    checkQuantizeInputs(ternaryQuantizer, weight, options);
    const [out, inF] = weight.shape as [number, number];
    const w = weight.dataSync() as Float32Array;
    const signs = new Int8Array(out * inF);
    const alpha = new Float32Array(out);
    for (let j = 0; j < out; j++) {
      let meanAbs = 0;
      for (let i = 0; i < inF; i++) meanAbs += Math.abs(w[j * inF + i]!);
      const delta = (0.7 * meanAbs) / inF;
      let sum = 0, n = 0;
      for (let i = 0; i < inF; i++) {
        const v = w[j * inF + i]!;
        if (Math.abs(v) > delta) {
          signs[j * inF + i] = v > 0 ? 1 : -1;
          sum += Math.abs(v);
          n++;
        }
      }
      alpha[j] = n ? sum / n : 0;
    }
    const device = weight.device;
    return new TernaryWeight(out, inF, keep(tensorFrom(signs, { shape: [out, inF], dtype: "i8", device })), keep(tensorFrom(alpha, { shape: [out], dtype: "f32", device })));
  },
  serialize(qw) {
    const t = qw as TernaryWeight;
    return { tensors: { signs: t.signs, alpha: t.alpha }, metadata: { threshold: 0.7 } };
  },
  deserialize(tensors, metadata) {
    const signs = tensors.signs!, alpha = tensors.alpha!;
    if (metadata.threshold !== 0.7) throw new Error("ternary: unexpected metadata");
    return new TernaryWeight(signs.shape[0]!, signs.shape[1]!, signs, alpha);
  },
};
