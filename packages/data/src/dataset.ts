// Building datasets: records (read from files or given) → validated → examples, with the spec
// (format, templates, label set, seqLen) to save beside the adapter.
import { encodeChat } from "./chat.js";
import { encodePromptTarget, IGNORE_INDEX, type Example, type Truncation } from "./encode.js";
import { DataError, type DataLocation } from "./errors.js";
import { formatTraits, labelString, validateRecord, type DatasetFormat, type FormatTraits } from "./formats.js";
import { packDocuments } from "./pack.js";
import { readDataFile } from "./read.js";
import { fillTemplate, type Templates } from "./template.js";
import { specialIds, type ChatMessage, type SpecialIds, type TokenizerLike } from "./tokenizer.js";

/** What a dataset was built with; save it with the adapter and pass it back to build evaluation data the same way. */
export interface DatasetSpec {
  format: DatasetFormat;
  /** Maximum tokens per example (the window length for `text`). */
  seqLen: number;
  /** The templates in use, defaults filled in (null for `text` and `chat`, which have none). */
  templates: Templates | null;
  /** `classification`: the label set (from the training data: unique, sorted; or as given). */
  labels?: string[];
}

/** Options of {@link loadDataset} and {@link buildDataset}. A {@link DatasetSpec} plus a tokenizer is a valid value. */
export interface DatasetOptions {
  format: DatasetFormat | string;
  tokenizer: TokenizerLike;
  seqLen: number;
  /** Template overrides (prompt-target formats); unset ones keep the format's defaults. */
  templates?: Partial<Templates> | null;
  /** `classification`: a fixed label set (e.g. the training spec's); records with another label are errors. */
  labels?: readonly (string | number)[];
  /** Names in-memory records in errors (default `"<records>"`); `buildDataset` only. */
  source?: string;
}

/** Counts of what building did. */
export interface DatasetStats {
  /** Records (prompt-target, chat) or documents (text) read. */
  records: number;
  examples: number;
  /** Tokens over all examples. */
  tokens: number;
  /** Labels that are not −100, over all examples. */
  labelTokens: number;
  /** Examples whose prompt start was cut to fit seqLen. */
  truncatedPrompts: number;
  /** Examples whose target alone did not fit: its end was cut. */
  truncatedTargets: number;
  /** `text`: tokens of the last partial window, dropped. */
  droppedTokens: number;
}

/** A built dataset. */
export interface Dataset {
  examples: Example[];
  spec: DatasetSpec;
  stats: DatasetStats;
}

/** One input: a plain-text document (`text` format) or a record, and where it came from. */
export interface DatasetItem {
  value: string | Readonly<Record<string, unknown>>;
  where?: DataLocation;
}

/**
 * Reads `.txt` / `.jsonl` files (in order) and builds a dataset from them. `.txt` files hold
 * documents separated by blank lines and serve the `text` format only.
 * @throws DataError naming the file (and line) for any read or validation problem.
 */
export function loadDataset(paths: string | readonly string[], options: DatasetOptions): Dataset {
  const list = typeof paths === "string" ? [paths] : paths;
  if (list.length === 0) throw new DataError("loadDataset: no files given");
  formatTraits(options.format); // an unknown format fails before any file is read
  const items: DatasetItem[] = [];
  for (const path of list) {
    const file = readDataFile(path);
    if (file.kind === "text") for (const d of file.documents) items.push({ value: d.text, where: d.where });
    else for (const r of file.records) items.push(r);
  }
  return buildItems(items, options);
}

/** Builds a dataset from in-memory documents (strings, `text` format) or records. */
export function buildDataset(records: readonly (string | Readonly<Record<string, unknown>>)[], options: DatasetOptions): Dataset {
  const file = options.source ?? "<records>";
  return buildItems(records.map((value, i) => ({ value, where: { file, line: i + 1 } })), options);
}

function checkSeqLen(seqLen: number): void {
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new DataError(`seqLen must be an integer ≥ 2, got ${seqLen}`);
}

/** The format's templates with `overrides` applied; refuses overrides a format cannot use. */
export function resolveTemplates(traits: FormatTraits, overrides: Partial<Templates> | null | undefined): Templates | null {
  const given = overrides ?? {};
  const keys = Object.keys(given).filter((k) => given[k as keyof Templates] !== undefined);
  if (traits.templates === null) {
    if (keys.length > 0) throw new DataError(`the ${traits.name} format takes no templates (got ${keys.join(", ")})`);
    return null;
  }
  const known = Object.keys(traits.templates);
  for (const k of keys) {
    if (!known.includes(k)) throw new DataError(`the ${traits.name} format has no "${k}" template (it has ${known.join(", ")})`);
    if (typeof given[k as keyof Templates] !== "string") throw new DataError(`template "${k}" must be a string`);
  }
  return { ...traits.templates, ...(Object.fromEntries(keys.map((k) => [k, given[k as keyof Templates]])) as Partial<Templates>) };
}

