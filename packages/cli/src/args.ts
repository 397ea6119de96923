// Command-line parsing: each command is a table of options (name, type, default, help); the
// parser, `--config FILE` merging and `--help` all read that table.
import { readFileSync } from "node:fs";
import { CliError, usageError } from "./errors.js";

/** How an option's value is read. `group` is a positive integer or the word `row`. */
export type OptionType = "string" | "int" | "number" | "boolean" | "list" | "group";

/** One long option (`--kebab-name`). */
export interface OptionSpec {
  name: string;
  type: OptionType;
  description: string;
  /** Value when neither a flag nor the config file sets it (shown by --help). */
  default?: string | number | boolean | readonly string[];
  /** Placeholder for --help, e.g. `DIR`. */
  arg?: string;
  choices?: readonly string[];
  required?: boolean;
  /** May be given several times (values accumulate); implies a list. */
  repeatable?: boolean;
  /** Lower bound for numbers (inclusive), or `>0` for strictly positive. */
  min?: number | ">0";
  /** Upper bound for numbers (inclusive). */
  max?: number;
  /** Strict upper bound for numbers (e.g. a probability that must stay below 1). */
  below?: number;
  /** The quantizer plugin that declared this option (its own flags; listed under it in --help). */
  quantizer?: string;
}

/** A subcommand: its options and positional arguments. */
export interface CommandSpec {
  name: string;
  summary: string;
  /** The usage line after `modulora`. */
  usage: string;
  positionals?: readonly { name: string; description: string }[];
  options: readonly OptionSpec[];
  /** Extra help text (examples, notes). */
  notes?: string;
  /** Flags the command does not take as given, with what to say instead of "unknown option" (another quantizer's flags). */
  elsewhere?: ReadonlyMap<string, string>;
}

/** Options every command takes. */
export const GLOBAL_OPTIONS: readonly OptionSpec[] = [
  { name: "config", type: "string", arg: "FILE", description: "JSON file with the same keys as the long flags (camelCase or kebab-case); flags win" },
  { name: "verbose", type: "boolean", description: "print the stack trace of an error" },
  { name: "help", type: "boolean", description: "show this help" },
];

/** Parsed options by camelCase name, and positional arguments. */
export interface ParsedArgs {
  values: Record<string, unknown>;
  positionals: string[];
  /** Names (kebab) set by a flag or the config file, not by a default. */
  given: Set<string>;
}

export const camel = (kebab: string) => kebab.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
export const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

