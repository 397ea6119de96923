// The local Hugging Face cache, as huggingface_hub lays it out:
//   <cache>/models--org--name/refs/<revision>           a file holding a commit hash
//   <cache>/models--org--name/snapshots/<commit>/<file>  the files (symbolic links into blobs/)
//   <cache>/models--org--name/blobs/<etag>               the bytes, named by sha256 (LFS) or git oid
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { HubError } from "./errors.js";
import { repoFolderName, type ModelId } from "./model-id.js";

/** Where the cache is, and which setting put it there. */
export interface HubCache {
  dir: string;
  /** `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `option` (passed in) or `default` (~/.cache/huggingface/hub). */
  from: "option" | "HF_HUB_CACHE" | "HF_HOME" | "XDG_CACHE_HOME" | "default";
}

/**
 * The Hugging Face hub cache directory, as huggingface_hub finds it: `cacheDir` when given, else
 * `HF_HUB_CACHE`, else `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`, else
 * `~/.cache/huggingface/hub`.
 */
export function hubCache(cacheDir?: string, env: NodeJS.ProcessEnv = process.env): HubCache {
  if (cacheDir) return { dir: resolve(cacheDir), from: "option" };
  const set = (k: string) => (env[k] !== undefined && env[k] !== "" ? env[k] : undefined);
  if (set("HF_HUB_CACHE")) return { dir: resolve(env["HF_HUB_CACHE"]!), from: "HF_HUB_CACHE" };
  if (set("HF_HOME")) return { dir: resolve(env["HF_HOME"]!, "hub"), from: "HF_HOME" };
  if (set("XDG_CACHE_HOME")) return { dir: resolve(env["XDG_CACHE_HOME"]!, "huggingface", "hub"), from: "XDG_CACHE_HOME" };
  return { dir: join(homedir(), ".cache", "huggingface", "hub"), from: "default" };
}

/** The cache's directory and its origin, for messages. */
export function describeCache(cache: HubCache): string {
  const from = cache.from === "default" ? "the default" : cache.from === "option" ? "cacheDir" : `from ${cache.from}`;
  return `${cache.dir} (${from})`;
}

/** A full commit hash. */
export const COMMIT_HASH = /^[0-9a-f]{40}$/;
const HASH_PREFIX = /^[0-9a-f]{4,39}$/;

/**
 * Checks a revision (branch, tag, `refs/pr/N` or commit hash) before it becomes part of a path:
 * no `..` segment, no leading `/`, no `\` or NUL.
 */
export function checkRevision(revision: string): void {
  const segments = revision.split("/");
  if (revision === "" || revision.startsWith("/") || /[\\\0]/.test(revision) || segments.some((s) => s === "" || s === "." || s === "..")) {
    throw new HubError("unknown-revision", `revision ${JSON.stringify(revision)} is not a branch, tag or commit hash`, "pass --revision a branch or tag name (such as main) or a commit hash");
  }
}

/** A snapshot found in the cache. */
export interface CachedSnapshot {
  /** The snapshot directory: `…/snapshots/<commit>`. */
  dir: string;
  commit: string;
  revision: string;
  /** `models--org--name`. */
  repoDir: string;
}

const todoFetch = (id: string, revision: string) =>
  `pass --download (download: true in the library) to fetch it, or run \`huggingface-cli download ${id}${revision === "main" ? "" : ` --revision ${revision}`}\``;

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** Every ref under `refs/` (nested ones such as `refs/pr/1` included), as revision names. */
function listRefs(refsDir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const name of listDir(refsDir)) {
    const p = join(refsDir, name);
    if (statSync(p).isDirectory()) out.push(...listRefs(p, `${prefix}${name}/`));
    else out.push(`${prefix}${name}`);
  }
  return out;
}

/**
 * Finds `revision` (default `main`) of a model in the cache: a commit hash names its snapshot
 * directly, a branch or tag goes through `refs/<revision>`, and a unique prefix of at least 4
 * hex digits of a cached commit is accepted. Throws a {@link HubError} (`not-cached`,
 * `unknown-revision`) saying what was looked for where. The snapshot's files are not checked
 * here ({@link missingModelFiles} does).
 */
export function findCachedSnapshot(id: ModelId, revision: string, cache: HubCache): CachedSnapshot {
  checkRevision(revision);
  const repoDir = join(cache.dir, repoFolderName(id));
  if (!existsSync(repoDir)) {
    // An id is also a relative path: say that no such directory exists either (a mistyped `runs/q3`).
    throw new HubError("not-cached", `model ${id.id} is not in the Hugging Face cache (looked for ${repoFolderName(id)} in ${describeCache(cache)}), and there is no directory ${id.id} here`, todoFetch(id.id, revision));
  }
  const snapshots = join(repoDir, "snapshots");
  const at = (commit: string): CachedSnapshot => ({ dir: join(snapshots, commit), commit, revision, repoDir });
  if (COMMIT_HASH.test(revision) && existsSync(join(snapshots, revision))) return at(revision);
  const ref = join(repoDir, "refs", revision);
  if (!COMMIT_HASH.test(revision) && existsSync(ref) && statSync(ref).isFile()) {
    const commit = readFileSync(ref, "utf8").trim();
    if (!COMMIT_HASH.test(commit)) {
      throw new HubError("not-cached", `${ref} does not hold a commit hash (${JSON.stringify(commit.slice(0, 60))})`, `the cache entry is damaged: ${todoFetch(id.id, revision)}`);
    }
    if (!existsSync(join(snapshots, commit))) {
      throw new HubError("not-cached", `refs/${revision} of ${id.id} points at commit ${commit}, but ${join(snapshots, commit)} does not exist`, todoFetch(id.id, revision));
    }
    return at(commit);
  }
  const cached = listDir(snapshots).filter((c) => COMMIT_HASH.test(c));
  if (HASH_PREFIX.test(revision)) {
    const matches = cached.filter((c) => c.startsWith(revision));
    if (matches.length === 1) return at(matches[0]!);
    if (matches.length > 1) {
      throw new HubError("unknown-revision", `revision ${revision} of ${id.id} is ambiguous: cached commits ${matches.join(", ")} all start with it`, "pass more digits of the commit hash, or the full hash");
    }
  }
  const refs = listRefs(join(repoDir, "refs"));
  const known = [refs.length ? `refs ${refs.join(", ")}` : "no refs", cached.length ? `commits ${cached.map((c) => c.slice(0, 12)).join(", ")}` : "no snapshots"].join("; ");
  throw new HubError("unknown-revision", `revision ${revision} of ${id.id} is not in the Hugging Face cache (${repoDir} has ${known})`, `pass --revision one of those, or ${todoFetch(id.id, revision)}`);
}

