// Hugging Face model ids (`org/name`): what looks like one, and the strict check of one.
import { HubError } from "./errors.js";

/** A model repository id, split. */
export interface ModelId {
  /** `org/name` as given. */
  id: string;
  org: string;
  name: string;
}

// huggingface_hub's validate_repo_id: word characters, `-` and `.`, starting and ending with a
// word character; no `--` or `..`; at most 96 characters; not ending in `.git`.
const PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
const MAX_ID_LENGTH = 96;

/**
 * Whether `s` is shaped like a model id rather than a path: exactly one `/`, not at either end,
 * and no `./`, `../`, `~` or `\` that only a path would have. Says nothing of whether the id is
 * valid ({@link parseModelId} checks that).
 */
export function looksLikeModelId(s: string): boolean {
  if (s.includes("\\") || s.startsWith(".") || s.startsWith("~")) return false;
  const parts = s.split("/");
  return parts.length === 2 && parts[0] !== "" && parts[1] !== "";
}

/** Checks and splits `org/name`; a {@link HubError} `malformed-id` says which rule it breaks. */
export function parseModelId(id: string): ModelId {
  const fail = (why: string) =>
    new HubError("malformed-id", `${JSON.stringify(id)} is not a Hugging Face model id (${why})`, "pass a model directory, or an id ORG/NAME as on huggingface.co (letters, digits, '-', '_' and '.')");
  const parts = id.split("/");
  if (parts.length !== 2) throw fail(`an id is ORG/NAME, with exactly one '/'`);
  const [org, name] = parts as [string, string];
  for (const [what, part] of [["organization", org], ["name", name]] as const) {
    if (part === "") throw fail(`the ${what} is empty`);
    if (!PART.test(part)) throw fail(`the ${what} ${JSON.stringify(part)} may hold only letters, digits, '-', '_' and '.', and must start and end with a letter or digit`);
    if (part.includes("--") || part.includes("..")) throw fail(`the ${what} ${JSON.stringify(part)} contains '--' or '..'`);
  }
  if (id.length > MAX_ID_LENGTH) throw fail(`longer than ${MAX_ID_LENGTH} characters`);
  if (name.endsWith(".git")) throw fail("the name ends in .git");
  return { id, org, name };
}

/** The cache folder of a model repository: `models--org--name`. */
export function repoFolderName(id: ModelId): string {
  return `models--${id.org}--${id.name}`;
}
