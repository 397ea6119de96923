/**
 * Testing helpers for quantizer plugin authors: the conformance suite every plugin runs, and a
 * dense f64 reference of `ModuLoRALinear`. Import from `@modulora/core/testing` in a vitest file.
 * @packageDocumentation
 */
export { quantizerConformance, type ConformanceConfig } from "./conformance.js";
export { denseLoraReference, relativeError, hessianError, referenceRoundToNearest, loadFixtureWeights, dequantizeAll } from "./reference.js";
