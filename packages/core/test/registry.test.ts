import { afterEach, describe, expect, it } from "vitest";
import { getQuantizer, listQuantizers, registerQuantizer, resolveQuantizer, unregisterQuantizer, validateQuantizer, QUANTIZER_SPEC_VERSION, type QuantizerPlugin } from "../src/index.js";

const dummy = (name: string): QuantizerPlugin => ({
  specVersion: QUANTIZER_SPEC_VERSION,
  name,
  calibration: "none",
  supportedBits: [4],
  quantize: () => {
    throw new Error("not used");
  },
});

describe("quantizer registry", () => {
  afterEach(() => {
    for (const n of listQuantizers()) unregisterQuantizer(n);
  });
  it("registers explicitly, lists sorted, looks up by name", () => {
    registerQuantizer(dummy("zeta"));
    registerQuantizer(dummy("alpha"));
    expect(listQuantizers()).toEqual(["alpha", "zeta"]);
    expect(getQuantizer("zeta").name).toBe("zeta");
  });
  it("duplicate names are refused", () => {
    registerQuantizer(dummy("rtn"));
    expect(() => registerQuantizer(dummy("rtn"))).toThrow("registerQuantizer: a quantizer named 'rtn' is already registered");
  });
  it("unknown names fail with the list of registered ones", () => {
    expect(() => getQuantizer("optq")).toThrow("unknown quantizer 'optq'; registered: (none — call registerQuantizer() first)");
    registerQuantizer(dummy("rtn"));
    registerQuantizer(dummy("nf4"));
    expect(() => getQuantizer("optq")).toThrow("unknown quantizer 'optq'; registered: nf4, rtn");
  });
  it("a plugin object can be passed instead of a name, and is validated", () => {
    expect(resolveQuantizer(dummy("mine")).name).toBe("mine");
    expect(() => resolveQuantizer({ ...dummy("x"), specVersion: 2 } as unknown as QuantizerPlugin)).toThrow("quantizer 'x': specVersion must be 1, got 2");
  });
  it("validation names what is missing", () => {
    expect(() => validateQuantizer(null)).toThrow(/must be an object/);
    expect(() => validateQuantizer({ ...dummy("x"), calibration: "magic" })).toThrow(/calibration must be "none", "hessian" or "activation-scales"/);
    expect(() => validateQuantizer({ ...dummy("x"), supportedBits: [] })).toThrow(/supportedBits/);
    expect(() => validateQuantizer({ ...dummy("x"), quantize: 3 })).toThrow(/quantize must be a function/);
    expect(() => validateQuantizer({ ...dummy("x"), serialize: () => ({ tensors: {}, metadata: {} }) })).toThrow(/serialize and deserialize come together/);
    expect(() => validateQuantizer({ ...dummy("bad name!") })).toThrow(/name must be/);
  });
});
