/**
 * The layers {@link quantizeModel} replaces: their Hugging Face names, and the stages (per block in
 * order, then lm_head) with a getter and a setter for each layer, so the driver can swap a layer
 * object in place.
 * @module
 */
import type { LlamaModel } from "../model.js";
import { LINEAR_MODULE, type Linear, type LinearName } from "../types.js";

/** Hugging Face module name of a block's linear. */
export function linearModuleName(block: number, name: LinearName): string {
  return `model.layers.${block}.${LINEAR_MODULE[name]}.${name}`;
}

/** One layer to quantize: where it is, its name, and how to read and replace it in the model. */
export interface Target {
  block: number | null;
  layer: LinearName | "lm_head";
  name: string;
  get(): Linear;
  set(l: Linear): void;
}

/** The layers to quantize, per block in order, then lm_head (block null). */
export interface Stage {
  block: number | null;
  targets: Target[];
}

/** The stages of a model: the `names` linears of every block in order, then lm_head when `includeLmHead`. */
export function stagesOf(model: LlamaModel, names: readonly LinearName[], includeLmHead: boolean): Stage[] {
  const stages: Stage[] = model.layers.map((layer, block) => ({
    block,
    targets: names.map((n) => ({
      block, layer: n, name: linearModuleName(block, n),
      get: () => layer.linears[n], set: (l: Linear) => { layer.linears[n] = l; },
    })),
  }));
  if (includeLmHead) {
    // lmHead is readonly on the model's public surface; swapping the layer object is what this driver is for.
    const m = model as unknown as { lmHead: Linear };
    stages.push({ block: null, targets: [{ block: null, layer: "lm_head", name: "lm_head", get: () => m.lmHead, set: (l) => { m.lmHead = l; } }] });
  }
  return stages;
}
