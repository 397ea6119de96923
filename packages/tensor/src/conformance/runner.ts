// Entry of the bundled conformance runner (dist/conformance-runner.mjs): plain `node` runs it,
// every dependency inlined. The native addon is not bundled: it is loaded at run time from
// MODULORA_KERNELS_ADDON, else from `modulora_kernels.node` beside this file, else from the
// workspace's kernels/build/Release (this file in packages/tensor/dist).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runConformanceCli } from "./cli.js";

function findAddon(): string | undefined {
  if (process.env.MODULORA_KERNELS_ADDON || process.env.MODULORA_KERNELS_PATH) return undefined; // the loader reads them
  const here = dirname(fileURLToPath(import.meta.url));
  const tried = [join(here, "modulora_kernels.node"), join(here, "..", "..", "..", "kernels", "build", "Release", "modulora_kernels.node")];
  const found = tried.find((p) => existsSync(p));
  if (found) process.env.MODULORA_KERNELS_ADDON = found;
  return found ? undefined : tried.join(", ");
}

const missing = process.argv.includes("--help") || process.argv.includes("--list") ? undefined : findAddon();
if (missing) {
  console.error(`conformance-runner: the native addon modulora_kernels.node was not found (tried ${missing}) — set MODULORA_KERNELS_ADDON to its path`);
  process.exitCode = 1;
} else {
  runConformanceCli(process.argv.slice(2), { out: (l) => console.log(l), err: (l) => console.error(l) }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`conformance-runner: ${(err as Error)?.stack ?? String(err)}`);
      process.exitCode = 1;
    },
  );
}
