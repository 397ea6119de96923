import { noGrad, sub, sum, tidy, type Tensor } from "@modulora/tensor";
import type { QuantizeOptions, QuantizerPlugin } from "./spec.js";

/**
 * The checks every plugin needs before quantizing: `weight` is a live 2-D f32 tensor of finite
 * values, on any device (checked there); `bits` is one the plugin supports; `groupSize` is "row" or a positive
 * divisor of `in`. Throws an Error saying what was wrong. Returns the resolved group size.
 */
export function checkQuantizeInputs(plugin: Pick<QuantizerPlugin, "name" | "supportedBits">, weight: Tensor, options: QuantizeOptions): number {
  const who = `quantizer '${plugin.name}'`;
  if (!weight || typeof weight !== "object" || typeof (weight as Tensor).assertAlive !== "function") throw new TypeError(`${who}: weight must be a Tensor`);
  weight.assertAlive(`${plugin.name}.quantize`);
  if (weight.rank !== 2) throw new RangeError(`${who}: weight must be 2-D [out, in], got shape [${weight.shape}]`);
  if (weight.dtype !== "f32") throw new TypeError(`${who}: weight must be f32, got ${weight.dtype}; cast it first`);
  const [out, inF] = weight.shape as [number, number];
  if (out === 0 || inF === 0) throw new RangeError(`${who}: weight [${out}, ${inF}] is empty`);
  if (!options || typeof options !== "object") throw new TypeError(`${who}: options must be an object with bits and groupSize`);
  if (!plugin.supportedBits.includes(options.bits)) {
    throw new RangeError(`${who}: bits = ${JSON.stringify(options.bits)} is not supported; use one of ${plugin.supportedBits.join(", ")}`);
  }
  const g = options.groupSize === "row" ? inF : options.groupSize;
  if (!Number.isInteger(g) || g < 1 || inF % g !== 0) {
    throw new RangeError(`${who}: group size ${JSON.stringify(options.groupSize)} does not divide in = ${inF}; use a divisor of ${inF} or "row"`);
  }
  // Finiteness on the weight's device: Σ(w − w) is 0 when every value is finite and NaN
  // otherwise (one scalar read); only a failing weight is copied out, to say where.
  const probe = noGrad(() => tidy(() => sum(sub(weight, weight)).item()));
  if (probe !== 0) {
    const data = weight.dataSync() as Float32Array;
    const i = data.findIndex((v) => !Number.isFinite(v));
    throw new RangeError(`${who}: weight has a non-finite value (${data[i]}) at row ${Math.floor(i / inF)}, column ${i % inF}`);
  }
  return g;
}
