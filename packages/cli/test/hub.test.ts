// `--model ORG/NAME` from the command line, as users run it (the built dist/cli.js in a child
// process): resolved in the Hugging Face cache named by HF_HUB_CACHE (and --revision), fetched
// with --download from HF_ENDPOINT, a local stand-in for the Hub (nothing reaches the network).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { downloadModel } from "@modulora/llama";
import { FIXTURE_COMMIT, startHubServer, type HubServer } from "../../llama/test/hub-server.js";
import { CLI, LM, ROOT, TINY, runCli, type CliRun } from "./run-cli.js";

const REPO = "tiny-org/tiny-llama";
const V1 = "1".repeat(40);
const EVAL = ["--data", LM, "--metric", "ppl", "--seq-len", "64", "--max-windows", "2", "--json"];
const env = (extra: Record<string, string | undefined>) => ({ MODULORA_NUM_THREADS: "1", HF_ENDPOINT: undefined, HF_TOKEN: undefined, HF_HOME: undefined, HF_HUB_CACHE: undefined, ...extra });

let tmp: string;
let cache: string; // tiny-llama at main and at v1, fetched in-process before the CLI runs
let direct: number; // eval ppl of fixtures/tiny-llama

/** Runs the CLI without blocking this process's event loop (the stand-in Hub answers from it). */
function runCliAsync(args: readonly string[], extraEnv: Record<string, string | undefined>): Promise<CliRun> {
  const e: Record<string, string | undefined> = { ...process.env, FORCE_COLOR: "0", ...env(extraEnv) };
  for (const k of Object.keys(e)) if (e[k] === undefined) delete e[k];
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: e as NodeJS.ProcessEnv });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", fail);
    child.on("close", (code) => ok({ code, stdout, stderr }));
  });
}

