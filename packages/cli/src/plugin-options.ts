// A quantizer's own options as flags. Commands that take --quantizer learn the chosen plugin's
// options before parsing: the plugin's declared schema becomes rows of the command's option table
// (so parsing, --config and --help treat them like any flag), --help lists every registered
// quantizer with its flags, and the values go back to the plugin under its own keys, checked by
// core's resolveQuantizerOptions. No quantizer's flags are written here by hand.
import { readFileSync } from "node:fs";
import { getQuantizer, groupSizeFor, listQuantizers, optionFlag, resolveQuantizerOptions, type QuantizerOptionSpec, type QuantizerPlugin } from "@modulora/core";
import { camel, GLOBAL_OPTIONS, optionLine, type CommandSpec, type OptionSpec, type ParsedArgs } from "./args.js";
import { CliError } from "./errors.js";
import { setupQuantizers } from "./plugins.js";

/** `--quantizer` and `--plugin` as given on the command line or in `--config` (read before the full parse). */
export function prescanQuantizerArgs(argv: readonly string[]): { quantizer?: string; plugins: string[] } {
  let quantizer: string | undefined;
  const plugins: string[] = [];
  let config: string | undefined;
  const list = (v: string) => v.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") break;
    const m = /^--(quantizer|plugin|config)(?:=(.*))?$/.exec(a);
    if (!m) continue;
    const value = m[2] ?? argv[i + 1];
    if (m[2] === undefined) i++;
    if (value === undefined) continue; // the full parse reports the missing value
    if (m[1] === "quantizer") quantizer = value;
    else if (m[1] === "plugin") plugins.push(...list(value));
    else config = value;
  }
  if (config !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(config, "utf8"));
    } catch {
      json = undefined; // the full parse reports a missing or bad config file
    }
    if (json && typeof json === "object" && !Array.isArray(json)) {
      const o = json as Record<string, unknown>;
      if (quantizer === undefined && typeof o["quantizer"] === "string") quantizer = o["quantizer"];
      const p = o["plugin"];
      if (!plugins.length && (typeof p === "string" || Array.isArray(p))) plugins.push(...(Array.isArray(p) ? p.map(String) : list(p)));
    }
  }
  return { quantizer, plugins };
}

/** One declared plugin option as a row of a command's option table. */
function optionRow(plugin: QuantizerPlugin, s: QuantizerOptionSpec): OptionSpec {
  return {
    name: optionFlag(s), type: s.type, description: s.help,
    ...(s.default !== undefined ? { default: s.default } : {}),
    ...(s.choices ? { choices: s.choices } : {}),
    ...(s.min !== undefined ? { min: s.min } : {}),
    ...(s.max !== undefined ? { max: s.max } : {}),
    quantizer: plugin.name,
  };
}

/**
 * `spec` with the options of quantizer `name` added (when it is registered), after checking that
 * none of its flags is one the command already has; every other registered quantizer's flags are
 * listed as belonging elsewhere, so that a misplaced one is named with its quantizer.
 */
export function specForQuantizer(spec: CommandSpec, name: string | undefined): CommandSpec {
  const known = name !== undefined && listQuantizers().includes(name) ? getQuantizer(name) : undefined;
  const taken = new Set([...spec.options, ...GLOBAL_OPTIONS].map((o) => o.name));
  const rows: OptionSpec[] = [];
  for (const s of known?.options ?? []) {
    const row = optionRow(known!, s);
    if (taken.has(row.name)) {
      throw new CliError(`quantizer '${known!.name}' declares option --${row.name}, which modulora ${spec.name} already has`, `rename the option in the plugin (its flag: QuantizerOptionSpec.flag)`);
    }
    rows.push(row);
  }
  const elsewhere = new Map<string, string>();
  for (const other of listQuantizers()) {
    if (other === known?.name) continue;
    for (const s of getQuantizer(other).options ?? []) {
      const flag = optionFlag(s);
      if (taken.has(flag) || rows.some((r) => r.name === flag)) continue;
      const owners = elsewhere.get(flag);
      elsewhere.set(flag, owners ? `${owners}, ${other}` : other);
    }
  }
  const hints = new Map([...elsewhere].map(([flag, owners]) => [flag, `--${flag} is an option of quantizer ${owners.replace(/, ([^,]*)$/, " or $1")}${known ? `, not of '${known.name}'` : ""} (modulora ${spec.name} --help lists each quantizer's options)`]));
  return { ...spec, options: [...spec.options, ...rows], elsewhere: hints };
}

/** Registers the built-in quantizers and the `--plugin` modules named in `argv`, then extends `spec` for `--quantizer`. */
export async function prepareQuantizerSpec(spec: CommandSpec, argv: readonly string[]): Promise<CommandSpec> {
  const { quantizer, plugins } = prescanQuantizerArgs(argv);
  await setupQuantizers(plugins);
  return specForQuantizer(spec, quantizer);
}

/** The `--help` section that lists every registered quantizer with its own flags. */
export function quantizersHelp(commandName: string): string {
  const lines = [`Quantizers (built in, and loaded with --plugin; a quantizer's own flags go with --quantizer NAME):`];
  for (const name of listQuantizers()) {
    const p = getQuantizer(name);
    const facts = [
      `bits ${p.supportedBits.join(",")}`, `group size ${groupSizeFor(p)}`,
      ...(p.supportsSymmetric ? ["--sym"] : []), p.calibration === "none" ? "no calibration" : `calibration: ${p.calibration} (--calib)`,
    ];
    lines.push(`  ${name}${p.description ? ` — ${p.description}` : ""}`, `      ${facts.join("; ")}`);
    for (const s of p.options ?? []) {
      const [left, right] = optionLine(optionRow(p, s));
      lines.push(`      ${left.padEnd(28)}${right}`);
    }
  }
  lines.push(`(modulora ${commandName} --quantizer NAME --help shows the command with that quantizer's flags.)`);
  return `${lines.join("\n")}\n`;
}

/**
 * The chosen plugin's option values from parsed arguments, under the plugin's own keys, with its
 * defaults filled in and checked by the plugin's schema; a bad value is a CliError naming the flag.
 */
export function pluginOptionValues(plugin: QuantizerPlugin, args: ParsedArgs, commandName: string): Record<string, unknown> {
  const given: Record<string, unknown> = {};
  for (const s of plugin.options ?? []) {
    const flag = optionFlag(s);
    if (args.given.has(flag)) given[s.name] = args.values[camel(flag)];
  }
  try {
    return resolveQuantizerOptions(plugin, given, { label: (s) => `--${optionFlag(s)}` });
  } catch (err) {
    throw new CliError((err as Error).message, `modulora ${commandName} --quantizer ${plugin.name} --help lists its options`, { cause: err });
  }
}

/** The plugin options that differ from their defaults, for a one-line summary (`act-order, percdamp 0.05`). */
export function describePluginOptions(plugin: QuantizerPlugin, values: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = [];
  for (const s of plugin.options ?? []) {
    const v = values[s.name];
    if (v === undefined || v === s.default) continue;
    const flag = optionFlag(s);
    out.push(typeof v === "boolean" ? (v ? flag : `no ${flag}`) : `${flag} ${String(v)}`);
  }
  return out;
}
