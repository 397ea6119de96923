// A plugin's own options: the declared schema is checked when the plugin is registered, and the
// values a tool collects are checked and completed with their defaults before the plugin runs.
import type { QuantizeOptions, QuantizerOptionSpec, QuantizerPlugin } from "./spec.js";

/** Keys every quantizer shares; a plugin may not declare them as options of its own. */
export const COMMON_OPTION_KEYS: readonly string[] = ["bits", "groupSize", "symmetric"];

const TYPES = ["boolean", "int", "number", "string"] as const;

/** The group size when neither the caller nor the plugin (`defaultGroupSize`) names one. */
export const FALLBACK_GROUP_SIZE = 128;

/**
 * Why `plugin` cannot quantize a weight with `inFeatures` input columns at `groupSize`, or null
 * when it can: the size is not in the plugin's `supportedGroupSizes`, or (a number) does not
 * divide `inFeatures`. For tools that plan runs ahead of quantizing (the CLI, `modulora bench`).
 */
export function unsupportedGroupSize(plugin: Pick<QuantizerPlugin, "name" | "supportedGroupSizes">, groupSize: number | "row", inFeatures?: number): string | null {
  const allowed = plugin.supportedGroupSizes;
  if (allowed && !allowed.includes(groupSize)) return `${plugin.name} supports group size${allowed.length > 1 ? "s" : ""} ${allowed.map(String).join(", ")} only`;
  if (groupSize !== "row" && inFeatures !== undefined && inFeatures % groupSize !== 0) return `group size ${groupSize} does not divide the input features (${inFeatures})`;
  return null;
}

/** The group size of a run: `given`, else the plugin's `defaultGroupSize`, else {@link FALLBACK_GROUP_SIZE}. */
export function groupSizeFor(plugin: Pick<QuantizerPlugin, "defaultGroupSize">, given?: number | "row"): number | "row" {
  return given ?? plugin.defaultGroupSize ?? FALLBACK_GROUP_SIZE;
}

