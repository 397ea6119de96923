/**
 * safetensors I/O: a byte-level layer (header parsing, a streaming or memory-mapped reader, an
 * atomic writer) that knows nothing of tensors, and Tensor-level load/save on top of it.
 */
export { SafetensorsError, type SafetensorsErrorCode } from "./errors.js";
export {
  DEFAULT_MAX_HEADER_BYTES,
  dtypeFromSafetensors,
  encodeSafetensorsHeader,
  METADATA_KEY,
  parseSafetensorsHeader,
  SAFETENSORS_DATA_ALIGNMENT,
  SAFETENSORS_PREFIX_BYTES,
  shapeByteLength,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type SafetensorsHeaderEntry,
} from "./format.js";
export { SafetensorsReader, type SafetensorsOpenOptions, type SafetensorsReadMode } from "./reader.js";
export { writeSafetensors, type SafetensorsTensorData, type WriteSafetensorsOptions } from "./writer.js";
export { loadSafetensors, saveSafetensors, type LoadSafetensorsOptions } from "./tensors.js";