/** The closest of `names` to `word`, if it is close enough to be a likely typo. */
export function closest(word: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const d = n.startsWith(word) || word.startsWith(n) ? Math.abs(n.length - word.length) * 0.5 : levenshtein(word, n);
    if (d < bestD) {
      bestD = d;
      best = n;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function convert(spec: OptionSpec, raw: unknown, from: string, hint: string): unknown {
  const bad = (want: string) => usageError(`${from} must be ${want}, got ${JSON.stringify(raw)}`, hint);
  switch (spec.type) {
    case "boolean":
      if (typeof raw === "boolean") return raw;
      if (raw === "true" || raw === "1" || raw === "yes") return true;
      if (raw === "false" || raw === "0" || raw === "no") return false;
      throw bad("true or false");
    case "int":
    case "number": {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : NaN;
      if (!Number.isFinite(n) || (spec.type === "int" && !Number.isInteger(n))) throw bad(spec.type === "int" ? "an integer" : "a number");
      if (spec.min === ">0" && !(n > 0)) throw bad("greater than 0");
      if (typeof spec.min === "number" && n < spec.min) throw bad(`at least ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) throw bad(`at most ${spec.max}`);
      if (spec.below !== undefined && !(n < spec.below)) throw bad(`less than ${spec.below}`);
      return n;
    }
    case "group": {
      if (raw === "row") return "row";
      const n = typeof raw === "number" ? raw : typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isInteger(n) || n < 1) throw bad('a positive integer or "row"');
      return n;
    }
    case "list": {
      const items = Array.isArray(raw) ? raw.map(String) : typeof raw === "string" ? raw.split(",") : null;
      if (!items) throw bad("a comma-separated list");
      const out = items.map((s) => s.trim()).filter((s) => s !== "");
      if (spec.choices) for (const v of out) if (!spec.choices.includes(v)) throw bad(`a list of ${spec.choices.join(", ")}`);
      return out;
    }
    case "string": {
      if (typeof raw !== "string" && typeof raw !== "number") throw bad("a string");
      const s = String(raw);
      if (spec.choices && !spec.choices.includes(s)) throw bad(`one of ${spec.choices.join(", ")}`);
      return s;
    }
  }
}

/**
 * Parses `argv` (after the command name) against `spec`: `--name value`, `--name=value`,
 * boolean `--name` (or `--no-name`, `--name=false`), `-h`. Then reads `--config FILE` and fills the rest from
 * defaults. Flags win over the config file, which wins over defaults.
 */
export function parseArgs(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  const options = [...spec.options, ...GLOBAL_OPTIONS];
  const byName = new Map(options.map((o) => [o.name, o]));
  const flags = new Map<string, unknown>();
  const positionals: string[] = [];
  const hint = `run "modulora ${spec.name} --help" for the options`;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-h") {
      flags.set("help", true);
      continue;
    }
    if (a === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      positionals.push(a);
      continue;
    }
    if (!a.startsWith("--")) throw usageError(`unknown option ${a}`, hint);
    const eq = a.indexOf("=");
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    let o = byName.get(name) ?? byName.get(kebab(name));
    // --no-FLAG turns a boolean off (an option really named no-… wins).
    let negated = false;
    if (!o && name.startsWith("no-")) {
      const positive = byName.get(name.slice(3)) ?? byName.get(kebab(name.slice(3)));
      if (positive && positive.type !== "boolean") throw usageError(`unknown option --${name}`, `only on/off flags have a --no- form; --${positive.name} takes a value (${hint})`);
      if (positive) {
        if (eq >= 0) throw usageError(`--${name} takes no value`, `use --${positive.name}=${a.slice(eq + 1)} or --${name} alone (${hint})`);
        [o, negated] = [positive, true];
      }
    }
    if (!o) {
      const owner = spec.elsewhere?.get(name) ?? spec.elsewhere?.get(kebab(name));
      if (owner) throw usageError(owner, hint);
      const near = closest(name, [...byName.keys()]);
      throw usageError(`unknown option --${name}`, near ? `did you mean --${near}? (${hint})` : hint);
    }
    let raw: unknown;
    if (negated) raw = false;
    else if (eq >= 0) raw = a.slice(eq + 1);
    else if (o.type === "boolean") raw = true;
    else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2)) throw usageError(`--${o.name} needs a value${o.arg ? ` (${o.arg})` : ""}`, hint);
      raw = next;
      i++;
    }
    const v = convert(o, raw, `--${o.name}`, hint);
    if (o.repeatable) flags.set(o.name, [...((flags.get(o.name) as string[] | undefined) ?? []), ...(v as string[])]);
    else flags.set(o.name, v);
  }
  if (!spec.positionals?.length && positionals.length && !flags.get("help")) {
    throw usageError(`unexpected argument '${positionals[0]}'`, `options start with -- (${hint})`);
  }
  if (flags.get("help")) return { values: { help: true }, positionals, given: new Set(["help"]) };

  const fromConfig = new Map<string, unknown>();
  const configPath = flags.get("config") as string | undefined;
  if (configPath !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(configPath, "utf8"));
    } catch (err) {
      const what = (err as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : `is not valid JSON (${(err as Error).message})`;
      throw new CliError(`config file ${configPath} ${what}`, "pass --config a JSON file whose keys are the long flags");
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) throw new CliError(`config file ${configPath} must hold a JSON object`, 'e.g. {"model": "DIR", "bits": 4}');
    for (const [key, value] of Object.entries(json)) {
      const o = byName.get(key) ?? byName.get(kebab(key));
      if (!o || o.name === "config" || o.name === "help") {
        const near = closest(kebab(key), spec.options.map((x) => x.name));
        throw usageError(`config file ${configPath}: unknown key "${key}"`, near ? `did you mean "${camel(near)}"? (${hint})` : hint);
      }
      fromConfig.set(o.name, convert(o, value, `${configPath}: "${key}"`, hint));
    }
  }

  const values: Record<string, unknown> = {};
  const given = new Set<string>();
  for (const o of options) {
    const v = flags.has(o.name) ? flags.get(o.name) : fromConfig.has(o.name) ? fromConfig.get(o.name) : undefined;
    if (v !== undefined) given.add(o.name);
    const value = v ?? o.default;
    if (value !== undefined) values[camel(o.name)] = Array.isArray(value) ? [...value] : value;
  }
  for (const o of spec.options) {
    if (o.required && values[camel(o.name)] === undefined) throw usageError(`--${o.name} is required${o.description ? ` (${o.description})` : ""}`, hint);
  }
  return { values, positionals, given };
}

/** An option's two --help columns: the flag with its argument, and the description with its default. */
export function optionLine(o: OptionSpec): [string, string] {
  const arg = o.type === "boolean" ? "" : ` ${o.arg ?? (o.choices ? o.choices.join("|") : o.type === "group" ? "N|row" : o.type === "int" || o.type === "number" ? "N" : "VALUE")}`;
  // Booleans take --no-NAME too; not shown for the global --verbose and --help, nor for a flag already named no-….
  const negatable = o.type === "boolean" && !GLOBAL_OPTIONS.includes(o) && !o.name.startsWith("no-");
  const left = negatable ? `--[no-]${o.name}` : `--${o.name}${arg}`;
  const dflt = o.required ? " (required)"
    : o.default === true ? ` (default: true; --no-${o.name} turns it off)`
    : o.default !== undefined && o.default !== false ? ` (default: ${Array.isArray(o.default) ? o.default.join(",") : String(o.default)})` : "";
  return [left, `${o.description}${dflt}`];
}

/** The --help text of a command. */
export function helpText(spec: CommandSpec): string {
  const rows = [...spec.options, ...GLOBAL_OPTIONS].map(optionLine);
  const width = Math.min(34, Math.max(...rows.map(([l]) => l.length)) + 2);
  const fmt = ([l, r]: [string, string]) => (l.length + 2 > width ? `  ${l}\n  ${" ".repeat(width)}${r}` : `  ${l.padEnd(width)}${r}`);
  const parts = [`modulora ${spec.name} — ${spec.summary}`, "", `Usage: modulora ${spec.usage}`, ""];
  if (spec.positionals?.length) {
    parts.push("Arguments:", ...spec.positionals.map((p) => fmt([p.name, p.description])), "");
  }
  const own = spec.options.filter((o) => o.quantizer === undefined);
  parts.push("Options:", ...[...own, ...GLOBAL_OPTIONS].map(optionLine).map(fmt));
  const byQuantizer = new Map<string, OptionSpec[]>();
  for (const o of spec.options) if (o.quantizer !== undefined) byQuantizer.set(o.quantizer, [...(byQuantizer.get(o.quantizer) ?? []), o]);
  for (const [q, opts] of byQuantizer) parts.push("", `Options of quantizer ${q}:`, ...opts.map(optionLine).map(fmt));
  if (spec.notes) parts.push("", spec.notes.trimEnd());
  return `${parts.join("\n")}\n`;
}
