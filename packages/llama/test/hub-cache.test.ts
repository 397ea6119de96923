// Models by name from the local Hugging Face cache: a cache directory built by hand in
// huggingface_hub's layout (refs/, snapshots/<commit>/ of symbolic links into blobs/) holding
// fixtures/tiny-llama; ids resolve by branch, tag, commit hash and prefix, loadModel("org/name")
// gives the fixture's logits, and every refusal says what was looked for where.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tensorFrom, tidy } from "@modulora/tensor";
import { HubError, hubCache, loadModel, loadModelAsync, looksLikeModelId, parseModelId, resolveModel, resolveModelSync, type LlamaModel } from "../src/index.js";
import { FIXTURES } from "./fixtures.js";

const TINY = join(FIXTURES, "tiny-llama");
const MODEL_FILES = ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"];
const A = "a".repeat(8) + "1".repeat(32); // main
const B = "b".repeat(8) + "2".repeat(32); // tag v1
const B2 = "b".repeat(8) + "3".repeat(32); // shares the prefix bbbbbbbb with B

let tmp: string;
let cache: string;

/** Puts `files` of tiny-llama into a snapshot of `repo` at `commit`: blobs by sha256, relative links as huggingface_hub makes them. */
function addSnapshot(cacheDir: string, repo: string, commit: string, files = MODEL_FILES, refs: string[] = []): string {
  const [org, name] = repo.split("/");
  const root = join(cacheDir, `models--${org}--${name}`);
  const snap = join(root, "snapshots", commit);
  mkdirSync(join(root, "blobs"), { recursive: true });
  mkdirSync(snap, { recursive: true });
  for (const f of files) {
    const data = readFileSync(join(TINY, f));
    const etag = createHash("sha256").update(data).digest("hex");
    copyFileSync(join(TINY, f), join(root, "blobs", etag));
    symlinkSync(`../../blobs/${etag}`, join(snap, f));
  }
  for (const ref of refs) {
    mkdirSync(join(root, "refs", ref, ".."), { recursive: true });
    writeFileSync(join(root, "refs", ref), commit);
  }
  return snap;
}

const ids = [1, 5, 9, 2, 7, 3];
function logits(model: LlamaModel): number[] {
  return tidy(() => Array.from(model.forward(tensorFrom(ids, { shape: [1, ids.length], dtype: "i32" })).logits.toFloat64Array()));
}

