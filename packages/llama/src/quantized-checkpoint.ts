/**
 * Quantized checkpoints: a Hugging Face-style model directory whose linear layers are stored
 * quantized.
 *
 * Directory layout (written to a temporary sibling directory, then renamed into place):
 * - `config.json`: the model's config with a `quantization_config` block (as transformers reads
 *   GPTQ models);
 * - `quantize_config.json`: the same settings as GPTQ tools write them;
 * - `model.safetensors`: dense tensors (embeddings, norms, lm_head and any linear layer left in
 *   full precision) under their Hugging Face names, and per quantized layer, under its prefix
 *   `model.layers.{i}.{self_attn|mlp}.{name}` (or `lm_head`):
 *   - `quant_method: "gptq"` (every quantized layer is `affine` with integer zero points in the
 *     code range, all with the same bits, group size and symmetry): GPTQ's tensors `qweight`
 *     i32 [in·b/32, out], `qzeros` i32 [groups, out·b/32], `scales` f16 [groups, out], `g_idx`
 *     i32 [in] (see `gptqFromAffine`, core's GPTQ codec);
 *   - `quant_method: "modulora"` (anything else: codebook, affine with real zeros, custom): the
 *     tensors of core's `serializeQuantizedWeight` under `{prefix}.{tensor}` (affine: `qweight`,
 *     `scales`, `zeros`, `g_idx`; codebook: `codes`, `levels`, `absmax` or `absmax_codes`,
 *     `absmax_scale`, `absmax_offset`; custom: the plugin's names), and each layer's metadata in
 *     the safetensors `__metadata__` under the key `modulora.layers`: a JSON object from layer
 *     prefix to that layer's metadata.
 * - the tokenizer files of the source model (`copyTokenizerFiles`).
 *
 * The per-layer layouts are core's codecs (`@modulora/core`: formats/codecs/gptq.ts and
 * modulora.ts), re-exported here; saving, the quantization_config and loading are in
 * ./quantized/.
 * @module
 */
export {
  affineFromGptq, gptqFromAffine, hasActOrder, hasZeroZeroPoint, isGptqCompatible, packRowsWords, trivialGIdx, unpackRowsWords,
  MODULORA_LAYERS_METADATA_KEY, type GptqLayerInfo, type GptqTensors, type GptqZeroFormat,
} from "@modulora/core";
export { QUANTIZE_CONFIG_FILE, QuantizedCheckpointError, recordedQuantizer } from "./quantized/config.js";
export { QUANTIZATION_REPORT_FILE, saveQuantizedModel, type SaveQuantizedModelOptions } from "./quantized/save.js";
export { loadQuantizedModel, loadQuantizedModelAsync, type LoadQuantizedModelOptions, type LoadedQuantizedModel } from "./quantized/load.js";
