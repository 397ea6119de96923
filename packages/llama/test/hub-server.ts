// A local stand-in for the Hugging Face Hub (node:http on 127.0.0.1), serving a model directory in
// the Hub's URL layout, for the tests of models by name: nothing reaches the network. It answers
// what @huggingface/hub and our downloader call:
//   GET /api/models/{org}/{name}/revision/{rev}     model info (JSON with `sha`)
//   GET /api/models/{org}/{name}/tree/{rev}         the file listing (path, size, git oid, lfs)
//   GET /{org}/{name}/resolve/{rev}/{file}          the bytes of a small file; an LFS file is a 302
//                                                   to /cdn-lfs/{sha256}, as the Hub redirects to its CDN
//   GET /cdn-lfs/{sha256}                           the bytes of an LFS file
// Files carry ETag, X-Repo-Commit, Content-Length and Accept-Ranges; `Range: bytes=A-` / `A-B`
// gets 206 with Content-Range (416 past the end). Every request is recorded.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

/** One file of the served repository. */
export interface ServedFile {
  path: string;
  data: Buffer;
  /** Stored with Git LFS (its listing has `lfs`, its bytes come through the CDN redirect). */
  lfs: boolean;
  /** git's blob oid: sha1 of `blob <size>\0` + content. */
  gitOid: string;
  sha256: string;
}

/** A request the server saw. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  status: number;
}

/** Options of {@link startHubServer}. */
export interface HubServerOptions {
  /** The repository id served (`org/name`). */
  repo: string;
  /** The directory whose files the repository holds (plus `extraFiles`). */
  dir: string;
  /** More files: path → content. */
  extraFiles?: Record<string, string | Buffer>;
  /** Branches and tags → commit (default: `main` at {@link FIXTURE_COMMIT}). */
  refs?: Record<string, string>;
  /** A token every request must bear (`Authorization: Bearer …`): without it, 401. */
  token?: string;
  /** Cut the connection of the first download of this file after this many bytes of the body. */
  cutAfter?: { path: string; bytes: number };
}

/** The served commit when `refs` is not given. */
export const FIXTURE_COMMIT = "0123456789abcdef0123456789abcdef01234567";

/** A running server. */
export interface HubServer {
  /** `http://127.0.0.1:PORT`: what HF_ENDPOINT is set to. */
  url: string;
  files: ServedFile[];
  requests: SeenRequest[];
  /** The requests whose path includes `fragment`. */
  requestsFor(fragment: string): SeenRequest[];
  close(): Promise<void>;
}

const gitOid = (data: Buffer) => createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

function served(path: string, data: Buffer): ServedFile {
  // The Hub keeps weights and large tokenizers in LFS; small JSON files in git.
  const lfs = /\.(safetensors|bin|gguf|pt)$/.test(path) || data.length > 100_000;
  return { path, data, lfs, gitOid: gitOid(data), sha256: sha256(data) };
}

