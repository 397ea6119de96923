export { packedWeight, packedTensor, packedNumber, type PackedWeight } from "./weight.js";
export { registerQuantFormatKernels, getQuantFormatKernels, hasQuantFormatKernels, listQuantFormats, type QuantFormatKernels } from "./table.js";
export {
  quantMatmul, quantMatmulInputGrad, quantDequantize, quantMatmulDef,
  type QuantMatmulAttrs, type QuantDequantizeAttrs,
} from "./ops.js";
