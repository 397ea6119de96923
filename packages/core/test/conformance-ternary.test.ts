import { quantizerConformance } from "../src/testing/index.js";
import { ternaryQuantizer } from "./ternary.js";

// The conformance suite run on a plain-TypeScript custom-format plugin: everything goes through
// the generic path (row blocks materialized into scratch + dense GEMM).
quantizerConformance(ternaryQuantizer, { groupSizes: ["row"], errorBounds: { 2: 0.65 } });