/** Starts the server on a free port of 127.0.0.1. */
export async function startHubServer(options: HubServerOptions): Promise<HubServer> {
  const files: ServedFile[] = [];
  for (const name of readdirSync(options.dir).sort()) {
    const p = join(options.dir, name);
    if (statSync(p).isFile()) files.push(served(name, readFileSync(p)));
  }
  for (const [path, content] of Object.entries(options.extraFiles ?? {})) files.push(served(path, Buffer.from(content)));
  const refs = options.refs ?? { main: FIXTURE_COMMIT };
  const commits = new Set(Object.values(refs));
  const requests: SeenRequest[] = [];
  let cut = options.cutAfter ? { ...options.cutAfter } : null;

  const commitOf = (rev: string) => refs[rev] ?? (commits.has(rev) ? rev : undefined);
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const seen: SeenRequest = { method: req.method ?? "GET", url: req.url ?? "", headers: req.headers, status: 0 };
    requests.push(seen);
    const send = (status: number, body: string | Buffer, headers: Record<string, string> = {}) => {
      seen.status = status;
      res.writeHead(status, headers);
      res.end(req.method === "HEAD" ? undefined : body);
    };
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => send(status, JSON.stringify(body), { "Content-Type": "application/json", ...headers });
    if (options.token && req.headers.authorization !== `Bearer ${options.token}`) {
      return json(401, { error: "Invalid username or password." }, { "X-Error-Code": "GatedRepo" });
    }
    const sendBytes = (file: ServedFile, commit: string | null) => {
      const size = file.data.length;
      const headers: Record<string, string> = { "Accept-Ranges": "bytes", ETag: `"${file.lfs ? file.sha256 : file.gitOid}"`, "Content-Type": "application/octet-stream" };
      if (commit) headers["X-Repo-Commit"] = commit;
      let [start, end] = [0, size - 1];
      const range = req.headers.range;
      if (range) {
        const m = /^bytes=(\d+)-(\d*)$/.exec(range);
        if (!m || Number(m[1]) >= size) return send(416, "", { ...headers, "Content-Range": `bytes */${size}` });
        start = Number(m[1]);
        if (m[2] !== "") end = Math.min(size - 1, Number(m[2]));
      }
      const body = file.data.subarray(start, end + 1);
      headers["Content-Length"] = String(body.length);
      if (range) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
      seen.status = range ? 206 : 200;
      res.writeHead(seen.status, headers);
      if (req.method === "HEAD") return res.end();
      if (cut && cut.path === file.path) {
        // A network failure in the middle of the body: some bytes, then the socket closes.
        const n = Math.max(0, cut.bytes - start);
        cut = null;
        res.write(body.subarray(0, n), () => res.destroy());
        return;
      }
      res.end(body);
    };

    const parts = url.pathname.split("/").filter((s) => s !== "").map(decodeURIComponent);
    if (parts[0] === "cdn-lfs" && parts.length === 2) {
      const file = files.find((f) => f.lfs && f.sha256 === parts[1]);
      return file ? sendBytes(file, null) : json(404, { error: "Entry not found" });
    }
    const api = parts[0] === "api" && parts[1] === "models";
    const [org, name, kind, rev, ...rest] = api ? parts.slice(2) : parts;
    if (`${org}/${name}` !== options.repo) return json(404, { error: "Repository not found" }, { "X-Error-Code": "RepoNotFound" });
    const commit = rev === undefined ? undefined : commitOf(rev);
    if (!commit) return json(404, { error: `Invalid rev id: ${rev}` }, { "X-Error-Code": "RevisionNotFound" });
    if (api && kind === "revision" && rest.length === 0) {
      return json(200, { _id: "0".repeat(24), id: options.repo, sha: commit, private: false, gated: false, downloads: 0, likes: 0, lastModified: "2026-01-01T00:00:00.000Z", pipeline_tag: "text-generation" });
    }
    if (api && kind === "tree" && rest.length === 0) {
      return json(
        200,
        files.map((f) => ({
          type: "file",
          path: f.path,
          size: f.data.length,
          oid: f.lfs ? gitOid(Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${f.sha256}\nsize ${f.data.length}\n`)) : f.gitOid,
          ...(f.lfs ? { lfs: { oid: f.sha256, size: f.data.length, pointerSize: 132 } } : {}),
        })),
      );
    }
    if (!api && kind === "resolve") {
      const file = files.find((f) => f.path === rest.join("/"));
      if (!file) return json(404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound" });
      if (file.lfs) {
        return send(302, "", { Location: `/cdn-lfs/${file.sha256}`, "X-Repo-Commit": commit, "X-Linked-Etag": `"${file.sha256}"`, "X-Linked-Size": String(file.data.length), ETag: `"${file.gitOid}"` });
      }
      return sendBytes(file, commit);
    }
    return json(404, { error: `no route ${url.pathname}` });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    files,
    requests,
    requestsFor: (fragment) => requests.filter((r) => r.url.includes(fragment)),
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
