/**
 * `@modulora/core`: the quantizer plugin spec, the packed weight formats, the quantized linear
 * op and `ModuLoRALinear`.
 * @packageDocumentation
 */
export { QUANTIZER_SPEC_VERSION, type CalibrationKind, type CalibrationStats, type QuantizeOptions, type QuantizerOptionSpec, type QuantizerPlugin, type SerializedWeight } from "./spec.js";
export { COMMON_OPTION_KEYS, FALLBACK_GROUP_SIZE, groupSizeFor, optionFlag, unsupportedGroupSize, resolveQuantizerOptions, validateOptionSpecs } from "./options.js";
export { registerQuantizer, unregisterQuantizer, getQuantizer, listQuantizers, resolveQuantizer, validateQuantizer } from "./registry.js";
export type { AffineWeight, CodebookWeight, CustomWeight, FormatName, QuantizedWeight, QuantizedWeightBase } from "./formats/types.js";
export { AFFINE_BITS, createAffineWeight, affineFromTensors, affinePackedWeight, affineReferenceDequantize, type AffineParts } from "./formats/affine.js";
export { CODEBOOK_BITS, ABSMAX_SUPERBLOCK, createCodebookWeight, codebookFromTensors, codebookPackedWeight, codebookReferenceDequantize, type CodebookParts } from "./formats/codebook.js";
export { FORMAT_TRAITS, formatTraits, predictedStorageBytes, packedWeightOf, weightDevice, type FormatTraits } from "./formats/traits.js";
export { packColumns, packedWords, unpackColumnCode, packRowsBytes, unpackRowByteCode } from "./formats/pack.js";
export { toF16Bits, fromF16Bits, roundToF16, f16Table } from "./formats/f16.js";
export { serializeQuantizedWeight, deserializeQuantizedWeight } from "./formats/serialize.js";
export {
  affineFromGptq, gptqCheckpointFormat, gptqCheckpointSettings, gptqFromAffine, gptqSettingsFromConfig, hasActOrder, hasZeroZeroPoint, isGptqCompatible,
  packRowsWords, trivialGIdx, unpackRowsWords,
  type GptqCheckpointSettings, type GptqLayerInfo, type GptqSettings, type GptqTensors, type GptqZeroFormat,
} from "./formats/codecs/gptq.js";
export {
  MODULORA_LAYERS_METADATA_KEY, ModuloraLayersEncoder, checkModuloraLayerShape, decodeModuloraLayer, moduloraLayerTensorNames, readModuloraLayersMetadata,
  type ModuloraLayersMetadata,
} from "./formats/codecs/modulora.js";
export { optqSolve, optqSolveAsync, type OptqSolution, type OptqSolveOptions } from "./optq.js";
export { quantLinear, quantLinearDef, genericForward, genericInputGrad, resolvePath, DEFAULT_ROW_BLOCK, type QuantPath, type QuantLinearAttrs } from "./quant-linear.js";
export { ModuLoRALinear, stepSeed, type LoRAOptions, type ModuLoRALinearOptions, type ForwardOptions } from "./modulora-linear.js";
export { checkQuantizeInputs } from "./validate.js";
export { accumulateHessian, accumulateAbsSum } from "./calibration.js";
export { Trainer, TrainingError, isTrainerEntry, TRAINER_DTYPES, type TrainerDType, type TrainerOptions, type TrainerEvent, type TrainResult, type Batch, type DataSource, type EvalResult } from "./train/trainer.js";
export type { TrainerDataParallel } from "./train/data-parallel.js";
export { learningRate, checkSchedule, type ScheduleKind, type ScheduleOptions } from "./train/schedule.js";
export { clipGradNorm, gradNorm, gradNormChecked, gradsNonFinite } from "./train/clip.js";
export { listCheckpoints, readCheckpoint, writeCheckpoint, type TrainerState } from "./train/state.js";
export { acquireLock, lockOwner, processAlive, LockedError, LOCK_FILE, type DirectoryLock, type LockOwner } from "./train/lock.js";
export { appendNoFollow, isStaleTemp, isTempName, lexists, recoverOutDir, replaceDir, writeFileAtomic } from "./train/files.js";
export { LoRALinear, loraBranch, initLoRAFactors, resolveLoRAOptions, type LoRALinearOptions, type ResolvedLoRAOptions } from "./lora-dense.js";
