// Copies the bundled benchmark data (the repository's fixtures/data) into the package's data/
// folder, which is published with it (package.json "files") and git-ignored: the perplexity text,
// the calibration text, and the spam and man-page task files.
import { copyFileSync, existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const from = join(pkg, "../../fixtures/data");
const FILES = ["lm/valid.txt", "lm/calib-small.txt", "spam/train.jsonl", "spam/valid.jsonl", "manpage-summary/train.jsonl", "manpage-summary/valid.jsonl"];
for (const f of FILES) {
  const src = join(from, f), dst = join(pkg, "data", f);
  if (!existsSync(src)) throw new Error(`copy-data: ${src} is missing (the repository's fixtures/data)`);
  if (existsSync(dst) && statSync(dst).size === statSync(src).size && statSync(dst).mtimeMs >= statSync(src).mtimeMs) continue;
  mkdirSync(dirname(dst), { recursive: true });
  copyFileSync(src, dst);
}
