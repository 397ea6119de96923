/**
 * `@modulora/tensor`: tensors on native storage, memory scopes, a backend op registry, an
 * autograd tape, the core ops, and safetensors I/O.
 * @packageDocumentation
 */
export { Tensor, isTensor, type TensorOptions } from "./tensor.js";
export { DTYPES, DTYPE_INFO, dtypeInfo, isDType, bitsToNumber16, type DType, type DTypeInfo, type ArrayFor, type AnyTypedArray } from "./dtype.js";
export { broadcastShapes, contiguousStrides, formatShape, shapeSize, shapesEqual, type Shape } from "./shape.js";
export { OpError, type Described } from "./errors.js";
export { Storage } from "./storage.js";
export { tidy, keep, dispose, memory, resetPeakMemory, noGrad, enableGrad, isGradEnabled, type MemoryInfo } from "./engine.js";
export {
  getBackend, listBackends, registerBackend, registerKernel, getKernel, hasKernel, listKernels, setBackendRegistration, parseDevice,
  type Backend, type BackendMemory, type Device, type Kernel, type ParsedDevice, type StorageHandle,
} from "./backend.js";
export { registerCpuBackend, cpuBackend, registerHostKernels, hostTransfers } from "./cpu/backend.js";
export { backward, Node, type Edge, type BackwardOptions, type BackwardFn, type GradContext } from "./autograd.js";
export { runOp, runOp1, runComposite, checkFloat, checkInputs, type OpDef } from "./op.js";
export * from "./ops/index.js";
export { AdamW, type AdamWOptions } from "./optim.js";
export { philox4x32, uniformFill, normalFill, seedToKey } from "./random.js";
export * from "./safetensors/index.js";
export { getNumThreads, setNumThreads, cpuInfo, hasCuda, trimAllocatorCache, type CpuInfo } from "@modulora/kernels";
export { checkpoint } from "./checkpoint.js";
export { OPTQ_SOLVE_OP, type OptqSolveAttrs } from "./optq.js";
export {
  packedWeight, packedTensor, packedNumber, registerQuantFormatKernels, getQuantFormatKernels, hasQuantFormatKernels, listQuantFormats,
  quantMatmul, quantMatmulInputGrad, quantDequantize, quantMatmulDef,
  type PackedWeight, type QuantFormatKernels, type QuantMatmulAttrs, type QuantDequantizeAttrs,
} from "./quant/index.js";
export { registerSimBackend, simStats, resetSimStats, type SimStats } from "./sim/backend.js";
export { cudaMemory, emptyCudaCache, synchronizeCuda, registerCudaBackend, type CudaMemory } from "./cuda/backend.js";
export { cudaAddress } from "./cuda/address.js";
// The NCCL facade of the addon, for @modulora/distributed's NcclCommunicator (which depends on this package only).
export {
  ncclInfo, ncclAddon, ncclUniqueId, ncclInit, ncclAllReduce, ncclBroadcast, ncclGroup, ncclAsyncError, ncclAbort, ncclDestroy, cudaFence,
  NCCL_NO_CUDA_BUILD, type NcclInfo, type NcclComm, type NcclReduceOp, type RawNccl,
} from "@modulora/kernels";
export { randomPackedCodes, quantRowBlock, QUANT_SCRATCH_BYTES } from "./cuda/quant.js";
