// Loading a quantized checkpoint: GPTQ's layout (ours or another tool's) or the `modulora'
// layout, each layer decoded by core's codec; dense tensors and shapes checked against the config.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { cast, keep, tensorFrom, SafetensorsReader, type Device, type Tensor } from "@modulora/tensor";
import {
  affineFromGptq, checkModuloraLayerShape, decodeModuloraLayer, gptqSettingsFromConfig, moduloraLayerTensorNames, readModuloraLayersMetadata, resolveQuantizer,
  MODULORA_LAYERS_METADATA_KEY, type GptqSettings, type ModuloraLayersMetadata, type QuantizerPlugin,
} from "@modulora/core";
import {
  CheckpointError, checkpointShards, expectedTensorShapes, layerCountProblem, nonFiniteProblem, runLoaderAsync, runLoaderSync, type HostArray, type Loader,
} from "../checkpoint.js";
import { readLlamaConfig } from "../config.js";
import { DenseLinear, QuantizedLinear } from "../linear.js";
import { checkModelDType, LlamaModel, type ModelDType } from "../model.js";
import { linearModuleName } from "../quantize.js";
import { LlamaTokenizer } from "../tokenizer.js";
import { LINEAR_NAMES, type Linear, type LinearName, type LlamaConfig, type LlamaLayer } from "../types.js";
import { QuantizedCheckpointError, readQuantizationConfig, recordedQuantizer } from "./config.js";

/** Options of {@link loadQuantizedModel}. */
export interface LoadQuantizedModelOptions {
  /** The plugin that made `custom`-format weights (needed to read them). */
  plugin?: QuantizerPlugin | string;
  /**
   * Where the model goes (default `cpu`): each tensor is read and checked on the host, then copied
   * in with one transfer (GPTQ's `qzeros` and `g_idx` are unpacked on the host first).
   */
  device?: Device;
  /**
   * Compute dtype (default `"f32"`): the dense tensors (embeddings, norms, dense linears) are cast
   * to it on the device; with `"bf16"` the quantized linears take bf16 activations and compute in f32.
   */
  dtype?: ModelDType;
}

/** What {@link loadQuantizedModel} returns. */
export interface LoadedQuantizedModel {
  model: LlamaModel;
  tokenizer: LlamaTokenizer | null;
  config: LlamaConfig;
}

/**
 * Loads a quantized checkpoint written by {@link saveQuantizedModel} or by GPTQ tools
 * (`quant_method: "gptq"`, v1 or `checkpoint_format: "gptq_v2"` zero points, with or without
 * act-order `g_idx`). Dense tensors (cast to `options.dtype`, default f32) and the quantized layers are checked
 * against the config; a missing tensor, a wrong shape, an unexpected tensor or an unknown
 * `quant_method` is an error naming it. `tokenizer` is null if the directory has no tokenizer.json.
 */
export function loadQuantizedModel(dir: string, options: LoadQuantizedModelOptions = {}): LoadedQuantizedModel {
  return runLoaderSync(quantizedLoader(dir, options));
}

/** {@link loadQuantizedModel} with every file read off the event loop (libuv's thread pool), one tensor at a time. */
export function loadQuantizedModelAsync(dir: string, options: LoadQuantizedModelOptions = {}): Promise<LoadedQuantizedModel> {
  return runLoaderAsync(quantizedLoader(dir, options));
}

