// modulora export: dequantized base + LoRA update → a plain Hugging Face checkpoint in bf16.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { cast, keep, noGrad, saveSafetensors, tensor, tidy, type Tensor } from "@modulora/tensor";
import { copyTokenizerFiles, DenseLinear, LINEAR_MODULE, LINEAR_NAMES, loadLlama, mergedWeights, QuantizedLinear, type Linear, type LlamaModel } from "@modulora/llama";
import { checkOutDir, checkOutsideInputs, pluginAndConfigInputs, diskBytes, formatBytes, lockOutSibling, removeEmptyTree, writeDirAtomically } from "../atomic.js";
import { CliError, step, stepSync } from "../errors.js";
import type { CommandContext } from "../main.js";
import { attachAdapter, loadModel, preflightAdapter, preflightModel, type ModelPreflight } from "../model.js";
import { setupQuantizers } from "../plugins.js";
import { Progress } from "../progress.js";

interface ExportArgs {
  model: string;
  adapter: string;
  out: string;
  overwrite: boolean;
  reference: boolean;
  plugin?: string[];
  json: boolean;
}

/** File with the reference ids and our logits, read by packages/cli/scripts/check_export.py. */
export const REFERENCE_FILE = "modulora_reference.safetensors";

/** W of a frozen linear as a new f32 tensor [out, in] (a quantized one dequantized). */
function denseWeight(l: Linear, name: string): Tensor {
  if (l instanceof DenseLinear) return l.weight;
  if (l instanceof QuantizedLinear) {
    const w = l.weight;
    const buf = new Float32Array(w.outFeatures * w.inFeatures);
    w.materialize(0, w.outFeatures, buf);
    return keep(tensor(buf, [w.outFeatures, w.inFeatures]));
  }
  throw new CliError(`cannot export layer ${name} (a ${l.kind} layer)`, "report this: export handles dense, quantized and LoRA layers");
}

/** Every tensor of the merged model under its Hugging Face name, cast to bf16 one at a time. */
function mergedBf16(model: LlamaModel): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const merged = mergedWeights(model);
  const add = (name: string, t: Tensor, owned: boolean) => {
    out.set(name, keep(cast(t, "bf16")));
    if (owned) t.dispose();
  };
  try {
    add("model.embed_tokens.weight", model.embedTokens, false);
    model.layers.forEach((layer, i) => {
      add(`model.layers.${i}.input_layernorm.weight`, layer.inputNorm, false);
      add(`model.layers.${i}.post_attention_layernorm.weight`, layer.postAttentionNorm, false);
      for (const n of LINEAR_NAMES) {
        const name = `model.layers.${i}.${LINEAR_MODULE[n]}.${n}.weight`;
        const m = merged.get(name);
        if (m) {
          add(name, m, true);
          merged.delete(name);
        } else {
          const l = layer.linears[n];
          const w = denseWeight(l, name);
          add(name, w, w !== (l as DenseLinear).weight);
        }
      }
    });
    add("model.norm.weight", model.norm, false);
    if (!model.config.tieWordEmbeddings || model.lmHead.kind !== "dense") {
      const w = denseWeight(model.lmHead, "lm_head");
      add("lm_head.weight", w, w !== (model.lmHead as DenseLinear).weight);
    }
  } catch (err) {
    for (const t of [...out.values(), ...merged.values()]) t.dispose();
    throw err;
  }
  return out;
}

/** The exported config.json: no quantization block, bf16 storage. */
export function exportedConfig(raw: Record<string, unknown>): Record<string, unknown> {
  const { quantization_config: _q, ...rest } = raw;
  void _q;
  return { ...rest, torch_dtype: "bfloat16", ...("dtype" in rest ? { dtype: "bfloat16" } : {}) };
}

/** Logits of `ids` [B, T] as a new f32 tensor. */
function logitsOf(model: LlamaModel, ids: Int32Array, b: number, t: number): Tensor {
  return noGrad(() => tidy(() => keep(model.forward(tensor(ids, [b, t], { dtype: "i32" })).logits.contiguous())));
}

export async function runExport(ctx: CommandContext): Promise<void> {
  const a = ctx.args.values as unknown as ExportArgs;
  const progress = new Progress(ctx.stderr);
  checkOutDir(a.out, a.overwrite);
  checkOutsideInputs(a.out, [{ flag: "--model", path: a.model }, { flag: "--adapter", path: a.adapter }, ...pluginAndConfigInputs(ctx.args.values)]);
  await setupQuantizers(a.plugin);
  const checked = preflightModel(a.model);
  if (a.adapter) preflightAdapter(a.adapter, checked);
  // Locked and proved writable before the model loads; temporaries of killed runs are cleaned.
  const { lock, notes, createdParent } = lockOutSibling(a.out, "modulora export");
  let succeeded = false;
  try {
    for (const n of notes) progress.log(`note: ${n}`);
    checkOutDir(a.out, a.overwrite); // again: the recovery may have put a previous --out back
    await mergeAndWrite(ctx, a, checked, progress);
    succeeded = true;
  } finally {
    lock.release();
    if (!succeeded && createdParent) removeEmptyTree(createdParent); // directories made for --out go again
  }
}

async function mergeAndWrite(ctx: CommandContext, a: ExportArgs, checked: ModelPreflight, progress: Progress): Promise<void> {
  const loaded = await loadModel(a.model, progress, "--model", checked);
  const { model, config } = loaded;
  try {
    await attachAdapter(loaded, a.adapter, progress);
    const t0 = performance.now();
    const written = await step(`cannot write ${a.out}`, "check that its parent directory is writable and has space", () =>
      writeDirAtomically(a.out, (tmp) => {
        const tensors = mergedBf16(model);
        try {
          saveSafetensors(join(tmp, "model.safetensors"), tensors, { format: "pt" });
        } finally {
          for (const t of tensors.values()) t.dispose();
        }
        writeFileSync(join(tmp, "config.json"), `${JSON.stringify(exportedConfig(config.raw), null, 2)}\n`);
        const files = ["model.safetensors", "config.json", ...copyTokenizerFiles(a.model, tmp)];
        if (a.reference) {
          // Our logits two ways: the adapter model in f32, and the exported bf16 checkpoint read back.
          const [b, t] = [2, 16];
          const ids = Int32Array.from({ length: b * t }, (_, i) => (i * 7919 + 13) % Math.min(config.vocabSize, 32000));
          const ours = logitsOf(model, ids, b, t);
          const back = stepSync("the exported checkpoint does not load back", "report this", () => loadLlama(tmp));
          const merged = logitsOf(back.model, ids, b, t);
          back.model.dispose();
          const idsT = keep(tensor(ids, [b, t], { dtype: "i32" }));
          try {
            saveSafetensors(join(tmp, REFERENCE_FILE), new Map([["input_ids", idsT], ["logits_merged", merged], ["logits_adapter", ours]]), { format: "pt", source: "modulora export --reference" });
          } finally {
            for (const x of [idsT, merged, ours]) x.dispose();
          }
          files.push(REFERENCE_FILE);
        }
        return files;
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const bytes = diskBytes(a.out);
    ctx.stdout.write(a.json ? `${JSON.stringify({ out: a.out, dtype: "bf16", bytes, seconds, files: written })}\n` : `wrote ${a.out} (${formatBytes(bytes)}, bf16, ${seconds.toFixed(1)} s): ${written.join(", ")}\n`);
  } finally {
    model.dispose();
  }
}
