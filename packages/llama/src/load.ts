// A Hugging Face model directory → config, f32 weights and tokenizer; copying tokenizer files.
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, renameSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import type { Tensor } from "@modulora/tensor";
import { loadCheckpoint, loadCheckpointAsync, type LoadCheckpointOptions } from "./checkpoint.js";
import { readLlamaConfig } from "./config.js";
import { CHAT_TEMPLATE_FILE, LlamaTokenizer, SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE } from "./tokenizer.js";
import type { LlamaConfig } from "./types.js";

/** Options of {@link loadLlamaFiles}: those of {@link loadCheckpoint}. */
export type LoadLlamaFilesOptions = LoadCheckpointOptions;

/** What a model directory holds, loaded. The caller owns (and disposes) `tensors`. */
export interface LlamaFiles {
  config: LlamaConfig;
  tensors: Map<string, Tensor>;
  tokenizer: LlamaTokenizer;
}

/**
 * Reads a LLaMA-family model directory: `config.json`, the tokenizer, and the weights as f32
 * tensors. The cheap parts come first, so a bad config or tokenizer fails before any weight is
 * read; a tokenizer with more ids than the model's embedding has rows is refused.
 */
export function loadLlamaFiles(dir: string, options: LoadLlamaFilesOptions = {}): LlamaFiles {
  const { config, tokenizer } = configAndTokenizer(dir);
  return { config, tensors: loadCheckpoint(dir, config, options), tokenizer };
}

/** {@link loadLlamaFiles} with the weights read off the event loop. */
export async function loadLlamaFilesAsync(dir: string, options: LoadLlamaFilesOptions = {}): Promise<LlamaFiles> {
  const { config, tokenizer } = configAndTokenizer(dir);
  return { config, tensors: await loadCheckpointAsync(dir, config, options), tokenizer };
}

function configAndTokenizer(dir: string): { config: LlamaConfig; tokenizer: LlamaTokenizer } {
  const config = readLlamaConfig(dir);
  const tokenizer = LlamaTokenizer.fromDir(dir);
  if (tokenizer.vocabSize > config.vocabSize) {
    // (Fewer is fine: embeddings are often padded past the tokenizer's ids.)
    throw new RangeError(`${dir}: the tokenizer has ${tokenizer.vocabSize} ids but config.json vocab_size is ${config.vocabSize}`);
  }
  return { config, tokenizer };
}

/** Tokenizer files {@link copyTokenizerFiles} copies; the first two must exist. */
export const TOKENIZER_FILES = [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, CHAT_TEMPLATE_FILE, "generation_config.json"] as const;

/**
 * Copies the tokenizer files of a model directory (tokenizer.json and tokenizer_config.json,
 * and special_tokens_map.json, chat_template.jinja and generation_config.json when present) into
 * `dstDir`, creating it if needed, so a converted (e.g. quantized) checkpoint is a complete model
 * directory. Each file is written to a temporary name and renamed, so a reader never sees a
 * half-written file. Returns the names copied.
 */
export function copyTokenizerFiles(srcDir: string, dstDir: string): string[] {
  for (const required of [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE]) {
    if (!existsSync(join(srcDir, required))) throw new Error(`copyTokenizerFiles: ${join(srcDir, required)} does not exist`);
  }
  mkdirSync(dstDir, { recursive: true });
  const copied: string[] = [];
  for (const name of TOKENIZER_FILES) {
    const src = join(srcDir, name);
    if (!existsSync(src)) continue;
    const dst = join(dstDir, name);
    const tmp = `${dst}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
    try {
      copyFileSync(src, tmp);
      renameSync(tmp, dst);
    } catch (err) {
      try {
        unlinkSync(tmp);
      } catch {
        // never created, or already renamed
      }
      throw new Error(`copyTokenizerFiles: cannot copy ${src} to ${dst}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    copied.push(name);
  }
  return copied;
}
