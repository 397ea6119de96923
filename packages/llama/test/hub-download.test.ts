// Downloading a model by name through a local stand-in for the Hub (./hub-server.ts; nothing
// reaches the network): into an empty cache in huggingface_hub's layout, only the files a model
// needs, then loaded with the fixture's logits; a partial `.incomplete` file resumed with a Range
// request; a connection cut mid-file kept for the next run; 401, 404, a dead endpoint and a
// corrupted partial file refused with what to do.
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { tensorFrom, tidy } from "@modulora/tensor";
import { downloadModel, HubError, loadModel, loadModelAsync, resolveModel, resolveModelSync, type DownloadProgress, type LlamaModel } from "../src/index.js";
import { FIXTURES } from "./fixtures.js";
import { FIXTURE_COMMIT, startHubServer, type HubServer, type HubServerOptions } from "./hub-server.js";

const TINY = join(FIXTURES, "tiny-llama");
const REPO = "tiny-org/tiny-llama";
/** What a model needs of tiny-llama (reference.*, tokenizer_vectors.json and the decoys are not fetched). */
const NEEDED = ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"];
const DECOYS = { "pytorch_model.bin": "not a pickle", "model.gguf": "not gguf", "README.md": "# tiny" };
const WEIGHTS = readFileSync(join(TINY, "model.safetensors"));

let tmp: string;
let server: HubServer | null = null;
let n = 0;
/** A fresh empty cache directory. */
const freshCache = () => join(tmp, `cache-${n++}`);
async function serve(options: Partial<HubServerOptions> = {}): Promise<HubServer> {
  server = await startHubServer({ repo: REPO, dir: TINY, extraFiles: DECOYS, ...options });
  return server;
}
const blobOf = (s: HubServer, path: string) => {
  const f = s.files.find((x) => x.path === path)!;
  return f.lfs ? f.sha256 : f.gitOid;
};

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-hub-download-"));
});
afterEach(async () => {
  await server?.close();
  server = null;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ids = [1, 5, 9, 2, 7, 3];
function logits(model: LlamaModel): number[] {
  return tidy(() => Array.from(model.forward(tensorFrom(ids, { shape: [1, ids.length], dtype: "i32" })).logits.toFloat64Array()));
}

async function rejection(p: Promise<unknown>): Promise<HubError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(HubError);
    return err as HubError;
  }
  throw new Error("expected a HubError");
}

