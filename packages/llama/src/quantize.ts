/**
 * Quantizing a whole model with any quantizer plugin ({@link quantizeModel}), and the
 * calibration driver for plugins that need statistics of the layers' inputs.
 *
 * This module gathers the public names of the pieces in `./quantize/`:
 * - `options.ts`: {@link QuantizeModelOptions}, the progress events, the report and the result;
 * - `calibration-windows.ts`: calibration sources and {@link sampleCalibrationWindows};
 * - `targets.ts`: the layers to quantize and their names ({@link linearModuleName});
 * - `statistics.ts`: the input statistics recorded during calibration;
 * - `calibrate.ts`: the block-by-block, true-sequential calibration driver ({@link SEQUENTIAL_GROUPS});
 * - `reconstruction-error.ts`: {@link reconstructionError} and {@link outputReconstructionError};
 * - `quantize-model.ts`: {@link quantizeModel}, the per-layer loop and its report.
 * @module
 */
export { calibrationWindows, encodeInChunks, sampleCalibrationWindows, type CalibrationSource, type CalibrationTokenizer } from "./quantize/calibration-windows.js";
export type { QuantizedLayerReport, QuantizeModelOptions, QuantizeModelResult, QuantizeProgressEvent } from "./quantize/options.js";
export { linearModuleName } from "./quantize/targets.js";
export { SEQUENTIAL_GROUPS } from "./quantize/calibrate.js";
export { outputReconstructionError, reconstructionError } from "./quantize/reconstruction-error.js";
export { quantizeModel } from "./quantize/quantize-model.js";