/** The safetensors files of a directory (`checkpointShards`: the same files, and the same refusals, as the full-precision loader). */
function openWeights(dir: string): { readers: SafetensorsReader[]; where: Map<string, SafetensorsReader> } {
  let files: string[];
  try {
    files = checkpointShards(dir).files;
  } catch (err) {
    throw new QuantizedCheckpointError(dir, err instanceof CheckpointError ? err.problems.join("; ") : messageOf(err));
  }
  const readers: SafetensorsReader[] = [];
  const where = new Map<string, SafetensorsReader>();
  try {
    for (const f of files) {
      const r = SafetensorsReader.open(join(dir, f));
      readers.push(r);
      for (const name of r.names()) where.set(name, r);
    }
  } catch (err) {
    for (const r of readers) r.close();
    throw err;
  }
  return { readers, where };
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

function* quantizedLoader(dir: string, options: LoadQuantizedModelOptions): Loader<LoadedQuantizedModel> {
  const dtype = checkModelDType(options.dtype, "loadQuantizedModel");
  const device = options.device ?? "cpu";
  const config = readLlamaConfig(dir);
  const qc = readQuantizationConfig(dir, config);
  const plugin = options.plugin === undefined ? undefined : resolveQuantizer(options.plugin);
  const fail = (problem: string) => new QuantizedCheckpointError(dir, problem);
  // Core's codecs throw plain errors; here they name the directory.
  const checked = <T>(f: () => T): T => {
    try {
      return f();
    } catch (err) {
      throw fail(messageOf(err));
    }
  };
  const gptq = qc["quant_method"] === "gptq";
  const gptqSettings: GptqSettings | null = gptq ? checked(() => gptqSettingsFromConfig(qc)) : null;

  const quantizerName = recordedQuantizer(qc);
  const { readers, where } = openWeights(dir);
  // Everything allocated so far, freed if anything fails (dispose is idempotent).
  const owned: Tensor[] = [];
  const built: Linear[] = [];
  const used = new Set<string>();
  try {
    const layerMeta: ModuloraLayersMetadata = gptq ? {} : checked(() => readModuloraLayersMetadata(readers.map((r) => r.metadata)));
    // Read on the host, checked there, then one copy onto `on` (the model's device by default).
    function* read(name: string, on: Device = device): Loader<Tensor> {
      const r = where.get(name);
      if (!r) throw fail(`missing tensor '${name}'`);
      const e = r.entry(name);
      const host: HostArray = yield { reader: r, entry: e };
      const bad = nonFiniteProblem(name, new Uint8Array(host.buffer, host.byteOffset, host.byteLength), e.dtype, e.shape);
      if (bad) throw fail(bad);
      const t = keep(tensorFrom(host, { shape: e.shape, dtype: e.dtype, device: on }));
      owned.push(t);
      used.add(name);
      return t;
    }
    function* dense(name: string, shape: readonly number[]): Loader<Tensor> {
      const t = yield* read(name);
      if (!sameShape(t.shape, shape)) throw fail(`tensor '${name}' has shape [${t.shape}], expected [${shape}] from the config`);
      if (!["f32", "bf16", "f16"].includes(t.dtype)) throw fail(`tensor '${name}' is ${t.dtype}; dense weights must be f32, bf16 or f16`);
      if (t.dtype === dtype) return t;
      const f = keep(cast(t, dtype));
      owned.push(f);
      t.dispose();
      return f;
    }
    // Before anything that grows with num_hidden_layers is built or read.
    const layerProblem = layerCountProblem(config, where.keys());
    if (layerProblem) throw fail(layerProblem);
    const shapes = expectedTensorShapes(config);
    function* linear(prefix: string): Loader<Linear> {
      const [out, inF] = shapes.get(`${prefix}.weight`) ?? [config.vocabSize, config.hiddenSize];
      const l = yield* linearOf(prefix, out!, inF!);
      built.push(l);
      return l;
    }
    function* linearOf(prefix: string, out: number, inF: number): Loader<Linear> {
      if (where.has(`${prefix}.weight`)) return new DenseLinear(yield* dense(`${prefix}.weight`, [out, inF]));
      if (gptqSettings) {
        if (!where.has(`${prefix}.qweight`)) throw fail(`missing tensor '${prefix}.qweight' (nor is there a dense '${prefix}.weight')`);
        if (where.has(`${prefix}.bias`)) throw fail(`tensor '${prefix}.bias': linear biases are not supported (LLaMA has none)`);
        // qzeros and g_idx are unpacked on the host: they stay there, and what they become goes to the device.
        const qweight = yield* read(`${prefix}.qweight`);
        const qzeros = yield* read(`${prefix}.qzeros`, "cpu");
        const scales = yield* read(`${prefix}.scales`);
        const g_idx = where.has(`${prefix}.g_idx`) ? yield* read(`${prefix}.g_idx`, "cpu") : null;
        const t = { qweight, qzeros, scales, g_idx };
        return new QuantizedLinear(affineFromGptq(t, { ...gptqSettings, name: prefix, outFeatures: out, inFeatures: inF }), quantizerName);
      }
      const meta = layerMeta[prefix];
      if (!meta) throw fail(`layer '${prefix}' has neither a dense '${prefix}.weight' nor an entry in the '${MODULORA_LAYERS_METADATA_KEY}' metadata`);
      const shape = { outFeatures: out, inFeatures: inF };
      checked(() => checkModuloraLayerShape(prefix, meta, shape));
      const tensors = new Map<string, Tensor>();
      for (const name of moduloraLayerTensorNames(prefix, where.keys())) tensors.set(name, yield* read(name));
      return new QuantizedLinear(checked(() => decodeModuloraLayer(prefix, tensors, meta, shape, plugin)), quantizerName);
    }

    const c = config.hiddenSize;
    const embed = yield* dense("model.embed_tokens.weight", [config.vocabSize, c]);
    const layers: LlamaLayer[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      const inputNorm = yield* dense(`model.layers.${i}.input_layernorm.weight`, [c]);
      const postAttentionNorm = yield* dense(`model.layers.${i}.post_attention_layernorm.weight`, [c]);
      const linears: Partial<Record<LinearName, Linear>> = {};
      for (const n of LINEAR_NAMES) linears[n] = yield* linear(linearModuleName(i, n));
      layers.push({ inputNorm, postAttentionNorm, linears: linears as Record<LinearName, Linear> });
    }
    const norm = yield* dense("model.norm.weight", [c]);
    const quantHead = where.has("lm_head.qweight") || (!gptq && layerMeta["lm_head"] !== undefined);
    let lmHead: Linear;
    if (config.tieWordEmbeddings && !quantHead) {
      if (where.has("lm_head.weight")) used.add("lm_head.weight"); // ignored, as transformers does
      // A second handle on the embedding's storage, as LlamaModel.fromTensors does.
      lmHead = new DenseLinear(keep(embed.detach()));
      built.push(lmHead);
    } else lmHead = yield* linear("lm_head");

    const unexpected = [...where.keys()].filter((n) => !used.has(n));
    if (unexpected.length) throw fail(`unexpected tensor${unexpected.length > 1 ? "s" : ""} ${unexpected.slice(0, 8).map((n) => `'${n}'`).join(", ")}${unexpected.length > 8 ? ", …" : ""}`);
    const model = new LlamaModel(config, embed, layers, norm, lmHead);
    const tokenizer = existsSync(join(dir, "tokenizer.json")) ? LlamaTokenizer.fromDir(dir) : null;
    return { model, tokenizer, config };
  } catch (err) {
    for (const l of built) l.dispose();
    for (const t of owned) t.dispose();
    throw err;
  } finally {
    for (const r of readers) r.close();
  }
}
