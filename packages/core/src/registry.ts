import { validateOptionSpecs } from "./options.js";
import { QUANTIZER_SPEC_VERSION, type QuantizerPlugin } from "./spec.js";

const plugins = new Map<string, QuantizerPlugin>();

/** Checks that `plugin` implements spec version 1; throws an Error naming what is missing. */
export function validateQuantizer(plugin: unknown): asserts plugin is QuantizerPlugin {
  const p = plugin as Partial<QuantizerPlugin> | null;
  if (!p || typeof p !== "object") throw new TypeError(`a quantizer plugin must be an object, got ${p === null ? "null" : typeof p}`);
  const where = typeof p.name === "string" ? `quantizer '${p.name}'` : "quantizer plugin";
  if (p.specVersion !== QUANTIZER_SPEC_VERSION) {
    throw new TypeError(`${where}: specVersion must be ${QUANTIZER_SPEC_VERSION}, got ${JSON.stringify(p.specVersion)}`);
  }
  if (typeof p.name !== "string" || !/^[a-z0-9][a-z0-9._-]*$/i.test(p.name)) {
    throw new TypeError(`${where}: name must be a non-empty string of letters, digits, '.', '_' or '-'`);
  }
  if (!["none", "hessian", "activation-scales"].includes(p.calibration as string)) {
    throw new TypeError(`${where}: calibration must be "none", "hessian" or "activation-scales", got ${JSON.stringify(p.calibration)}`);
  }
  if (!Array.isArray(p.supportedBits) || p.supportedBits.length === 0 || !p.supportedBits.every((b) => Number.isInteger(b) && b >= 1 && b <= 16)) {
    throw new TypeError(`${where}: supportedBits must be a non-empty list of bit widths`);
  }
  if (typeof p.quantize !== "function") throw new TypeError(`${where}: quantize must be a function`);
  const g = p.defaultGroupSize;
  if (g !== undefined && g !== "row" && !(Number.isInteger(g) && g >= 1)) throw new TypeError(`${where}: defaultGroupSize must be a positive integer or "row", got ${JSON.stringify(g)}`);
  const gs = p.supportedGroupSizes;
  if (gs !== undefined && (!Array.isArray(gs) || gs.length === 0 || !gs.every((x) => x === "row" || (Number.isInteger(x) && x >= 1)))) {
    throw new TypeError(`${where}: supportedGroupSizes must be a non-empty list of positive integers and "row", got ${JSON.stringify(gs)}`);
  }
  if (g !== undefined && gs !== undefined && !gs.includes(g)) throw new TypeError(`${where}: defaultGroupSize ${JSON.stringify(g)} is not in supportedGroupSizes ${JSON.stringify(gs)}`);
  if (p.supportsSymmetric !== undefined && typeof p.supportsSymmetric !== "boolean") throw new TypeError(`${where}: supportsSymmetric must be a boolean`);
  validateOptionSpecs(where, p.options);
  if ((p.serialize === undefined) !== (p.deserialize === undefined)) {
    throw new TypeError(`${where}: serialize and deserialize come together (a custom format needs both)`);
  }
}

/** Adds a plugin to the registry; a second plugin with the same name is an error. */
export function registerQuantizer(plugin: QuantizerPlugin): void {
  validateQuantizer(plugin);
  if (plugins.has(plugin.name)) throw new Error(`registerQuantizer: a quantizer named '${plugin.name}' is already registered`);
  plugins.set(plugin.name, plugin);
}

/** Removes a plugin (tests, hot reload). Returns whether it was registered. */
export function unregisterQuantizer(name: string): boolean {
  return plugins.delete(name);
}

/** The registered plugin named `name`; an unknown name fails with the list of registered ones. */
export function getQuantizer(name: string): QuantizerPlugin {
  const p = plugins.get(name);
  if (!p) {
    const known = [...plugins.keys()].sort();
    throw new Error(`unknown quantizer '${name}'; registered: ${known.length ? known.join(", ") : "(none — call registerQuantizer() first)"}`);
  }
  return p;
}

/** Names of the registered plugins, sorted. */
export function listQuantizers(): string[] {
  return [...plugins.keys()].sort();
}

/** A plugin given by name (looked up) or as the object itself (validated). */
export function resolveQuantizer(q: string | QuantizerPlugin): QuantizerPlugin {
  if (typeof q === "string") return getQuantizer(q);
  validateQuantizer(q);
  return q;
}
