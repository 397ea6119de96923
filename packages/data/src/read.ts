// Reading dataset files: `.txt` as plain text, `.jsonl` as one JSON object per line. Every problem
// names the file and, for JSONL, the 1-based line. Field checks per format live in formats.ts.
import { createReadStream, readFileSync, statSync } from "node:fs";
import { extname } from "node:path";
import { createInterface } from "node:readline";
import { DataError, type DataLocation } from "./errors.js";

/** A parsed JSONL line: the object and where it came from. */
export interface JsonlRecord {
  value: Record<string, unknown>;
  where: Required<DataLocation>;
}

/** A plain-text document and the line it starts on. */
export interface TextDocument {
  text: string;
  where: Required<DataLocation>;
}

/** The file extensions {@link readDataFile} accepts. */
export const DATA_FILE_TYPES = [".jsonl", ".txt"] as const;

const BOM = "\uFEFF";

/** What a JSON value is, in words, for error messages. */
export function jsonTypeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

/** The file's text (a leading UTF-8 BOM removed), or a DataError for a missing, non-regular or empty file. */
function readWholeFile(path: string): string {
  checkReadable(path);
  const text = readFileSync(path, "utf8");
  const body = text.startsWith(BOM) ? text.slice(1) : text;
  if (body.trim() === "") throw new DataError("the file is empty", { file: path });
  return body;
}

function checkReadable(path: string): void {
  let stat;
  try {
    stat = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DataError(code === "ENOENT" ? "the file does not exist" : `cannot read the file (${code ?? String(err)})`, { file: path }, { cause: err });
  }
  if (!stat.isFile()) throw new DataError("not a regular file", { file: path });
}

/** Parses one JSONL line; null for a blank line (blank lines are allowed and skipped). */
function parseJsonlLine(raw: string, where: Required<DataLocation>): JsonlRecord | null {
  const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
  if (line.trim() === "") return null;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new DataError(`invalid JSON (${err instanceof Error ? err.message : String(err)})`, where, { cause: err });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DataError(`expected a JSON object, got ${jsonTypeName(value)}`, where);
  }
  return { value: value as Record<string, unknown>, where };
}

/**
 * Reads a JSONL file: one JSON object per line; blank lines are skipped, a UTF-8 BOM and CRLF line
 * ends are tolerated.
 * @throws DataError naming the file (missing, empty, no records) or `file:line` (invalid JSON, not an object).
 */
export function readJsonl(path: string): JsonlRecord[] {
  const lines = readWholeFile(path).split("\n");
  const records: JsonlRecord[] = [];
  lines.forEach((raw, i) => {
    const rec = parseJsonlLine(raw, { file: path, line: i + 1 });
    if (rec) records.push(rec);
  });
  return records;
}

/**
 * Streams a JSONL file line by line with the checks of {@link readJsonl}, for files too big to
 * hold as one string. The empty-file check happens at the end (no record at all).
 */
export async function* streamJsonl(path: string): AsyncGenerator<JsonlRecord> {
  checkReadable(path);
  const lines = createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Infinity });
  let line = 0;
  let count = 0;
  for await (const raw of lines) {
    line++;
    const rec = parseJsonlLine(line === 1 && raw.startsWith(BOM) ? raw.slice(1) : raw, { file: path, line });
    if (rec) {
      count++;
      yield rec;
    }
  }
  if (count === 0) throw new DataError("the file is empty", { file: path });
}

/**
 * Reads a plain-text file as documents: runs of lines separated by one or more blank lines (the
 * corpus convention of fixtures/data/lm: one document per paragraph group, blank line between).
 * @throws DataError for a missing or empty file.
 */
export function readTextDocuments(path: string): TextDocument[] {
  const lines = readWholeFile(path).split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  const docs: TextDocument[] = [];
  let start = -1;
  const flush = (end: number) => {
    if (start >= 0) docs.push({ text: lines.slice(start, end).join("\n"), where: { file: path, line: start + 1 } });
    start = -1;
  };
  lines.forEach((l, i) => {
    if (l.trim() === "") flush(i);
    else if (start < 0) start = i;
  });
  flush(lines.length);
  return docs;
}

/** A data file's contents: documents for `.txt`, records for `.jsonl`. */
export type DataFile = { kind: "text"; documents: TextDocument[] } | { kind: "jsonl"; records: JsonlRecord[] };

/**
 * Reads a `.txt` or `.jsonl` file by its extension.
 * @throws DataError for another extension (the message lists the accepted ones) and for any read problem.
 */
export function readDataFile(path: string): DataFile {
  const ext = extname(path).toLowerCase();
  if (ext === ".txt") return { kind: "text", documents: readTextDocuments(path) };
  if (ext === ".jsonl") return { kind: "jsonl", records: readJsonl(path) };
  throw new DataError(`unsupported file type ${JSON.stringify(ext || "(none)")}: use ${DATA_FILE_TYPES.join(" or ")}`, { file: path });
}

/**
 * A text corpus from a data file (what perplexity and calibration read): the `text` fields of a
 * `.jsonl` file's records joined by blank lines, or a `.txt` file — `txt: "raw"` as it is (the
 * fixtures' perplexity protocol), `txt: "documents"` its documents joined by one blank line
 * (calibration). `what` names the text in errors (e.g. "calibration records").
 * @throws DataError for a record without a string `text` field (naming file and line), and as {@link readDataFile}.
 */
export function readTextCorpus(path: string, options: { txt: "raw" | "documents"; what: string }): string {
  const ext = extname(path).toLowerCase();
  if (ext === ".txt" && options.txt === "raw") return readWholeFile(path);
  const file = readDataFile(path);
  if (file.kind === "text") return file.documents.map((d) => d.text).join("\n\n");
  return file.records
    .map(({ value, where }) => {
      if (typeof value["text"] !== "string") throw new DataError(`${options.what} need a string "text" field; use a .txt file, or records like {"text": "..."}`, where);
      return value["text"];
    })
    .join("\n\n");
}
