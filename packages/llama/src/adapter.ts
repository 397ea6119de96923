/**
 * LoRA adapters on a {@link LlamaModel}, and adapter directories in PEFT's layout.
 *
 * {@link attachLoRA} wraps the targeted linears of every block in a {@link LoRALayer}. The LoRA
 * implementation for a base layer is chosen by an ordered list of dispatchers, first match wins
 * (dense → `LoRALinear`, quantized → `ModuLoRALinear`), as PEFT's `_create_new_module`; a base
 * no dispatcher handles is an error listing the supported kinds.
 *
 * {@link saveAdapter} and {@link loadAdapter} read and write PEFT's files, so adapters move freely
 * between this toolkit and PEFT: `adapter_config.json` and `adapter_model.safetensors`, plus
 * `modulora.json` for what PEFT has no field for (the base model's identity and quantization).
 *
 * This module gathers the public names of the pieces in `./adapter/`:
 * - `lora-layer.ts`: {@link LoRALayer}, the {@link LoRADispatcher}s and {@link createLoRALayer};
 * - `attach.ts`: {@link LoRAConfig}, the {@link Adapter} handle, {@link attachLoRA}, {@link mergedWeights};
 * - `metadata.ts`: the file names, `modulora.json` ({@link baseModelFingerprint}, {@link adapterQuantizationOf});
 * - `peft-config.ts`: writing and validating `adapter_config.json` ({@link peftAdapterConfig});
 * - `save.ts`: {@link saveAdapter};
 * - `load.ts`: {@link loadAdapter} and {@link AdapterError}.
 * @module
 */
export { createLoRALayer, LORA_DISPATCHERS, LoRALayer, type LoRADispatcher, type LoRALayerOptions, type LoRAModule } from "./adapter/lora-layer.js";
export { Adapter, attachLoRA, loraLayerSeed, loraModuleName, mergedWeights, peftTensorName, type AttachLoRAOptions, type LoRAConfig, type Slot } from "./adapter/attach.js";
export {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, adapterQuantizationOf, baseModelFingerprint, describeAdapterQuantization, FINGERPRINT_IGNORED_KEYS,
  MODULORA_ADAPTER_FILE, MODULORA_ADAPTER_VERSION, type AdapterQuantization, type BaseModelFingerprint, type ModuloraAdapterMetadata,
} from "./adapter/metadata.js";
export { peftAdapterConfig } from "./adapter/peft-config.js";
export { saveAdapter, type AdapterExtra, type SaveAdapterOptions } from "./adapter/save.js";
export { AdapterError, loadAdapter, type LoadAdapterOptions } from "./adapter/load.js";
