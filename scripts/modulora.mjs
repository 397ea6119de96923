#!/usr/bin/env node
// Root entry of the `modulora` command (`pnpm modulora <command> ...`): runs the built CLI,
// packages/cli/dist/cli.js, with the same arguments, standard streams and exit code.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../packages/cli/dist/cli.js", import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write(
    "modulora: the CLI is not built (packages/cli/dist/cli.js is missing) — run `pnpm install && pnpm build` " +
      "at the repository root (or `npm run demo`, which does both)\n",
  );
  process.exit(1);
}
// Ctrl-C reaches the CLI too (same process group); it saves a checkpoint and exits 130. This
// wrapper waits for it instead of dying first.
const ignore = () => {};
for (const s of ["SIGINT", "SIGTERM"]) process.on(s, ignore);
const r = spawnSync(process.execPath, [cli, ...process.argv.slice(2)], { stdio: "inherit" });
for (const s of ["SIGINT", "SIGTERM"]) process.off(s, ignore);
if (r.error) {
  process.stderr.write(`modulora: cannot start ${cli}: ${r.error.message}\n`);
  process.exit(1);
}
// A signal that ended the child ends this process the same way.
if (r.signal) process.kill(process.pid, r.signal);
process.exit(r.status ?? 1);
