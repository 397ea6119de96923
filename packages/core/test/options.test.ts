// A plugin's declared options: the schema is checked at registration, values are checked against
// it (type, bounds, choices, the plugin's own check) and completed with defaults.
import { describe, expect, it } from "vitest";
import { groupSizeFor, optionFlag, unsupportedGroupSize, QUANTIZER_SPEC_VERSION, resolveQuantizerOptions, validateQuantizer, type QuantizerOptionSpec, type QuantizerPlugin } from "../src/index.js";

const base = (options: unknown, extra: Record<string, unknown> = {}): QuantizerPlugin =>
  ({
    specVersion: QUANTIZER_SPEC_VERSION, name: "opt-test", calibration: "none", supportedBits: [4],
    quantize: () => {
      throw new Error("not called");
    },
    options, ...extra,
  }) as unknown as QuantizerPlugin;

const OPTIONS: QuantizerOptionSpec[] = [
  { name: "mode", type: "string", choices: ["a", "b"], default: "a", help: "which mode" },
  { name: "steps", type: "int", min: 0, max: 100, default: 10, help: "iterations" },
  { name: "rate", type: "number", min: 0, help: "a rate", check: (v, o) => (o["mode"] === "b" ? undefined : `only with mode b (mode is ${String(o["mode"])})`) },
  { name: "fast", flag: "quick", type: "boolean", default: false, help: "go fast" },
];

describe("plugin option schemas", () => {
  it("a well-formed schema registers; flags are the kebab-case keys unless named", () => {
    expect(() => validateQuantizer(base(OPTIONS, { defaultGroupSize: 64, supportsSymmetric: true }))).not.toThrow();
    expect(OPTIONS.map(optionFlag)).toEqual(["mode", "steps", "rate", "quick"]);
    expect(optionFlag({ name: "actOrder", type: "boolean", help: "x" })).toBe("act-order");
  });

  it.each([
    ["not an array", { mode: 1 }, /options must be an array/],
    ["a name that is not camelCase", [{ name: "act-order", type: "boolean", help: "x" }], /name must be a camelCase identifier/],
    ["a common option", [{ name: "groupSize", type: "int", help: "x" }], /groupSize is an option every quantizer shares/],
    ["a name declared twice", [{ name: "a", type: "int", help: "x" }, { name: "a", type: "int", help: "y" }], /declared twice/],
    ["a flag declared twice", [{ name: "aB", type: "int", help: "x" }, { name: "c", flag: "a-b", type: "int", help: "y" }], /flag --a-b is declared twice/],
    ["an unknown type", [{ name: "a", type: "float", help: "x" }], /type must be one of boolean, int, number, string/],
    ["no help", [{ name: "a", type: "int" }], /help must be a one-line description/],
    ["choices on a number", [{ name: "a", type: "int", choices: ["1"], help: "x" }], /choices must be a non-empty list of strings, on a string option/],
    ["bounds on a string", [{ name: "a", type: "string", min: 1, help: "x" }], /min and max go with int and number options/],
    ["a default of the wrong type", [{ name: "a", type: "int", default: 1.5, help: "x" }], /the default 1\.5 must be an integer/],
    ["a default outside the choices", [{ name: "a", type: "string", choices: ["x"], default: "y", help: "x" }], /the default "y" must be one of x/],
  ])("refuses %s, naming the plugin and the option", (_, options, pattern) => {
    expect(() => validateQuantizer(base(options))).toThrow(pattern);
    expect(() => validateQuantizer(base(options))).toThrow(/quantizer 'opt-test'/);
  });

  it("refuses a bad defaultGroupSize or supportsSymmetric", () => {
    expect(() => validateQuantizer(base(undefined, { defaultGroupSize: 0 }))).toThrow(/defaultGroupSize must be a positive integer or "row", got 0/);
    expect(() => validateQuantizer(base(undefined, { defaultGroupSize: "row" }))).not.toThrow();
    expect(() => validateQuantizer(base(undefined, { supportsSymmetric: "yes" }))).toThrow(/supportsSymmetric must be a boolean/);
  });

  it("checks supportedGroupSizes, and unsupportedGroupSize says why a size cannot be used", () => {
    expect(() => validateQuantizer(base(undefined, { supportedGroupSizes: [] }))).toThrow(/supportedGroupSizes must be a non-empty list of positive integers and "row", got \[\]/);
    expect(() => validateQuantizer(base(undefined, { supportedGroupSizes: [64, "rows"] }))).toThrow(/supportedGroupSizes must be/);
    expect(() => validateQuantizer(base(undefined, { supportedGroupSizes: ["row"], defaultGroupSize: 64 }))).toThrow('defaultGroupSize 64 is not in supportedGroupSizes ["row"]');
    const rowOnly = base(undefined, { supportedGroupSizes: ["row"], defaultGroupSize: "row" });
    expect(() => validateQuantizer(rowOnly)).not.toThrow();
    expect(unsupportedGroupSize(rowOnly, 128, 256)).toBe("opt-test supports group size row only");
    expect(unsupportedGroupSize(rowOnly, "row", 256)).toBeNull();
    const any = base(undefined);
    expect(unsupportedGroupSize(any, 128, 256)).toBeNull();
    expect(unsupportedGroupSize(any, 128)).toBeNull();
    expect(unsupportedGroupSize(any, 96, 256)).toBe("group size 96 does not divide the input features (256)");
    expect(unsupportedGroupSize(base(undefined, { supportedGroupSizes: [32, 64] }), 128, 256)).toBe("opt-test supports group sizes 32, 64 only");
  });
});

