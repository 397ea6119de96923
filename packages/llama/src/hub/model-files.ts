// Which files of a model repository a model needs: the configs, the tokenizer and the safetensors
// weights. PyTorch pickles (.bin, .pt, .pth), GGUF and other formats are never fetched.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE } from "../checkpoint.js";
import { QUANTIZE_CONFIG_FILE } from "../quantized/config.js";

/** Files a model directory must have (besides its weights). */
export const REQUIRED_MODEL_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json"] as const;

/** Files fetched when the repository has them: configs, tokenizer files, chat templates. */
export const OPTIONAL_MODEL_FILES = [
  "generation_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "tokenizer.model",
  "chat_template.jinja",
  "chat_template.json",
  QUANTIZE_CONFIG_FILE,
] as const;

/**
 * The shard files a safetensors index names (its `weight_map` values, each once), or null when
 * the text is not an index. Names that are not plain file names are left out (the loader refuses
 * them, and a download never writes outside the snapshot).
 */
export function indexShards(indexText: string): string[] | null {
  let json: unknown;
  try {
    json = JSON.parse(indexText);
  } catch {
    return null;
  }
  const map = json && typeof json === "object" ? (json as Record<string, unknown>)["weight_map"] : undefined;
  if (!map || typeof map !== "object" || Array.isArray(map)) return null;
  const files = new Set<string>();
  for (const f of Object.values(map as Record<string, unknown>)) {
    if (typeof f === "string" && f !== "" && !/[/\\]/.test(f) && f !== "." && f !== "..") files.add(f);
  }
  return [...files];
}

/**
 * What a model directory lacks, as file names ([] when it is complete): config.json, the
 * tokenizer files, and model.safetensors or model.safetensors.index.json with every shard it
 * names. A symbolic link whose blob is gone counts as missing.
 */
export function missingModelFiles(dir: string): string[] {
  const missing: string[] = REQUIRED_MODEL_FILES.filter((f) => !existsSync(join(dir, f)));
  // The loader reads model.safetensors first, then the index (as transformers does).
  if (existsSync(join(dir, SAFETENSORS_FILE))) return missing;
  const indexPath = join(dir, SAFETENSORS_INDEX_FILE);
  if (!existsSync(indexPath)) return [...missing, `${SAFETENSORS_FILE} (or ${SAFETENSORS_INDEX_FILE} and its shards)`];
  const shards = indexShards(readFileSync(indexPath, "utf8"));
  if (!shards) return [...missing, `${SAFETENSORS_INDEX_FILE} (not a safetensors index)`];
  return [...missing, ...shards.filter((f) => !existsSync(join(dir, f)))];
}

/** A file of a repository: its path and size. */
export interface RepoFile {
  path: string;
  size: number;
}

/**
 * The metadata files of a repository listing that a model needs (required and optional ones, and
 * the safetensors index when there is no single model.safetensors). The weights follow from
 * {@link weightFilesOf}, once the index is read.
 */
export function metadataFilesOf<F extends RepoFile>(files: readonly F[]): F[] {
  const names = new Set<string>([...REQUIRED_MODEL_FILES, ...OPTIONAL_MODEL_FILES]);
  if (!files.some((f) => f.path === SAFETENSORS_FILE)) names.add(SAFETENSORS_INDEX_FILE);
  return files.filter((f) => names.has(f.path));
}

/**
 * The weight files of a repository listing: model.safetensors when there is one, else the shards
 * `shards` (from the index) that the listing holds. Throws with the file names when a shard the
 * index names is not in the repository.
 */
export function weightFilesOf<F extends RepoFile>(files: readonly F[], shards: readonly string[] | null): F[] {
  const single = files.find((f) => f.path === SAFETENSORS_FILE);
  if (single) return [single];
  if (!shards) return [];
  const byPath = new Map(files.map((f) => [f.path, f]));
  const absent = shards.filter((s) => !byPath.has(s));
  if (absent.length) throw new Error(`${SAFETENSORS_INDEX_FILE} names shards the repository does not have: ${absent.join(", ")}`);
  return shards.map((s) => byPath.get(s)!);
}