/** Exit `code` (1: a runtime error, 2: a usage error), nothing on stdout, the last stderr line `modulora eval: …` matching `pattern`. */
function failsWith(r: CliRun, pattern: RegExp, code = 1): string {
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe("");
  const last = r.stderr.trimEnd().split("\n").at(-1)!;
  expect(last).toMatch(/^modulora eval: /);
  expect(last).toMatch(pattern);
  return last;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-cli-hub-"));
  cache = join(tmp, "hub");
  const server = await startHubServer({ repo: REPO, dir: TINY, refs: { main: FIXTURE_COMMIT, v1: V1 } });
  try {
    await downloadModel(REPO, { cacheDir: cache, endpoint: server.url, env: {} });
    await downloadModel(REPO, { cacheDir: cache, endpoint: server.url, env: {}, revision: "v1" });
  } finally {
    await server.close();
  }
  const r = runCli(["eval", "--model", TINY, ...EVAL], { env: env({}) });
  expect(r.code, r.stderr).toBe(0);
  direct = (JSON.parse(r.stdout) as { value: number }).value;
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("modulora --model ORG/NAME", () => {
  it("eval --model org/name reads HF_HUB_CACHE (no Hub running): the perplexity of --model fixtures/tiny-llama, at main, a tag and a commit prefix", () => {
    for (const extra of [[], ["--revision", "v1"], ["--revision", V1.slice(0, 7)], ["--revision", FIXTURE_COMMIT]]) {
      const r = runCli(["eval", "--model", REPO, ...extra, ...EVAL], { env: env({ HF_HUB_CACHE: cache }) });
      expect(r.code, r.stderr).toBe(0);
      expect((JSON.parse(r.stdout) as { value: number }).value).toBe(direct);
      const commit = extra[1] === "v1" || extra[1] === V1.slice(0, 7) ? V1 : FIXTURE_COMMIT;
      expect(r.stderr).toContain(`--model ${REPO}: ${extra[1] ?? "main"} (commit ${commit.slice(0, 12)}) in the Hugging Face cache: ${join(cache, "models--tiny-org--tiny-llama", "snapshots", commit)}`);
    }
    // HF_HOME/hub is the cache when HF_HUB_CACHE is not set.
    const r = runCli(["eval", "--model", REPO, ...EVAL], { env: env({ HF_HOME: tmp }) });
    expect(r.code, r.stderr).toBe(0);
  });

  it("a model or revision not in the cache, and a malformed id: one line saying what was looked for and --download", () => {
    const e = env({ HF_HUB_CACHE: cache });
    let line = failsWith(runCli(["eval", "--model", "other/model", ...EVAL], { env: e }), /model other\/model is not in the Hugging Face cache/);
    expect(line).toContain(`looked for models--other--model in ${cache} (from HF_HUB_CACHE)`);
    expect(line).toContain("pass --download");
    expect(line).toContain("`huggingface-cli download other/model`");
    line = failsWith(runCli(["eval", "--model", REPO, "--revision", "v7", ...EVAL], { env: e }), /revision v7 of tiny-org\/tiny-llama is not in the Hugging Face cache/);
    expect(line).toContain("refs main, v1");
    failsWith(runCli(["eval", "--model", "org/na me", ...EVAL], { env: e }), /"org\/na me" is not a Hugging Face model id \(the name "na me" may hold only letters/, 2);
    // A path that does not exist keeps the directory message.
    failsWith(runCli(["eval", "--model", "./no/such", ...EVAL], { env: e }), /model directory \.\/no\/such does not exist/);
  });

  it("--revision or --download with a directory (or a path that is not an id) is a usage error", () => {
    failsWith(runCli(["eval", "--model", TINY, "--revision", "main", ...EVAL], { env: env({}) }), /--revision is for a Hugging Face id ORG\/NAME, and --model .* is a path — drop --revision/, 2);
    failsWith(runCli(["eval", "--model", TINY, "--download", ...EVAL], { env: env({}) }), /--download is for a Hugging Face id ORG\/NAME, and --model .* is a path — drop --download/, 2);
    failsWith(runCli(["eval", "--model", "./no/such", "--download", ...EVAL], { env: env({}) }), /--download is for a Hugging Face id ORG\/NAME, and --model \.\/no\/such is not one/, 2);
  });

  it("--download fetches through HF_ENDPOINT into an empty HF_HUB_CACHE with a byte progress bar; then no request is needed", async () => {
    const server: HubServer = await startHubServer({ repo: REPO, dir: TINY });
    try {
      const empty = join(tmp, "empty-cache");
      const e = { HF_HUB_CACHE: empty, HF_ENDPOINT: server.url };
      const first = await runCliAsync(["eval", "--model", REPO, "--download", ...EVAL], e);
      expect(first.code, first.stderr).toBe(0);
      expect((JSON.parse(first.stdout) as { value: number }).value).toBe(direct);
      const total = ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"].reduce((s, f) => s + readFileSync(join(TINY, f)).length, 0);
      expect(first.stderr).toMatch(new RegExp(`^download ${total}/${total} bytes`, "m"));
      expect(first.stderr).toContain(`--model ${REPO}: downloaded 6 files of main (commit ${FIXTURE_COMMIT.slice(0, 12)}) in the Hugging Face cache`);
      const seen = server.requests.length;
      const again = await runCliAsync(["eval", "--model", REPO, "--download", ...EVAL], e);
      expect(again.code, again.stderr).toBe(0);
      expect(server.requests.length).toBe(seen);
    } finally {
      await server.close();
    }
  });

  it("--download of a gated model without HF_TOKEN: one line saying to set HF_TOKEN", async () => {
    const server = await startHubServer({ repo: REPO, dir: TINY, token: "hf_secret" });
    try {
      const r = await runCliAsync(["eval", "--model", REPO, "--download", ...EVAL], { HF_HUB_CACHE: join(tmp, "gated-cache"), HF_ENDPOINT: server.url });
      failsWith(r, /HTTP 401 \(the model is gated or private, and no token was sent\) — set HF_TOKEN to an access token/);
    } finally {
      await server.close();
    }
  });
});