describe("resolveQuantizerOptions", () => {
  const plugin = base(OPTIONS);
  it("fills defaults, keeps given values, leaves out options with neither, passes other keys over", () => {
    expect(resolveQuantizerOptions(plugin, {})).toEqual({ mode: "a", steps: 10, fast: false });
    expect(resolveQuantizerOptions(plugin, { mode: "b", rate: 0.5, steps: 0, bits: 4, calibration: {} })).toEqual({ mode: "b", steps: 0, rate: 0.5, fast: false });
  });

  it.each([
    [{ mode: "c" }, /quantizer 'opt-test': mode must be one of a, b, got "c"/],
    [{ steps: 2.5 }, /steps must be an integer, got 2\.5/],
    [{ steps: 101 }, /steps must be at most 100, got 101/],
    [{ steps: -1 }, /steps must be at least 0, got -1/],
    [{ steps: "3" }, /steps must be a finite number, got "3"/],
    [{ rate: Number.NaN, mode: "b" }, /rate must be a finite number/],
    [{ fast: "yes" }, /fast must be true or false, got "yes"/],
    [{ rate: 0.5 }, /quantizer 'opt-test': rate = 0\.5: only with mode b \(mode is a\)/],
  ])("refuses %j with a message naming the option", (given, pattern) => {
    expect(() => resolveQuantizerOptions(plugin, given)).toThrow(pattern);
  });

  it("names the option as the caller spells it (a tool passes its flag)", () => {
    expect(() => resolveQuantizerOptions(plugin, { steps: 101 }, { label: (s) => `--${optionFlag(s)}` })).toThrow("quantizer 'opt-test': --steps must be at most 100, got 101");
    expect(() => resolveQuantizerOptions(plugin, { rate: 0.5 }, { label: (s) => `--${optionFlag(s)}` })).toThrow("quantizer 'opt-test': --rate = 0.5: only with mode b (mode is a)");
  });

  it("groupSizeFor: the given size, else the plugin's default, else 128", () => {
    expect(groupSizeFor({ defaultGroupSize: 64 }, 32)).toBe(32);
    expect(groupSizeFor({ defaultGroupSize: "row" })).toBe("row");
    expect(groupSizeFor({})).toBe(128);
  });

  it("strict: a key that is neither the plugin's nor common is an error listing the plugin's options", () => {
    expect(() => resolveQuantizerOptions(plugin, { bits: 4, groupSize: 64, symmetric: false }, { strict: true })).not.toThrow();
    expect(() => resolveQuantizerOptions(plugin, { actOrder: true }, { strict: true })).toThrow("quantizer 'opt-test' has no option actOrder (its options: mode, steps, rate, fast)");
  });
});
