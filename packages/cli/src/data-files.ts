// Data files checked before a model loads, so a malformed file fails at once, naming the line.
import { existsSync } from "node:fs";
import { formatTraits, readDataFile, validateRecord, type DataFile } from "@modulora/data";
import { CliError, stepSync } from "./errors.js";

/** What to do about a bad data file. */
export const DATA_HINT = "fix the file: one JSON object per line with the fields of the format (docs/cli.md lists them)";

/**
 * Reads `path` and validates every record against `format` (JSON syntax, required fields and
 * their types); no tokenizer is needed. `flag` names the option in messages.
 */
export function checkDataFile(path: string, format: string, flag: string): DataFile {
  if (!existsSync(path)) throw new CliError(`${flag} ${path} does not exist`, `pass ${flag} a .jsonl file (or .txt for the text format)`);
  const traits = stepSync("bad format", "use one of text, instruct, chat, classification, summarization", () => formatTraits(format));
  const file = stepSync(`bad data in ${flag}`, DATA_HINT, () => readDataFile(path));
  if (file.kind === "text") {
    if (traits.kind !== "packed") throw new CliError(`${path} is plain text, but the ${format} format reads JSONL records`, "use a .jsonl file, or --format text");
  } else {
    stepSync(`bad data in ${flag}`, DATA_HINT, () => {
      for (const r of file.records) validateRecord(traits, r.value, r.where);
    });
    if (file.records.length === 0) throw new CliError(`${path} holds no records`, "add data, one JSON object per line");
  }
  return file;
}