/** The prompt and target texts of a record under `templates`. */
export function renderPromptTarget(traits: FormatTraits, templates: Templates, record: Readonly<Record<string, unknown>>, where?: DataLocation): { prompt: string; target: string } {
  const promptTemplate = traits.promptTemplate ? traits.promptTemplate(templates, record) : templates.prompt;
  return { prompt: fillTemplate(promptTemplate, record, where), target: fillTemplate(templates.target, record, where) };
}

function buildItems(items: readonly DatasetItem[], options: DatasetOptions): Dataset {
  const traits = formatTraits(options.format);
  checkSeqLen(options.seqLen);
  const templates = resolveTemplates(traits, options.templates);
  if (options.labels !== undefined && traits.labelField === undefined) throw new DataError(`the ${traits.name} format has no label set (labels are for classification)`);
  const special = specialIds(options.tokenizer);
  const stats: DatasetStats = { records: items.length, examples: 0, tokens: 0, labelTokens: 0, truncatedPrompts: 0, truncatedTargets: 0, droppedTokens: 0 };
  const spec: DatasetSpec = { format: traits.name, seqLen: options.seqLen, templates };

  let examples: Example[];
  if (traits.kind === "packed") {
    const docs = items.map(({ value, where }) => {
      if (typeof value === "string") return value;
      validateRecord(traits, value, where);
      return value["text"] as string;
    });
    const packed = packDocuments(docs, options.tokenizer, special, options.seqLen);
    examples = packed.examples;
    stats.droppedTokens = packed.droppedTokens;
    if (examples.length === 0) throw new DataError(`the text makes no full window: ${packed.tokens} tokens < seqLen ${options.seqLen}`);
  } else {
    const records = items.map(({ value, where }) => {
      if (typeof value === "string") throw new DataError(`plain text cannot be used by the ${traits.name} format, which reads JSONL records (plain text is for the text format)`, where);
      validateRecord(traits, value, where);
      return { value, where };
    });
    if (traits.labelField !== undefined) spec.labels = labelSet(records, traits.labelField, options.labels);
    const encodeOne = traits.kind === "chat" ? chatEncoder(options.tokenizer, special, options.seqLen) : promptTargetEncoder(traits, templates!, options.tokenizer, special, options.seqLen);
    examples = records.map(({ value, where }) => {
      const out = encodeOne(value, where);
      if (out.truncation === "prompt") stats.truncatedPrompts++;
      if (out.truncation === "target") stats.truncatedTargets++;
      return { inputIds: out.inputIds, labels: out.labels, promptLength: out.promptLength, record: value, ...(where ? { source: where } : {}) };
    });
  }
  if (examples.length === 0) throw new DataError("the dataset has no examples");
  stats.examples = examples.length;
  for (const ex of examples) {
    stats.tokens += ex.inputIds.length;
    for (const l of ex.labels) if (l !== IGNORE_INDEX) stats.labelTokens++;
  }
  return { examples, spec, stats };
}

type Encoded = { inputIds: number[]; labels: number[]; promptLength: number; truncation: Truncation };

function promptTargetEncoder(traits: FormatTraits, templates: Templates, tokenizer: TokenizerLike, special: SpecialIds, seqLen: number) {
  return (record: Readonly<Record<string, unknown>>, where?: DataLocation): Encoded => {
    const { prompt, target } = renderPromptTarget(traits, templates, record, where);
    return encodePromptTarget(prompt, target, tokenizer, special, seqLen);
  };
}

function chatEncoder(tokenizer: TokenizerLike, special: SpecialIds, seqLen: number) {
  return (record: Readonly<Record<string, unknown>>, where?: DataLocation): Encoded => encodeChat(record["messages"] as ChatMessage[], tokenizer, special, seqLen, where);
}

/**
 * The label set: `given` (deduplicated, in the given order) with every record's label checked
 * against it, or else the records' labels, unique and sorted.
 */
function labelSet(records: readonly { value: Readonly<Record<string, unknown>>; where?: DataLocation }[], field: string, given: readonly (string | number)[] | undefined): string[] {
  if (given !== undefined) {
    const set = [...new Set(given.map((l) => labelString(l, undefined, "labels")))];
    if (set.length === 0) throw new DataError("the label set is empty");
    for (const { value, where } of records) {
      const label = labelString(value[field], where, field);
      if (!set.includes(label)) throw new DataError(`label ${JSON.stringify(label)} is not in the label set (${set.map((l) => JSON.stringify(l)).join(", ")})`, where);
    }
    return set;
  }
  const set = new Set(records.map(({ value, where }) => labelString(value[field], where, field)));
  return [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