/** The HubError `fn` throws. */
function hubError(fn: () => unknown): HubError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HubError);
    return err as HubError;
  }
  throw new Error("expected a HubError");
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-hub-cache-"));
  cache = join(tmp, "hub");
  addSnapshot(cache, "tiny-org/tiny-llama", A, MODEL_FILES, ["main"]);
  addSnapshot(cache, "tiny-org/tiny-llama", B, MODEL_FILES, ["v1", "refs/pr/1"]);
  addSnapshot(cache, "tiny-org/tiny-llama", B2, MODEL_FILES);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("resolveModelSync from a hand-built Hugging Face cache", () => {
  it("an id resolves to refs/main's snapshot; loadModel('org/name') gives the fixture's logits bit for bit", async () => {
    const r = resolveModelSync("tiny-org/tiny-llama", { cacheDir: cache });
    expect(r).toEqual({ dir: join(cache, "models--tiny-org--tiny-llama", "snapshots", A), source: "cache", id: "tiny-org/tiny-llama", revision: "main", commit: A });
    const direct = loadModel(TINY);
    const byId = loadModel("tiny-org/tiny-llama", { cacheDir: cache });
    const byIdAsync = await loadModelAsync("tiny-org/tiny-llama", { cacheDir: cache });
    try {
      const want = logits(direct.model);
      expect(logits(byId.model)).toEqual(want);
      expect(logits(byIdAsync.model)).toEqual(want);
      expect(byId.tokenizer!.encode("Hello world")).toEqual(direct.tokenizer!.encode("Hello world"));
    } finally {
      direct.model.dispose();
      byId.model.dispose();
      byIdAsync.model.dispose();
    }
  });

  it("the cache comes from HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub", () => {
    expect(hubCache(undefined, { HF_HUB_CACHE: cache, HF_HOME: "/elsewhere" })).toEqual({ dir: cache, from: "HF_HUB_CACHE" });
    expect(hubCache(undefined, { HF_HOME: tmp, XDG_CACHE_HOME: "/elsewhere" })).toEqual({ dir: join(tmp, "hub"), from: "HF_HOME" });
    expect(hubCache(undefined, { XDG_CACHE_HOME: tmp })).toEqual({ dir: join(tmp, "huggingface", "hub"), from: "XDG_CACHE_HOME" });
    expect(hubCache(undefined, {})).toEqual({ dir: join(homedir(), ".cache", "huggingface", "hub"), from: "default" });
    expect(hubCache("/given", { HF_HUB_CACHE: cache })).toEqual({ dir: "/given", from: "option" });
    // HF_HOME is where the resolver looks when it is the only setting.
    expect(resolveModelSync("tiny-org/tiny-llama", { env: { HF_HOME: tmp } }).commit).toBe(A);
  });

  it("--revision: a branch or tag through refs/, a nested ref, a full commit hash, a unique prefix", () => {
    const at = (revision: string) => resolveModelSync("tiny-org/tiny-llama", { cacheDir: cache, revision }).commit;
    expect(at("main")).toBe(A);
    expect(at("v1")).toBe(B);
    expect(at("refs/pr/1")).toBe(B);
    expect(at(B2)).toBe(B2);
    expect(at("aaaa")).toBe(A);
    expect(at("bbbbbbbb3")).toBe(B2);
  });

  it("an ambiguous commit prefix is refused, naming the commits it matches", () => {
    const e = hubError(() => resolveModelSync("tiny-org/tiny-llama", { cacheDir: cache, revision: "bbbbbbbb" }));
    expect(e.code).toBe("unknown-revision");
    expect(e.message).toContain(`${B}, ${B2}`);
    expect(e.todo).toMatch(/more digits/);
  });

  it("an unknown revision lists the cached refs and commits, and says --download", () => {
    const e = hubError(() => resolveModelSync("tiny-org/tiny-llama", { cacheDir: cache, revision: "v2" }));
    expect(e.code).toBe("unknown-revision");
    expect(e.what).toContain("revision v2 of tiny-org/tiny-llama is not in the Hugging Face cache");
    expect(e.what).toContain("refs main, refs/pr/1, v1");
    expect(e.what).toContain(`commits ${A.slice(0, 12)}, ${B.slice(0, 12)}, ${B2.slice(0, 12)}`);
    expect(e.todo).toContain("--download");
    expect(e.todo).toContain("huggingface-cli download tiny-org/tiny-llama --revision v2");
    for (const bad of ["../main", "/main", "a/../../b", "x\\y"]) expect(hubError(() => resolveModelSync("tiny-org/tiny-llama", { cacheDir: cache, revision: bad })).code).toBe("unknown-revision");
  });

  it("a model not in the cache: what was looked for, where (and from which setting), and how to fetch it", () => {
    const e = hubError(() => resolveModelSync("other-org/missing-model", { env: { HF_HUB_CACHE: cache } }));
    expect(e.code).toBe("not-cached");
    expect(e.message).toBe(
      `model other-org/missing-model is not in the Hugging Face cache (looked for models--other-org--missing-model in ${cache} (from HF_HUB_CACHE)), and there is no directory other-org/missing-model here — ` +
        "pass --download (download: true in the library) to fetch it, or run `huggingface-cli download other-org/missing-model`",
    );
    expect(() => loadModel("other-org/missing-model", { cacheDir: cache })).toThrow(/is not in the Hugging Face cache/);
  });

  it("a snapshot that lacks files a model needs (a missing link, a link whose blob is gone, a missing shard) is refused, listing them", () => {
    const c = join(tmp, "incomplete");
    const snap = addSnapshot(c, "o/m", A, MODEL_FILES.filter((f) => f !== "tokenizer.json"), ["main"]);
    let e = hubError(() => resolveModelSync("o/m", { cacheDir: c }));
    expect(e.code).toBe("missing-files");
    expect(e.what).toBe(`the cached snapshot of o/m at main (${snap}, in ${c} (cacheDir)) lacks tokenizer.json`);
    expect(e.todo).toContain("--download");
    // The blob behind config.json is gone: the dangling link counts as missing.
    const blobs = join(c, "models--o--m", "blobs");
    const configBlob = createHash("sha256").update(readFileSync(join(TINY, "config.json"))).digest("hex");
    unlinkSync(join(blobs, configBlob));
    e = hubError(() => resolveModelSync("o/m", { cacheDir: c }));
    expect(e.what).toMatch(/lacks config\.json, tokenizer\.json$/);
    // Sharded weights: the index names a shard that is not there.
    const sharded = addSnapshot(c, "o/sharded", B, MODEL_FILES.filter((f) => f !== "model.safetensors"), ["main"]);
    writeFileSync(join(sharded, "model.safetensors.index.json"), JSON.stringify({ weight_map: { "a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors" } }));
    copyFileSync(join(TINY, "model.safetensors"), join(sharded, "model-00001-of-00002.safetensors"));
    e = hubError(() => resolveModelSync("o/sharded", { cacheDir: c }));
    expect(e.what).toMatch(/lacks model-00002-of-00002\.safetensors$/);
    rmSync(join(sharded, "model.safetensors.index.json"));
    e = hubError(() => resolveModelSync("o/sharded", { cacheDir: c }));
    expect(e.what).toMatch(/lacks model\.safetensors \(or model\.safetensors\.index\.json and its shards\)$/);
  });

  it("refs/main pointing at a snapshot that is not there, or holding no hash, is reported as such", () => {
    const c = join(tmp, "dangling-ref");
    addSnapshot(c, "o/m", A, MODEL_FILES, []);
    mkdirSync(join(c, "models--o--m", "refs"), { recursive: true });
    writeFileSync(join(c, "models--o--m", "refs", "main"), B);
    let e = hubError(() => resolveModelSync("o/m", { cacheDir: c }));
    expect(e.code).toBe("not-cached");
    expect(e.what).toContain(`refs/main of o/m points at commit ${B}, but`);
    writeFileSync(join(c, "models--o--m", "refs", "main"), "not a hash\n");
    e = hubError(() => resolveModelSync("o/m", { cacheDir: c }));
    expect(e.what).toContain('does not hold a commit hash ("not a hash")');
  });

  it("malformed ids are refused with the rule they break; paths are never taken for ids", () => {
    for (const [id, why] of [
      ["org/na me", /the name "na me" may hold only letters/],
      ["-org/name", /the organization "-org" may hold only letters/],
      ["org/name.", /must start and end with a letter or digit/],
      ["a--b/c", /contains '--' or '\.\.'/],
      ["org/name.git", /ends in \.git/],
      [`org/${"x".repeat(100)}`, /longer than 96 characters/],
    ] as const) {
      const e = hubError(() => resolveModelSync(id, { cacheDir: cache }));
      expect(e.code).toBe("malformed-id");
      expect(e.what).toMatch(why);
    }
    expect(hubError(() => parseModelId("a/b/c")).what).toMatch(/exactly one '\/'/);
    for (const p of ["./tiny-org/tiny-llama", "../x/y", "/abs/x", "~/x", "a/b/c", "plain", "a\\b"]) expect(looksLikeModelId(p)).toBe(false);
    expect(looksLikeModelId("TinyLlama/TinyLlama-1.1B-Chat-v1.0")).toBe(true);
    const e = hubError(() => resolveModelSync("./no/such/dir", { cacheDir: cache }));
    expect(e.code).toBe("no-such-path");
    expect(e.what).toBe("./no/such/dir is neither an existing model directory nor a Hugging Face model id (ORG/NAME)");
  });

  it("an existing path is used as is (even one shaped like an id); a revision with a directory is refused", async () => {
    expect(resolveModelSync(TINY)).toEqual({ dir: TINY, source: "path" });
    expect(await resolveModel(TINY, { download: true })).toEqual({ dir: TINY, source: "path" });
    const e = hubError(() => resolveModelSync(TINY, { revision: "main" }));
    expect(e.what).toContain(`a revision (main) was given with the directory ${TINY}`);
    expect(() => loadModel(TINY, { revision: "main" })).toThrow(/a revision \(main\) was given with the directory/);
    expect(() => loadModel("tiny-org/tiny-llama", { cacheDir: cache, download: true })).toThrow(/download: true needs loadModelAsync/);
    // Nothing in the cache dir was created or changed by resolving.
    expect(readdirSync(cache).sort()).toEqual(["models--tiny-org--tiny-llama"]);
  });
});
