// Test helpers: the built-in quantizers registered from their packages, and small fake plugins.
import { listQuantizers, QUANTIZER_SPEC_VERSION, registerQuantizer, type QuantizerPlugin } from "@modulora/core";
import { hqqQuantizer } from "@modulora/quantizer-hqq";
import { nf4Quantizer } from "@modulora/quantizer-nf4";
import { optqQuantizer } from "@modulora/quantizer-optq";
import { rtnQuantizer } from "@modulora/quantizer-rtn";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
export const TINY = `${ROOT}fixtures/tiny-llama`;

/** A row-only plugin like example-kmeans (never quantizes in these tests). */
export const rowOnlyQuantizer: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "test-rowonly",
  calibration: "none",
  supportedBits: [2, 3, 4],
  defaultGroupSize: "row",
  supportedGroupSizes: ["row"],
  options: [{ name: "iterations", type: "int", default: 10, min: 1, help: "iterations" }],
  quantize: () => {
    throw new Error("test-rowonly does not quantize");
  },
};

/** A plugin whose quantize always fails (a failed cell). */
export const failingQuantizer: QuantizerPlugin = {
  specVersion: QUANTIZER_SPEC_VERSION,
  name: "test-fails",
  calibration: "none",
  supportedBits: [4],
  quantize: () => {
    throw new Error("test-fails: this quantizer always fails");
  },
};

/** Registers the built-in quantizers and the test plugins (once per process). */
export function registerAll(): void {
  for (const p of [rtnQuantizer, optqQuantizer, nf4Quantizer, hqqQuantizer, rowOnlyQuantizer, failingQuantizer]) if (!listQuantizers().includes(p.name)) registerQuantizer(p);
}