describe("downloadModel through a local Hub", () => {
  it("into an empty cache, in huggingface_hub's layout, only the files a model needs; it loads with the fixture's logits", async () => {
    const s = await serve();
    const cacheDir = freshCache();
    const progress: DownloadProgress[] = [];
    const r = await downloadModel(REPO, { cacheDir, endpoint: s.url, env: {}, onProgress: (p) => progress.push(p) });
    const root = join(cacheDir, "models--tiny-org--tiny-llama");
    expect(r.dir).toBe(join(root, "snapshots", FIXTURE_COMMIT));
    expect(r.commit).toBe(FIXTURE_COMMIT);
    expect([...r.files].sort()).toEqual(NEEDED);
    expect([...r.downloaded].sort()).toEqual(NEEDED);
    expect(r.resumed).toEqual([]);
    const total = NEEDED.reduce((sum, f) => sum + readFileSync(join(TINY, f)).length, 0);
    expect(r.bytesFetched).toBe(total);
    // refs/main holds the commit; each snapshot file is a relative link to blobs/<sha256 or git oid>.
    expect(readFileSync(join(root, "refs", "main"), "utf8")).toBe(FIXTURE_COMMIT);
    expect(readdirSync(r.dir).sort()).toEqual(NEEDED);
    for (const f of NEEDED) {
      expect(lstatSync(join(r.dir, f)).isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(r.dir, f))).toBe(`../../blobs/${blobOf(s, f)}`);
      expect(readFileSync(join(r.dir, f)).equals(readFileSync(join(TINY, f)))).toBe(true);
    }
    expect(readdirSync(join(root, "blobs")).sort()).toEqual(NEEDED.map((f) => blobOf(s, f)).sort()); // no .incomplete left
    // The decoys and unneeded files were never asked for; the LFS weights came through the CDN redirect.
    for (const f of ["pytorch_model.bin", "model.gguf", "README.md", "reference.safetensors", "tokenizer_vectors.json"]) expect(s.requestsFor(`/${f}`)).toEqual([]);
    expect(s.requestsFor(`/resolve/${FIXTURE_COMMIT}/model.safetensors`).map((q) => q.status)).toEqual([302]);
    expect(s.requestsFor(`/cdn-lfs/${blobOf(s, "model.safetensors")}`).map((q) => q.status)).toEqual([200]);
    // Progress (of the weights, once the total is known): bytes only grow, and end at the total of the model's files.
    expect(new Set(progress.map((p) => p.file))).toEqual(new Set(["model.safetensors"]));
    expect(progress.at(-1)!.bytes).toBe(total);
    expect(progress.at(-1)!.totalBytes).toBe(total);
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.bytes).toBeGreaterThanOrEqual(progress[i - 1]!.bytes);
    const weightEvents = progress.filter((p) => p.file === "model.safetensors");
    expect(weightEvents.at(-1)).toMatchObject({ fileBytes: WEIGHTS.length, fileTotal: WEIGHTS.length });

    // The downloaded model is the fixture, bit for bit; resolving again needs no request.
    const direct = loadModel(TINY);
    const fetched = loadModel(REPO, { cacheDir });
    try {
      expect(logits(fetched.model)).toEqual(logits(direct.model));
    } finally {
      direct.model.dispose();
      fetched.model.dispose();
    }
    const before = s.requests.length;
    expect(resolveModelSync(REPO, { cacheDir }).dir).toBe(r.dir);
    expect((await resolveModel(REPO, { cacheDir, download: true, endpoint: s.url, env: {} })).source).toBe("cache");
    expect(s.requests.length).toBe(before);
  });

  it("loadModelAsync('org/name', { download: true }) fetches through HF_ENDPOINT into HF_HUB_CACHE", async () => {
    const s = await serve({ refs: { main: FIXTURE_COMMIT, v1: FIXTURE_COMMIT } });
    const cacheDir = freshCache();
    const saved = { ...process.env };
    process.env["HF_ENDPOINT"] = s.url;
    process.env["HF_HUB_CACHE"] = cacheDir;
    try {
      const loaded = await loadModelAsync(REPO, { download: true, revision: "v1" });
      loaded.model.dispose();
    } finally {
      for (const k of ["HF_ENDPOINT", "HF_HUB_CACHE"]) if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    expect(readFileSync(join(cacheDir, "models--tiny-org--tiny-llama", "refs", "v1"), "utf8")).toBe(FIXTURE_COMMIT);
    expect(s.requestsFor("/api/models/tiny-org/tiny-llama/revision/v1")).toHaveLength(1);
  });

  it("resume: a half-written .incomplete blob is completed with a Range request, and the bytes are the fixture's", async () => {
    const s = await serve();
    const cacheDir = freshCache();
    const blobs = join(cacheDir, "models--tiny-org--tiny-llama", "blobs");
    mkdirSync(blobs, { recursive: true });
    const half = Math.floor(WEIGHTS.length / 2);
    const incomplete = join(blobs, `${blobOf(s, "model.safetensors")}.incomplete`);
    writeFileSync(incomplete, WEIGHTS.subarray(0, half));
    const r = await downloadModel(REPO, { cacheDir, endpoint: s.url, env: {} });
    expect(r.resumed).toEqual(["model.safetensors"]);
    expect(r.bytesFetched).toBe(NEEDED.reduce((sum, f) => sum + readFileSync(join(TINY, f)).length, 0) - half);
    const cdn = s.requestsFor(`/cdn-lfs/${blobOf(s, "model.safetensors")}`);
    expect(cdn.map((q) => [q.headers.range, q.status])).toEqual([[`bytes=${half}-`, 206]]);
    expect(existsSync(incomplete)).toBe(false);
    expect(readFileSync(join(r.dir, "model.safetensors")).equals(WEIGHTS)).toBe(true);
  });

  it("a connection cut mid-file fails naming the bytes received and keeps the partial file; the next run resumes it", async () => {
    const cutAt = 5_000_000;
    const s = await serve({ cutAfter: { path: "model.safetensors", bytes: cutAt } });
    const cacheDir = freshCache();
    const e = await rejection(downloadModel(REPO, { cacheDir, endpoint: s.url, env: {} }));
    expect(e.code).toBe("network");
    const incomplete = join(cacheDir, "models--tiny-org--tiny-llama", "blobs", `${blobOf(s, "model.safetensors")}.incomplete`);
    // The server cuts after cutAt bytes; the client may have written fewer when the socket closed.
    const got = Number(new RegExp(`download of model\\.safetensors of ${REPO} stopped after (\\d+) of ${WEIGHTS.length} bytes`).exec(e.what)?.[1]);
    expect(got).toBeGreaterThan(0);
    expect(got).toBeLessThanOrEqual(cutAt);
    expect(e.what).toContain(`the partial file ${incomplete} is kept`);
    expect(e.todo).toBe("run again to resume it");
    expect(readFileSync(incomplete).equals(WEIGHTS.subarray(0, got))).toBe(true);
    expect(existsSync(join(cacheDir, "models--tiny-org--tiny-llama", "refs", "main"))).toBe(false); // not complete: no ref yet
    const r = await downloadModel(REPO, { cacheDir, endpoint: s.url, env: {} });
    expect(r.downloaded).toEqual(["model.safetensors"]); // the metadata files were complete already
    expect(r.resumed).toEqual(["model.safetensors"]);
    expect(s.requestsFor(`/cdn-lfs/${blobOf(s, "model.safetensors")}`).map((q) => q.headers.range ?? null)).toEqual([null, `bytes=${got}-`]);
    expect(readFileSync(join(r.dir, "model.safetensors")).equals(WEIGHTS)).toBe(true);
  });

  it("a partial file whose bytes are wrong fails the checksum and is removed", async () => {
    const s = await serve();
    const cacheDir = freshCache();
    const blobs = join(cacheDir, "models--tiny-org--tiny-llama", "blobs");
    mkdirSync(blobs, { recursive: true });
    const incomplete = join(blobs, `${blobOf(s, "model.safetensors")}.incomplete`);
    writeFileSync(incomplete, Buffer.alloc(1000, 7));
    const e = await rejection(downloadModel(REPO, { cacheDir, endpoint: s.url, env: {} }));
    expect(e.code).toBe("checksum");
    expect(e.what).toContain(`not ${blobOf(s, "model.safetensors")} as the repository says (the file was removed)`);
    expect(existsSync(incomplete)).toBe(false);
    // The next run fetches it whole.
    const r = await downloadModel(REPO, { cacheDir, endpoint: s.url, env: {} });
    expect(readFileSync(join(r.dir, "model.safetensors")).equals(WEIGHTS)).toBe(true);
  });

  it("401 (gated or private): without HF_TOKEN it says to set it; a refused token says so; with the token it downloads", async () => {
    const s = await serve({ token: "hf_secret" });
    const cacheDir = freshCache();
    let e = await rejection(downloadModel(REPO, { cacheDir, endpoint: s.url, env: {} }));
    expect(e.code).toBe("unauthorized");
    expect(e.message).toBe(
      `model info of ${REPO} at ${s.url}: HTTP 401 (the model is gated or private, and no token was sent) — set HF_TOKEN to an access token (huggingface.co/settings/tokens) of an account with access to the model`,
    );
    e = await rejection(downloadModel(REPO, { cacheDir, endpoint: s.url, env: { HF_TOKEN: "hf_wrong" } }));
    expect(e.what).toContain("HF_TOKEN was refused");
    e = await rejection(downloadModel(REPO, { cacheDir, endpoint: s.url, env: { HF_TOKEN: "not-a-token" } }));
    expect(e.what).toContain("must start with hf_");
    const r = await downloadModel(REPO, { cacheDir, endpoint: s.url, env: { HF_TOKEN: "hf_secret" } });
    expect(readFileSync(join(r.dir, "model.safetensors")).equals(WEIGHTS)).toBe(true);
    expect(s.requestsFor("/cdn-lfs/").at(-1)!.headers.authorization).toBe("Bearer hf_secret");
  });

  it("404: no such repository, or no such revision", async () => {
    const s = await serve();
    const cacheDir = freshCache();
    let e = await rejection(downloadModel("tiny-org/nope", { cacheDir, endpoint: s.url, env: {} }));
    expect(e.code).toBe("not-found");
    expect(e.what).toBe(`model info: tiny-org/nope has no revision main at ${s.url} (HTTP 404: no such model or revision, or a private one without a token)`);
    e = await rejection(resolveModel(REPO, { cacheDir, revision: "v9", download: true, endpoint: s.url, env: {} }));
    expect(e.code).toBe("not-found");
    expect(e.what).toContain(`${REPO} has no revision v9`);
    expect(existsSync(cacheDir)).toBe(false); // nothing written for a failed lookup
  });

  it("a dead endpoint is a network error naming it; nothing is written", async () => {
    const s = await serve();
    const dead = s.url;
    await s.close();
    server = null;
    const cacheDir = freshCache();
    const e = await rejection(downloadModel(REPO, { cacheDir, endpoint: dead, env: {} }));
    expect(e.code).toBe("network");
    expect(e.what).toContain(`model info of ${REPO}: cannot reach ${dead}`);
    expect(e.what).toContain("ECONNREFUSED");
    expect(e.todo).toContain("HF_ENDPOINT");
    expect(existsSync(cacheDir)).toBe(false);
  });

  it("a repository without safetensors weights or without a tokenizer is refused before any weight is fetched", async () => {
    const noWeights = join(tmp, "no-weights");
    mkdirSync(noWeights);
    for (const f of NEEDED.filter((x) => x !== "model.safetensors")) writeFileSync(join(noWeights, f), readFileSync(join(TINY, f)));
    let s = await serve({ dir: noWeights, extraFiles: { "pytorch_model.bin": "pickle" } });
    let e = await rejection(downloadModel(REPO, { cacheDir: freshCache(), endpoint: s.url, env: {} }));
    expect(e.code).toBe("missing-files");
    expect(e.what).toBe(`${REPO} at main has no safetensors weights (only PyTorch pickle files, which are not read)`);
    expect(s.requestsFor("/resolve/")).toEqual([]);
    await s.close();
    rmSync(join(noWeights, "tokenizer.json"));
    s = await serve({ dir: noWeights });
    e = await rejection(downloadModel(REPO, { cacheDir: freshCache(), endpoint: s.url, env: {} }));
    expect(e.what).toBe(`${REPO} at main (commit ${FIXTURE_COMMIT}) has no tokenizer.json`);
    expect(s.requestsFor("/resolve/")).toEqual([]);
  });
});
