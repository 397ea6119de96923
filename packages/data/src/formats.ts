// The dataset formats as a table of traits: the record fields each needs, its default templates,
// and how it is built (packed text, prompt + target, or chat). Builders read this table.
import { DataError, type DataLocation } from "./errors.js";
import { jsonTypeName } from "./read.js";
import type { Templates } from "./template.js";

/** The names of the dataset formats. */
export type DatasetFormat = "text" | "instruct" | "chat" | "classification" | "summarization";

/** How examples are made: packed windows, one prompt + target pair, or chat turns. */
export type FormatKind = "packed" | "prompt-target" | "chat";

/** A record field: `string`; `label` (a string or a number, used as a string); `messages` (`[{role, content}]`). */
export interface FieldSpec {
  name: string;
  type: "string" | "label" | "messages";
  optional?: boolean;
}

/** What a format is. */
export interface FormatTraits {
  name: DatasetFormat;
  kind: FormatKind;
  /** The JSONL fields it reads (`text` of `.txt` files needs none). */
  fields: readonly FieldSpec[];
  /** Default templates (prompt-target formats only). */
  templates: Templates | null;
  /** The field whose values form the label set (classification). */
  labelField?: string;
  /** Picks the prompt template for a record (default: `templates.prompt`). */
  promptTemplate?: (templates: Templates, record: Readonly<Record<string, unknown>>) => string;
}

/**
 * Alpaca's prompt (Taori et al., 2023) without its preamble sentence: the sections the tiny-llama
 * chat template also uses. Records without `input` (or with `""`) get `promptNoInput`.
 */
export const INSTRUCT_TEMPLATES: Templates = {
  prompt: "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
  promptNoInput: "### Instruction:\n{instruction}\n\n### Response:\n",
  target: "{output}",
};
export const CLASSIFICATION_TEMPLATES: Templates = { prompt: "{text}\nLabel:", target: " {label}" };
export const SUMMARIZATION_TEMPLATES: Templates = { prompt: "{text}\nSummary:", target: " {summary}" };

/** The formats, by name. */
export const FORMAT_TRAITS: Readonly<Record<DatasetFormat, FormatTraits>> = {
  text: { name: "text", kind: "packed", fields: [{ name: "text", type: "string" }], templates: null },
  instruct: {
    name: "instruct",
    kind: "prompt-target",
    fields: [
      { name: "instruction", type: "string" },
      { name: "input", type: "string", optional: true },
      { name: "output", type: "string" },
    ],
    templates: INSTRUCT_TEMPLATES,
    promptTemplate: (t, r) => (typeof r["input"] === "string" && r["input"] !== "" ? t.prompt : (t.promptNoInput ?? t.prompt)),
  },
  chat: { name: "chat", kind: "chat", fields: [{ name: "messages", type: "messages" }], templates: null },
  classification: {
    name: "classification",
    kind: "prompt-target",
    fields: [
      { name: "text", type: "string" },
      { name: "label", type: "label" },
    ],
    templates: CLASSIFICATION_TEMPLATES,
    labelField: "label",
  },
  summarization: {
    name: "summarization",
    kind: "prompt-target",
    fields: [
      { name: "text", type: "string" },
      { name: "summary", type: "string" },
    ],
    templates: SUMMARIZATION_TEMPLATES,
  },
};

/** The format names, in table order. */
export const DATASET_FORMATS = Object.keys(FORMAT_TRAITS) as DatasetFormat[];

/**
 * The traits of a format name.
 * @throws DataError for an unknown name; the message lists the formats.
 */
export function formatTraits(name: string): FormatTraits {
  if (Object.hasOwn(FORMAT_TRAITS, name)) return FORMAT_TRAITS[name as DatasetFormat];
  throw new DataError(`unknown dataset format ${JSON.stringify(name)}: use one of ${DATASET_FORMATS.join(", ")}`);
}

/** A label value as the string the label set holds: strings as they are, finite numbers via `String`. */
export function labelString(v: unknown, where?: DataLocation, field = "label"): string {
  if (typeof v === "string") return v;
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  throw new DataError(`field "${field}" must be a string or a number, got ${jsonTypeName(v)}`, where);
}

/**
 * Checks a record against a format's fields.
 * @throws DataError at `where` for a missing required field or a field of the wrong type.
 */
export function validateRecord(traits: FormatTraits, record: Readonly<Record<string, unknown>>, where?: DataLocation): void {
  const needed = traits.fields.filter((f) => !f.optional).map((f) => f.name);
  for (const field of traits.fields) {
    const v = record[field.name];
    if (v === undefined) {
      if (field.optional) continue;
      throw new DataError(`missing field "${field.name}" (the ${traits.name} format needs ${needed.map((n) => `"${n}"`).join(", ")})`, where);
    }
    if (field.type === "string") {
      if (typeof v !== "string") throw new DataError(`field "${field.name}" must be a string, got ${jsonTypeName(v)}`, where);
    } else if (field.type === "label") {
      labelString(v, where, field.name);
    } else {
      validateMessages(v, field.name, where);
    }
  }
}

function validateMessages(v: unknown, name: string, where?: DataLocation): void {
  if (!Array.isArray(v)) throw new DataError(`field "${name}" must be an array of {role, content}, got ${jsonTypeName(v)}`, where);
  if (v.length === 0) throw new DataError(`field "${name}" is empty`, where);
  v.forEach((m: unknown, i) => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw new DataError(`${name}[${i}] must be an object {role, content}, got ${jsonTypeName(m)}`, where);
    const msg = m as Record<string, unknown>;
    for (const key of ["role", "content"]) {
      if (msg[key] === undefined) throw new DataError(`${name}[${i}] has no "${key}"`, where);
      if (typeof msg[key] !== "string") throw new DataError(`${name}[${i}].${key} must be a string, got ${jsonTypeName(msg[key])}`, where);
    }
  });
}
