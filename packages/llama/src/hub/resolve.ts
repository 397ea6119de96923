// A model by path or by Hugging Face id: the directory to load.
import { existsSync } from "node:fs";
import { describeCache, findCachedSnapshot, hubCache } from "./cache.js";
import { downloadModel, type DownloadModelOptions } from "./download.js";
import { HubError, type HubErrorCode } from "./errors.js";
import { looksLikeModelId, parseModelId } from "./model-id.js";
import { missingModelFiles } from "./model-files.js";

/** Options of {@link resolveModelSync}. */
export interface ResolveCachedOptions {
  /** A branch, tag or commit hash (or a unique prefix of a cached commit); default `main`. Only for an id. */
  revision?: string;
  /** The cache directory (default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** The environment read for the cache's location (default `process.env`). */
  env?: NodeJS.ProcessEnv;
}

/** Options of {@link resolveModel}. */
export interface ResolveModelOptions extends ResolveCachedOptions, Omit<DownloadModelOptions, "revision" | "cacheDir" | "env"> {
  /** Fetch what the cache lacks from the Hub ({@link downloadModel}); default false. */
  download?: boolean;
}

/** Where a model resolved to. */
export interface ResolvedModel {
  /** The directory to load. */
  dir: string;
  /** `path`: the argument was an existing path; `cache`: found in the Hugging Face cache; `download`: fetched (some files at least). */
  source: "path" | "cache" | "download";
  /** For an id: the id, the revision asked for and its commit. */
  id?: string;
  revision?: string;
  commit?: string;
  /** For `download`: the files fetched. */
  downloaded?: string[];
}

function notAPath(idOrPath: string): HubError {
  return new HubError("no-such-path", `${idOrPath} is neither an existing model directory nor a Hugging Face model id (ORG/NAME)`, "pass a model directory (config.json, model.safetensors, tokenizer.json), or an id such as TinyLlama/TinyLlama-1.1B-Chat-v1.0");
}

/**
 * {@link resolveModel} from the cache alone (no network): an existing path as is, an id `org/name`
 * from the Hugging Face cache at `revision`. Throws a {@link HubError} when the id is malformed,
 * the model or revision is not cached, or the snapshot lacks files a model needs.
 */
export function resolveModelSync(idOrPath: string, options: ResolveCachedOptions = {}): ResolvedModel {
  if (existsSync(idOrPath)) {
    if (options.revision !== undefined) throw new HubError("malformed-id", `a revision (${options.revision}) was given with the directory ${idOrPath}`, "a revision selects a snapshot of a Hugging Face id ORG/NAME: drop it for a directory");
    return { dir: idOrPath, source: "path" };
  }
  if (!looksLikeModelId(idOrPath)) throw notAPath(idOrPath);
  const id = parseModelId(idOrPath);
  const revision = options.revision ?? "main";
  const cache = hubCache(options.cacheDir, options.env);
  const snap = findCachedSnapshot(id, revision, cache);
  const missing = missingModelFiles(snap.dir);
  if (missing.length) {
    throw new HubError(
      "missing-files",
      `the cached snapshot of ${id.id} at ${revision} (${snap.dir}, in ${describeCache(cache)}) lacks ${missing.join(", ")}`,
      `pass --download (download: true in the library) to fetch the missing files, or run \`huggingface-cli download ${id.id}${revision === "main" ? "" : ` --revision ${revision}`}\``,
    );
  }
  return { dir: snap.dir, source: "cache", id: id.id, revision, commit: snap.commit };
}

/** What a download can mend. */
const FETCHABLE: ReadonlySet<HubErrorCode> = new Set(["not-cached", "unknown-revision", "missing-files"]);

/**
 * The model directory for `idOrPath`: a path that exists is used as is; an id `org/name` (Hugging
 * Face repo id syntax) resolves in the local Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub,
 * else ~/.cache/huggingface/hub; `models--org--name/snapshots/<commit>`) at `revision` (a branch
 * or tag through `refs/`, or a commit hash). With `download: true`, the files the cache lacks are
 * fetched first ({@link downloadModel}: token HF_TOKEN, address HF_ENDPOINT); a revision whose
 * cached snapshot is complete is used as it is, with no network (to follow a branch that moved
 * on the Hub, pass its new commit, or refresh the cache with `huggingface-cli download`). Errors are {@link HubError}s that say what was
 * looked for, where, and what to do.
 */
export async function resolveModel(idOrPath: string, options: ResolveModelOptions = {}): Promise<ResolvedModel> {
  try {
    return resolveModelSync(idOrPath, options);
  } catch (err) {
    if (!options.download || !(err instanceof HubError) || !FETCHABLE.has(err.code)) throw err;
  }
  const revision = options.revision ?? "main";
  const r = await downloadModel(idOrPath, { ...options, revision });
  return { dir: r.dir, source: r.downloaded.length ? "download" : "cache", id: idOrPath, revision, commit: r.commit, downloaded: r.downloaded };
}
