// Fetching the files a model needs from the Hugging Face Hub into the local cache, in the layout
// huggingface_hub uses (blobs/ named by etag, snapshots/<commit>/<file> symbolic links, refs/).
//
// @huggingface/hub answers the API questions: `modelInfo` (the commit a revision is at) and
// `listFiles` (the files of that commit, with sizes, git oids and LFS sha256). The bytes come
// from our own fetch of the same `/{repo}/resolve/{commit}/{file}` URL that its `downloadFile`
// and `downloadFileToCacheDir` fetch, because they have no way to start at an offset: they
// return the whole file as a Blob, so a partial `.incomplete` file could not be resumed with a
// Range request, and bytes could neither be counted for a progress bar nor hashed as they arrive.
import { createHash, type Hash } from "node:crypto";
import { createReadStream, existsSync, lstatSync, mkdirSync, renameSync, rmSync, statSync, symlinkSync, copyFileSync, readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import type { ListFileEntry } from "@huggingface/hub";
import { writeFileAtomic } from "@modulora/core";
import { SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE } from "../checkpoint.js";
import { checkRevision, COMMIT_HASH, hubCache, type HubCache } from "./cache.js";
import { HubError } from "./errors.js";
import { parseModelId, repoFolderName, type ModelId } from "./model-id.js";
import { indexShards, metadataFilesOf, REQUIRED_MODEL_FILES, weightFilesOf } from "./model-files.js";

/** The Hub's address when HF_ENDPOINT is not set. */
export const DEFAULT_HF_ENDPOINT = "https://huggingface.co";

/** Where a download stands, after each chunk of bytes. */
export interface DownloadProgress {
  /** The file being fetched (its path in the repository). */
  file: string;
  /** Bytes of this file on disk so far (a resumed part included) and its size. */
  fileBytes: number;
  fileTotal: number;
  /** Bytes of all the model's files on disk so far (those already cached included), and their total. */
  bytes: number;
  totalBytes: number;
}

/** Options of {@link downloadModel}. */
export interface DownloadModelOptions {
  /** A branch, tag or commit hash (default `main`). */
  revision?: string;
  /** The cache directory (default: {@link hubCache} from the environment). */
  cacheDir?: string;
  /** An access token for gated or private models (default `HF_TOKEN`). */
  token?: string;
  /** The Hub's address (default `HF_ENDPOINT`, else https://huggingface.co). */
  endpoint?: string;
  /**
   * Called as bytes of the weights arrive (the configs and tokenizer files come first, before
   * the total is known: the safetensors index says which shards there are).
   */
  onProgress?: (p: DownloadProgress) => void;
  /** The environment read for HF_TOKEN, HF_ENDPOINT and the cache (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

/** What {@link downloadModel} did. */
export interface DownloadResult {
  /** The snapshot directory, ready to load. */
  dir: string;
  commit: string;
  revision: string;
  /** Every file of the model in the snapshot. */
  files: string[];
  /** The files fetched by this call (the others were cached). */
  downloaded: string[];
  /** The files whose fetch continued a partial `.incomplete` file. */
  resumed: string[];
  /** Bytes fetched by this call. */
  bytesFetched: number;
}

interface Context {
  id: ModelId;
  endpoint: string;
  token: string | undefined;
  fetch: typeof fetch;
  cache: HubCache;
}

/** A {@link HubError} for a failed Hub call (status codes of HubApiError/ApiError, or a network failure). */
function hubFailure(ctx: Context, what: string, revision: string, err: unknown): HubError {
  if (err instanceof HubError) return err;
  const status = (err as { statusCode?: unknown })?.statusCode;
  const detail = err instanceof Error ? err.message : String(err);
  if (status === 401 || status === 403) {
    return new HubError(
      "unauthorized",
      `${what} of ${ctx.id.id} at ${ctx.endpoint}: HTTP ${status} (the model is gated or private${ctx.token ? ", and HF_TOKEN was refused" : ", and no token was sent"})`,
      ctx.token ? "check that HF_TOKEN is valid and that its account accepted the model's terms on its page" : "set HF_TOKEN to an access token (huggingface.co/settings/tokens) of an account with access to the model",
      { cause: err },
    );
  }
  if (status === 404) {
    return new HubError("not-found", `${what}: ${ctx.id.id} has no revision ${revision} at ${ctx.endpoint} (HTTP 404: no such model or revision, or a private one without a token)`, "check the id and --revision on huggingface.co; for a private model set HF_TOKEN", { cause: err });
  }
  if (typeof status === "number") return new HubError("bad-response", `${what} of ${ctx.id.id} at ${ctx.endpoint}: HTTP ${status}: ${detail}`, "try again later", { cause: err });
  const cause = (err as { cause?: { code?: unknown; message?: unknown } })?.cause;
  const why = cause && typeof cause === "object" ? `${String(cause.code ?? "")} ${String(cause.message ?? "")}`.trim() : "";
  return new HubError("network", `${what} of ${ctx.id.id}: cannot reach ${ctx.endpoint} (${detail}${why ? `: ${why}` : ""})`, "check the network connection (and HF_ENDPOINT), then run again", { cause: err });
}

/** A path from the repository listing, checked to stay inside the snapshot. */
function checkRepoPath(path: string): void {
  if (path === "" || path.startsWith("/") || /[\\\0]/.test(path) || path.split("/").some((s) => s === "" || s === "." || s === "..")) {
    throw new HubError("bad-response", `the repository listing names a file ${JSON.stringify(path)} outside the repository`, "check HF_ENDPOINT: it does not look like a Hugging Face Hub");
  }
}

/** The blob name huggingface_hub gives a file: the LFS sha256, else the git blob oid. */
function etagOf(entry: ListFileEntry): string {
  const etag = entry.lfs?.oid ?? entry.oid ?? "";
  if (!/^[0-9a-f]{40,64}$/.test(etag)) throw new HubError("bad-response", `the repository listing gives ${entry.path} the object id ${JSON.stringify(etag)}`, "check HF_ENDPOINT: it does not look like a Hugging Face Hub");
  return etag;
}

/** The hash that checks the bytes: sha256 of the content (LFS), or git's sha1 of `blob <size>\0` + content. */
function contentHash(entry: ListFileEntry, size: number): Hash {
  if (entry.lfs) return createHash("sha256");
  return createHash("sha1").update(`blob ${size}\0`);
}

/** Puts a symbolic link `pointer` → `blob` (relative, as huggingface_hub makes it) in one rename; a copy where links are not allowed. */
function linkPointer(blob: string, pointer: string): void {
  mkdirSync(dirname(pointer), { recursive: true });
  const tmp = `${pointer}.tmp-${process.pid}-${Date.now().toString(36)}`;
  try {
    symlinkSync(relative(dirname(pointer), blob), tmp);
  } catch (err) {
    // Windows without the symlink privilege: huggingface_hub copies too.
    if ((err as NodeJS.ErrnoException).code !== "EPERM") throw err;
    copyFileSync(blob, tmp);
  }
  renameSync(tmp, pointer);
}

const lexists = (p: string) => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

/**
 * Fetches one file into `blobs/<etag>` through `<etag>.incomplete`: a partial `.incomplete` left
 * by an interrupted run is continued with a Range request (and its bytes hashed first), the whole
 * file is checked against the listing's size and hash, then renamed into place. A network failure
 * keeps the partial file for the next run.
 */
async function fetchBlob(ctx: Context, commit: string, entry: ListFileEntry, blob: string, report: (fileBytes: number) => void): Promise<{ resumed: boolean; fetched: number }> {
  const size = entry.lfs?.size ?? entry.size;
  const incomplete = `${blob}.incomplete`;
  let have = existsSync(incomplete) ? statSync(incomplete).size : 0;
  if (have > size) {
    rmSync(incomplete);
    have = 0;
  }
  const url = `${ctx.endpoint}/${ctx.id.id}/resolve/${commit}/${entry.path.split("/").map(encodeURIComponent).join("/")}`;
  const headers: Record<string, string> = { ...(ctx.token ? { Authorization: `Bearer ${ctx.token}` } : {}), ...(have > 0 ? { Range: `bytes=${have}-` } : {}) };
  let resp: Response;
  try {
    resp = await ctx.fetch(url, { headers, redirect: "follow" });
  } catch (err) {
    throw hubFailure(ctx, `download of ${entry.path}`, commit, err);
  }
  if (resp.status === 416 && have === size) {
    // The partial file already holds every byte (the run stopped before the rename).
    await resp.body?.cancel();
  } else if (!resp.ok) {
    await resp.body?.cancel();
    throw hubFailure(ctx, `download of ${entry.path}`, commit, { statusCode: resp.status, message: resp.statusText });
  }
  const resumed = have > 0 && resp.status === 206;
  if (have > 0 && resp.status === 206) {
    const start = /^bytes (\d+)-/.exec(resp.headers.get("content-range") ?? "")?.[1];
    if (start !== String(have)) {
      await resp.body?.cancel();
      throw new HubError("bad-response", `download of ${entry.path}: asked for bytes ${have}- but got Content-Range ${JSON.stringify(resp.headers.get("content-range"))}`, "run again (the partial file is kept)");
    }
  } else if (resp.status === 200) {
    have = 0; // the server sent the whole file: start over
  }
  const hash = contentHash(entry, size);
  if (have > 0) for await (const chunk of createReadStream(incomplete, { end: have - 1 })) hash.update(chunk as Buffer);
  let fetched = 0;
  if (resp.status !== 416) {
    const fh = await open(incomplete, have > 0 ? "a" : "w");
    try {
      report(have);
      for await (const chunk of resp.body as unknown as AsyncIterable<Uint8Array>) {
        await fh.write(chunk);
        hash.update(chunk);
        have += chunk.length;
        fetched += chunk.length;
        report(have);
      }
    } catch (err) {
      throw new HubError("network", `download of ${entry.path} of ${ctx.id.id} stopped after ${have} of ${size} bytes (${err instanceof Error ? err.message : String(err)}); the partial file ${incomplete} is kept`, "run again to resume it", { cause: err });
    } finally {
      await fh.close();
    }
  }
  if (have !== size) {
    throw new HubError("network", `download of ${entry.path} of ${ctx.id.id} ended after ${have} of ${size} bytes; the partial file ${incomplete} is kept`, "run again to resume it");
  }
  const digest = hash.digest("hex");
  const expected = etagOf(entry);
  if (digest !== expected) {
    rmSync(incomplete, { force: true });
    throw new HubError("checksum", `download of ${entry.path} of ${ctx.id.id}: the bytes hash to ${digest}, not ${expected} as the repository says (the file was removed)`, "run again to fetch it anew");
  }
  renameSync(incomplete, blob);
  return { resumed, fetched };
}

/**
 * Downloads the files a model needs (config, generation config, tokenizer files, safetensors
 * weights and index; never .bin, .pt or .gguf) of `id` at `revision` into the Hugging Face cache,
 * where huggingface_hub and {@link resolveModel} find them: `blobs/<etag>`, the snapshot's
 * symbolic links `snapshots/<commit>/<file>` and `refs/<revision>`. Files already in the cache are
 * not fetched again; each fetched file is written to `<blob>.incomplete` and renamed when complete
 * and its hash checks, and a partial `.incomplete` file is continued. The token comes from
 * `HF_TOKEN` and the address from `HF_ENDPOINT` unless given.
 */
export async function downloadModel(id: string, options: DownloadModelOptions = {}): Promise<DownloadResult> {
  const env = options.env ?? process.env;
  const modelId = parseModelId(id);
  const revision = options.revision ?? "main";
  checkRevision(revision);
  const token = options.token ?? (env["HF_TOKEN"] || undefined);
  const endpoint = (options.endpoint ?? (env["HF_ENDPOINT"] || DEFAULT_HF_ENDPOINT)).replace(/\/+$/, "");
  const ctx: Context = { id: modelId, endpoint, token, fetch: options.fetch ?? fetch, cache: hubCache(options.cacheDir, env) };
  if (token && !token.startsWith("hf_")) {
    throw new HubError("unauthorized", "HF_TOKEN does not look like a Hugging Face access token (it must start with hf_)", "set HF_TOKEN to an access token from huggingface.co/settings/tokens, or unset it for public models");
  }
  // Loaded only here: resolving from the cache never needs the Hub client.
  const hub = await import("@huggingface/hub");
  const credentials = { hubUrl: endpoint, fetch: ctx.fetch, ...(token ? { accessToken: token } : {}) };

  let commit: string;
  try {
    const info = await hub.modelInfo({ name: modelId.id, revision, additionalFields: ["sha"], ...credentials });
    commit = String((info as { sha?: unknown }).sha ?? "");
  } catch (err) {
    throw hubFailure(ctx, "model info", revision, err);
  }
  if (!COMMIT_HASH.test(commit)) throw new HubError("bad-response", `the Hub gave revision ${revision} of ${id} the commit ${JSON.stringify(commit)}`, "check HF_ENDPOINT: it does not look like a Hugging Face Hub");

  const listing: ListFileEntry[] = [];
  try {
    for await (const e of hub.listFiles({ repo: { type: "model", name: modelId.id }, revision: commit, recursive: true, ...credentials })) if (e.type === "file") listing.push(e);
  } catch (err) {
    throw hubFailure(ctx, "file listing", revision, err);
  }
  for (const e of listing) checkRepoPath(e.path);
  const absent = REQUIRED_MODEL_FILES.filter((f) => !listing.some((e) => e.path === f));
  if (absent.length) {
    throw new HubError("missing-files", `${id} at ${revision} (commit ${commit}) has no ${absent.join(", ")}`, "modulora loads Transformers LLaMA-family models with a tokenizer.json: pick such a repository");
  }
  if (!listing.some((e) => e.path === SAFETENSORS_FILE || e.path === SAFETENSORS_INDEX_FILE)) {
    const pickle = listing.some((e) => /\.(bin|pt|pth)$/.test(e.path));
    throw new HubError("missing-files", `${id} at ${revision} has no safetensors weights${pickle ? " (only PyTorch pickle files, which are not read)" : ""}`, "pick a repository or revision with model.safetensors (or an index and shards)");
  }

  const repoDir = join(ctx.cache.dir, repoFolderName(modelId));
  const snapshot = join(repoDir, "snapshots", commit);
  const result: DownloadResult = { dir: snapshot, commit, revision, files: [], downloaded: [], resumed: [], bytesFetched: 0 };
  const sizeOf = (e: ListFileEntry) => e.lfs?.size ?? e.size;
  let totalBytes = 0;
  let doneBytes = 0;
  let planned = false;
  const place = async (entry: ListFileEntry) => {
    const pointer = join(snapshot, entry.path);
    result.files.push(entry.path);
    if (existsSync(pointer)) {
      doneBytes += sizeOf(entry);
      return;
    }
    const blob = join(repoDir, "blobs", etagOf(entry));
    mkdirSync(dirname(blob), { recursive: true });
    if (!existsSync(blob)) {
      const before = doneBytes;
      const r = await fetchBlob(ctx, commit, entry, blob, (fileBytes) => {
        if (planned) options.onProgress?.({ file: entry.path, fileBytes, fileTotal: sizeOf(entry), bytes: before + fileBytes, totalBytes });
      });
      result.downloaded.push(entry.path);
      if (r.resumed) result.resumed.push(entry.path);
      result.bytesFetched += r.fetched;
    }
    if (lexists(pointer)) rmSync(pointer); // a link whose blob was gone
    linkPointer(blob, pointer);
    doneBytes += sizeOf(entry);
  };

  // The metadata first: the index says which shards the weights are.
  const metadata = metadataFilesOf(listing);
  totalBytes = metadata.reduce((s, e) => s + sizeOf(e), 0);
  for (const e of metadata) await place(e);
  const indexPath = join(snapshot, SAFETENSORS_INDEX_FILE);
  const shards = existsSync(indexPath) ? indexShards(readFileSync(indexPath, "utf8")) : null;
  let weights: ListFileEntry[];
  try {
    weights = weightFilesOf(listing, shards);
  } catch (err) {
    throw new HubError("missing-files", `${id} at ${revision}: ${(err as Error).message}`, "the repository is incomplete: pick another revision", { cause: err });
  }
  if (weights.length === 0) throw new HubError("bad-response", `${id} at ${revision}: ${SAFETENSORS_INDEX_FILE} is not a safetensors index (no "weight_map" of shard file names)`, "the repository is damaged at this revision: pick another one");
  totalBytes += weights.reduce((s, e) => s + sizeOf(e), 0);
  planned = true;
  for (const e of weights) await place(e);

  if (revision !== commit) {
    const ref = join(repoDir, "refs", revision);
    mkdirSync(dirname(ref), { recursive: true });
    if (!existsSync(ref) || readFileSync(ref, "utf8").trim() !== commit) writeFileAtomic(ref, commit);
  }
  return result;
}
