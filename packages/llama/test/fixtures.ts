// Paths of the test fixtures. The bundled ones live in the repository (fixtures/); the shared
// small-llama model does not, so its path comes from MODULORA_SMALL_LLAMA, by default
// ../shared/fixtures/small-llama relative to the repository root (where CI has it). A test that
// needs it fails, never skips, when it is missing.
import { existsSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** The bundled fixtures directory (fixtures/ in the repository). */
export const FIXTURES = join(REPO_ROOT, "fixtures");

/** Where small-llama is looked for: MODULORA_SMALL_LLAMA (relative to the repository root), or the default. */
export function smallLlamaPath(env: NodeJS.ProcessEnv = process.env): string {
  const v = env["MODULORA_SMALL_LLAMA"];
  if (v === undefined || v === "") return resolve(REPO_ROOT, "../shared/fixtures/small-llama");
  return isAbsolute(v) ? v : resolve(REPO_ROOT, v);
}

/**
 * The small-llama model directory. Throws, with what to set, when it is not a directory holding a
 * config.json: call it inside a test or a `beforeAll`, so that exactly the tests needing it fail.
 */
export function smallLlamaDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = smallLlamaPath(env);
  const where = env["MODULORA_SMALL_LLAMA"] ? `MODULORA_SMALL_LLAMA=${env["MODULORA_SMALL_LLAMA"]}` : "the default path";
  if (!existsSync(dir) || !statSync(dir).isDirectory() || !existsSync(join(dir, "config.json"))) {
    throw new Error(
      `small-llama fixture not found at ${dir} (${where}) — set MODULORA_SMALL_LLAMA to the small-llama model directory ` +
        `(the shared fixtures' small-llama, with config.json, 5 safetensors shards and reference.safetensors)`,
    );
  }
  return dir;
}

/** ‖a − b‖ / ‖b‖ in f64 (the fixtures README's tolerance measure for small-llama). */
export { relL2 } from "@modulora/tensor/testing";
