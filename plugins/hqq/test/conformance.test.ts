import { fileURLToPath } from "node:url";
import { quantizerConformance } from "@modulora/core/testing";
import { hqqQuantizer } from "../src/index.js";

const tinyLlama = fileURLToPath(new URL("../../../fixtures/tiny-llama/model.safetensors", import.meta.url));
const LAYERS = ["q_proj", "k_proj", "v_proj", "o_proj"].map((n) => `model.layers.1.self_attn.${n}.weight`).concat(["gate_proj", "up_proj", "down_proj"].map((n) => `model.layers.2.mlp.${n}.weight`));

quantizerConformance(hqqQuantizer, {
  groupSizes: [64, 32],
  realWeights: { path: tinyLlama, names: LAYERS },
  // The suite measures ‖Ŵ − W‖/‖W‖ against plain round-to-nearest; HQQ minimizes an lp error with
  // p = 0.7 instead, so its L2 error need not be lower. Measured with the defaults (ratio to
  // round-to-nearest): N(0, 1) weights 0.941–0.948 at groups of 64 and 0.905–0.919 at 32, at every
  // width; tiny-llama's 7 layers per row 0.976–1.0010 at 2 bits, 0.973–0.9906 at 3, 0.974–0.9846
  // at 4, 0.973–0.9888 at 8. The bounds sit just above the largest of these.
  errorRatio: { 2: 1.003, 3: 0.993, 4: 0.987, 8: 0.991 },
});
