// Prompt/target templates: `{field}` placeholders filled from a record's fields.
import { DataError, type DataLocation } from "./errors.js";
import { jsonTypeName } from "./read.js";

/**
 * The templates a prompt/target format renders with. Placeholders are `{field}` (a field name:
 * letters, digits, `_`); `{{` and `}}` write literal braces; any other brace is literal too.
 * Values are inserted as they are (no re-parsing of braces inside them).
 */
export interface Templates {
  /** The prompt (loss-masked). */
  prompt: string;
  /** The target (trained); EOS is appended after it. */
  target: string;
  /** `instruct` only: the prompt for records without an `input` (or with an empty one). */
  promptNoInput?: string;
}

const PLACEHOLDER = /\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** The field names a template uses, in order of first use. */
export function templateFields(template: string): string[] {
  const names: string[] = [];
  for (const m of template.matchAll(PLACEHOLDER)) if (m[1] !== undefined && !names.includes(m[1])) names.push(m[1]);
  return names;
}

/**
 * Fills `{field}` placeholders from `values`. A field must be a string or a number (numbers are
 * written with `String`).
 * @throws DataError (at `where`) for a field the record lacks or one of another type.
 */
export function fillTemplate(template: string, values: Readonly<Record<string, unknown>>, where?: DataLocation): string {
  return template.replace(PLACEHOLDER, (whole: string, name: string | undefined) => {
    if (name === undefined) return whole[0]!; // "{{" → "{", "}}" → "}"
    const v = values[name];
    if (typeof v === "string") return v;
    if (typeof v === "number" && Number.isFinite(v)) return String(v);
    if (v === undefined) throw new DataError(`the template uses {${name}} but the record has no "${name}" field`, where);
    throw new DataError(`the template uses {${name}} but "${name}" is ${jsonTypeName(v)}, not a string`, where);
  });
}
