/**
 * `@modulora/bench`: cross-quantizer benchmarks. {@link runBench} quantizes a Hugging Face
 * LLaMA-family model with every quantizer × bits × group size of a grid, measures perplexity
 * and LoRA fine-tuning tasks before and after fine-tuning, keeps each finished cell so that an
 * interrupted run resumes, and writes results.json, results.md and SVG/PNG plots.
 * @packageDocumentation
 */
export * from "./types.js";
export * from "./report.js";
export * from "./plots.js";
export * from "./render.js";