/** The kebab-case flag of an option (`actOrder` → `act-order`, or its `flag`). */
export function optionFlag(spec: QuantizerOptionSpec): string {
  return spec.flag ?? spec.name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** What is wrong with `value` for `spec` (type, bounds, choices), or undefined. */
function typeProblem(spec: QuantizerOptionSpec, value: unknown): string | undefined {
  switch (spec.type) {
    case "boolean":
      return typeof value === "boolean" ? undefined : "must be true or false";
    case "string":
      if (typeof value !== "string") return "must be a string";
      if (spec.choices && !spec.choices.includes(value)) return `must be one of ${spec.choices.join(", ")}`;
      return undefined;
    case "int":
    case "number": {
      if (typeof value !== "number" || !Number.isFinite(value)) return "must be a finite number";
      if (spec.type === "int" && !Number.isInteger(value)) return "must be an integer";
      if (spec.min !== undefined && value < spec.min) return `must be at least ${spec.min}`;
      if (spec.max !== undefined && value > spec.max) return `must be at most ${spec.max}`;
      return undefined;
    }
  }
}

/** Checks a plugin's declared options; throws a TypeError naming the plugin and the option. */
export function validateOptionSpecs(where: string, specs: unknown): void {
  if (specs === undefined) return;
  if (!Array.isArray(specs)) throw new TypeError(`${where}: options must be an array of option specs`);
  const names = new Set<string>();
  const flags = new Set<string>();
  for (const [i, raw] of specs.entries()) {
    const s = raw as Partial<QuantizerOptionSpec> | null;
    if (!s || typeof s !== "object") throw new TypeError(`${where}: options[${i}] must be an object`);
    const what = `${where}: option ${JSON.stringify(s.name)}`;
    if (typeof s.name !== "string" || !/^[a-z][A-Za-z0-9]*$/.test(s.name)) throw new TypeError(`${what}: name must be a camelCase identifier (e.g. "actOrder")`);
    if (COMMON_OPTION_KEYS.includes(s.name)) throw new TypeError(`${what}: ${s.name} is an option every quantizer shares; leave it out of options`);
    if (names.has(s.name)) throw new TypeError(`${what}: declared twice`);
    names.add(s.name);
    if (s.flag !== undefined && (typeof s.flag !== "string" || !/^[a-z][a-z0-9-]*$/.test(s.flag))) throw new TypeError(`${what}: flag must be lower-case kebab-case`);
    const flag = optionFlag(s as QuantizerOptionSpec);
    if (flags.has(flag)) throw new TypeError(`${what}: flag --${flag} is declared twice`);
    flags.add(flag);
    if (!TYPES.includes(s.type as (typeof TYPES)[number])) throw new TypeError(`${what}: type must be one of ${TYPES.join(", ")}, got ${JSON.stringify(s.type)}`);
    if (typeof s.help !== "string" || s.help.trim() === "") throw new TypeError(`${what}: help must be a one-line description`);
    if (s.choices !== undefined && (s.type !== "string" || !Array.isArray(s.choices) || s.choices.length === 0 || !s.choices.every((c) => typeof c === "string"))) {
      throw new TypeError(`${what}: choices must be a non-empty list of strings, on a string option`);
    }
    if ((s.min !== undefined || s.max !== undefined) && s.type !== "int" && s.type !== "number") throw new TypeError(`${what}: min and max go with int and number options`);
    if (s.check !== undefined && typeof s.check !== "function") throw new TypeError(`${what}: check must be a function`);
    if (s.default !== undefined) {
      const p = typeProblem(s as QuantizerOptionSpec, s.default);
      if (p) throw new TypeError(`${what}: the default ${JSON.stringify(s.default)} ${p}`);
    }
  }
}

/**
 * The plugin's own options for one run: each declared option's value from `given` (or its
 * default; left out when it has neither), checked against the declared type, bounds and choices
 * and the plugin's own `check`. Keys of `given` the plugin does not declare are passed over (they
 * belong to the caller); with `strict`, one that is not a common key either is an error.
 * Throws a RangeError that names the plugin, the option (as `opts.label` spells it: a tool passes
 * its flag) and what to use.
 */
export function resolveQuantizerOptions(
  plugin: Pick<QuantizerPlugin, "name" | "options">,
  given: Readonly<Record<string, unknown>>,
  opts: { strict?: boolean; label?: (spec: QuantizerOptionSpec) => string } = {},
): Record<string, unknown> {
  const specs = plugin.options ?? [];
  const label = opts.label ?? ((s: QuantizerOptionSpec) => s.name);
  const out: Record<string, unknown> = {};
  for (const s of specs) {
    const v = given[s.name] ?? s.default;
    if (v === undefined) continue;
    const bad = typeProblem(s, v);
    if (bad) throw new RangeError(`quantizer '${plugin.name}': ${label(s)} ${bad}, got ${JSON.stringify(v)}`);
    out[s.name] = v;
  }
  // The plugin's own checks see every value as resolved (defaults filled in).
  const all = { ...given, ...out } as QuantizeOptions;
  for (const s of specs) {
    if (out[s.name] === undefined || !s.check) continue;
    const own = s.check(out[s.name], all);
    if (own) throw new RangeError(`quantizer '${plugin.name}': ${label(s)} = ${JSON.stringify(out[s.name])}: ${own}`);
  }
  if (opts.strict) {
    const known = new Set(specs.map((s) => s.name));
    for (const k of Object.keys(given)) {
      if (!known.has(k) && !COMMON_OPTION_KEYS.includes(k)) {
        const list = specs.length ? specs.map((s) => s.name).join(", ") : "none";
        throw new RangeError(`quantizer '${plugin.name}' has no option ${k} (its options: ${list})`);
      }
    }
  }
  return out;
}
