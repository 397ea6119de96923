import type { Tensor } from "@modulora/tensor";
import type { QuantizeOptions, QuantizerPlugin } from "./spec.js";

/**
 * The checks every plugin needs before quantizing: `weight` is a live, contiguous 2-D f32 tensor
 * of finite values; `bits` is one the plugin supports; `groupSize` is "row" or a positive
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
  const dense = weight.isContiguous ? weight : weight.contiguous();
  try {
    const data = dense.view() as Float32Array;
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) {
        throw new RangeError(`${who}: weight has a non-finite value (${data[i]}) at row ${Math.floor(i / inF)}, column ${i % inF}`);
      }
    }
  } finally {
    if (dense !== weight) dense.dispose();
  }
  return g;
}
