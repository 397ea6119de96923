// Quantizer plugins: the built-in ones are registered explicitly at startup (a table, not import
// side effects); `--plugin MODULE` loads a user's module and registers what it exports.
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { getQuantizer, listQuantizers, registerQuantizer, validateQuantizer, type QuantizerPlugin } from "@modulora/core";
import { hqqQuantizer } from "@modulora/quantizer-hqq";
import { nf4Quantizer } from "@modulora/quantizer-nf4";
import { optqQuantizer } from "@modulora/quantizer-optq";
import { rtnQuantizer } from "@modulora/quantizer-rtn";
import { CliError, oneLine } from "./errors.js";

/** The quantizers that ship with the CLI. */
export const BUILTIN_QUANTIZERS: readonly QuantizerPlugin[] = [rtnQuantizer, optqQuantizer, nf4Quantizer, hqqQuantizer];

/** Registers the built-in quantizers (once per process). */
export function registerBuiltinQuantizers(): void {
  for (const p of BUILTIN_QUANTIZERS) if (!listQuantizers().includes(p.name)) registerQuantizer(p);
}

/** Whether a --plugin spec names a file (else it is a package name). */
export const looksLikePath = (spec: string) => spec.startsWith(".") || isAbsolute(spec) || /\.(m?js|cjs)$/.test(spec) || spec.includes("\\");

/** The entry file of package `name` found in node_modules from `from` upwards (ESM `exports` first). */
function resolvePackage(name: string, from: string): string | null {
  const m = /^(@[^/]+\/[^/]+|[^/@][^/]*)(\/.*)?$/.exec(name);
  if (!m) return null;
  const [, pkg, sub] = m;
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const root = join(dir, "node_modules", pkg!);
    const manifest = join(root, "package.json");
    if (existsSync(manifest)) {
      if (sub) return join(root, sub);
      const json = JSON.parse(readFileSync(manifest, "utf8")) as { exports?: unknown; module?: string; main?: string };
      const pick = (e: unknown): string | null => {
        if (typeof e === "string") return e;
        if (e && typeof e === "object" && !Array.isArray(e)) {
          const o = e as Record<string, unknown>;
          if ("." in o) return pick(o["."]);
          for (const c of ["import", "node", "default", "require"]) if (c in o) return pick(o[c]);
        }
        return null;
      };
      const entry = pick(json.exports) ?? json.module ?? json.main ?? "index.js";
      return join(root, entry);
    }
    if (dirname(dir) === dir) return null;
  }
}

/** Quantizer objects a plugin module exports: `default`, `plugin`, `quantizer`, `plugins`, `quantizers` (objects or arrays). */
function exportedQuantizers(mod: Record<string, unknown>): unknown[] {
  // A CommonJS module's exports arrive as `default`: read its keys too.
  const d = mod["default"];
  const ns = d && typeof d === "object" && !Array.isArray(d) && !("specVersion" in d) ? { ...(d as Record<string, unknown>), ...mod, default: (d as Record<string, unknown>)["default"] } : mod;
  const found: unknown[] = [];
  for (const key of ["default", "plugin", "quantizer", "plugins", "quantizers"]) {
    const v = ns[key];
    if (v === undefined || v === null) continue;
    for (const item of Array.isArray(v) ? v : [v]) if (!found.includes(item)) found.push(item);
  }
  return found;
}

/** Loads one `--plugin` module (a path, or a package found from the working directory) and registers its quantizers. Returns their names. */
export async function loadPluginModule(spec: string, cwd = process.cwd()): Promise<string[]> {
  let url: string;
  if (looksLikePath(spec)) {
    const path = resolve(cwd, spec);
    if (!existsSync(path) || !statSync(path).isFile()) throw new CliError(`plugin module ${spec} does not exist`, "pass --plugin the path of a .js/.mjs file or an installed package name");
    url = pathToFileURL(path).href;
  } else {
    const entry = resolvePackage(spec, cwd);
    url = entry ? pathToFileURL(entry).href : spec; // else: resolved from the CLI's own dependencies
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ERR_MODULE_NOT_FOUND" && !looksLikePath(spec) && oneLine(err).includes(`'${spec}'`)) {
      throw new CliError(`cannot find plugin module '${spec}'`, "install the package where you run modulora, or pass the path of its .js file", { cause: err });
    }
    throw new CliError(`cannot load plugin module ${spec}: ${oneLine(err)}`, "check that the module runs under Node 20 as an ES module", { cause: err });
  }
  const candidates = exportedQuantizers(mod);
  if (candidates.length === 0) {
    throw new CliError(`plugin module ${spec} exports no quantizer`, "export the plugin object as `default`, `plugin` or `quantizer` (or an array of them)");
  }
  const names: string[] = [];
  for (const c of candidates) {
    try {
      validateQuantizer(c);
    } catch (err) {
      throw new CliError(`plugin module ${spec}: ${oneLine(err)}`, "see docs/writing-a-quantizer.md for the plugin contract (spec version 1)", { cause: err });
    }
    const existing = listQuantizers().includes(c.name) ? getQuantizer(c.name) : null;
    if (existing && existing !== c) throw new CliError(`plugin module ${spec}: a quantizer named '${c.name}' is already registered`, "rename the plugin");
    if (!existing) registerQuantizer(c);
    names.push(c.name);
  }
  return names;
}

/** Built-ins plus every `--plugin` module. */
export async function setupQuantizers(plugins: readonly string[] = []): Promise<void> {
  registerBuiltinQuantizers();
  for (const p of plugins) await loadPluginModule(p);
}

/**
 * The registered quantizer `name`; an unknown one is an error listing the registered ones.
 * `namedIn` is the file that named it (modulora.json, quantize_config.json): a name read from a
 * file is only ever looked up among the registered quantizers, never imported as a module — the
 * user loads the code with --plugin.
 */
export function quantizerNamed(name: string, namedIn?: string): QuantizerPlugin {
  try {
    return getQuantizer(name);
  } catch {
    if (namedIn !== undefined) {
      throw new CliError(
        `${namedIn} names quantizer '${name}', which is not registered (registered: ${listQuantizers().join(", ")})`,
        `modulora never loads code named in a file: pass --plugin MODULE with the module that provides '${name}'`,
      );
    }
    throw new CliError(`unknown quantizer '${name}'; registered: ${listQuantizers().join(", ")}`, "pick one of those, or load yours with --plugin MODULE");
  }
}
