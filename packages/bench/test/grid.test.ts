import { beforeAll, describe, expect, it } from "vitest";
import { planGrid, sanitizeId } from "../src/grid.js";
import { resolveBenchSettings } from "../src/settings.js";
import type { BenchOptions } from "../src/types.js";
import { registerAll, TINY } from "./plugins.js";

beforeAll(registerAll);
// tiny-llama's linears read 256 (q/k/v/o/gate/up) and 768 (down) input features.
const config = { hiddenSize: 256, numHeads: 4, headDim: 64, intermediateSize: 768 };
const grid = (o: Partial<BenchOptions>) => planGrid(resolveBenchSettings({ model: TINY, out: "/tmp/unused", ...o }), config);
const brief = (cells: ReturnType<typeof grid>) => cells.map((c) => [c.id, c.skip ?? null]);

describe("planGrid", () => {
  it("fp, baseline, then quantizer × bits × group size, with skip reasons", () => {
    const cells = grid({ quantizers: ["rtn", "nf4", "test-rowonly"], bits: [2, 4], groupSizes: [128, 96, "row"] });
    expect(brief(cells)).toEqual([
      ["fp", null], ["baseline", null],
      ["rtn-b2-g128", null], ["rtn-b2-g96", "group size 96 does not divide the input features (256)"], ["rtn-b2-grow", null],
      ["rtn-b4-g128", null], ["rtn-b4-g96", "group size 96 does not divide the input features (256)"], ["rtn-b4-grow", null],
      ["nf4-b2-g128", "nf4 supports bits 4 only"], ["nf4-b2-g96", "nf4 supports bits 4 only"], ["nf4-b2-grow", "nf4 supports bits 4 only"],
      ["nf4-b4-g128", null], ["nf4-b4-g96", "group size 96 does not divide the input features (256)"], ["nf4-b4-grow", null],
      ["test-rowonly-b2-g128", "test-rowonly supports group size row only"], ["test-rowonly-b2-g96", "test-rowonly supports group size row only"], ["test-rowonly-b2-grow", null],
      ["test-rowonly-b4-g128", "test-rowonly supports group size row only"], ["test-rowonly-b4-g96", "test-rowonly supports group size row only"], ["test-rowonly-b4-grow", null],
    ]);
    const c = cells.find((x) => x.id === "rtn-b4-g128")!;
    expect(c).toEqual({ id: "rtn-b4-g128", kind: "quantized", label: "rtn", quantizer: "rtn", options: {}, bits: 4, groupSize: 128 });
    expect(cells[0]).toEqual({ id: "fp", kind: "full-precision", label: null, quantizer: null, options: {}, bits: null, groupSize: null });
    expect(cells[1]!.kind).toBe("baseline");
  });
  it("a group size that divides hidden but not intermediate is skipped on down_proj's 768 features", () => {
    expect(brief(grid({ quantizers: ["rtn"], bits: [4], groupSizes: [256, 512], fullPrecision: false, baseline: false }))).toEqual([
      ["rtn-b4-g256", null], ["rtn-b4-g512", "group size 512 does not divide the input features (256)"],
    ]);
    expect(brief(planGrid(resolveBenchSettings({ model: TINY, out: "/tmp/u", quantizers: ["rtn"], bits: [4], groupSizes: [256], fullPrecision: false, baseline: false }), { ...config, intermediateSize: 640 }))).toEqual([
      ["rtn-b4-g256", "group size 256 does not divide the input features (640)"],
    ]);
  });
  it("no baseline row without a fine-tuning task; no fp row when asked", () => {
    expect(brief(grid({ quantizers: ["rtn"], bits: [4], groupSizes: ["row"], tasks: ["ppl"] }))).toEqual([["fp", null], ["rtn-b4-grow", null]]);
    expect(brief(grid({ quantizers: ["rtn"], bits: [4], groupSizes: ["row"], fullPrecision: false }))).toEqual([["baseline", null], ["rtn-b4-grow", null]]);
  });
  it("variant ids are sanitized and made unique", () => {
    const cells = grid({ quantizers: ["hqq:optimizeScale=true", { name: "hqq", label: "hqq optimizeScale=true" }, { name: "hqq", label: "hqq/optimizeScale=true" }], bits: [4], groupSizes: [64], fullPrecision: false, baseline: false });
    expect(cells.map((c) => c.id)).toEqual(["hqq_optimizeScale_true-b4-g64", "hqq_optimizeScale_true-b4-g64-2", "hqq_optimizeScale_true-b4-g64-3"]);
    expect(cells.map((c) => c.label)).toEqual(["hqq:optimizeScale=true", "hqq optimizeScale=true", "hqq/optimizeScale=true"]);
    expect(cells[0]!.options).toEqual({ optimizeScale: true });
    expect(sanitizeId("../a b")).toBe("a_b");
  });
});
