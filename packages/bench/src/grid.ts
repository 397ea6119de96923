// The grid of a run: the fp row, the baseline row, then quantizer × bits × group size, each
// quantized cell marked with the reason it is skipped when its quantizer cannot run it.
import { getQuantizer, unsupportedGroupSize } from "@modulora/core";
import type { LlamaConfig } from "@modulora/llama";
import type { BenchCell, BenchSettings, GroupSize } from "./types.js";

/** The distinct input sizes of the quantized linears: q/k/v/gate/up read hidden, o reads heads × headDim, down reads intermediate. */
export function linearInFeatures(config: Pick<LlamaConfig, "hiddenSize" | "numHeads" | "headDim" | "intermediateSize">): number[] {
  return [...new Set([config.hiddenSize, config.numHeads * config.headDim, config.intermediateSize])].sort((a, b) => a - b);
}

/** A file-name-safe id piece: runs of anything but letters, digits, `.`, `_` and `-` become one `_`. */
export function sanitizeId(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[._]+/, "") || "_";
}

const groupPart = (g: GroupSize) => (g === "row" ? "grow" : `g${g}`);

/**
 * The rows of a run, in order: `fp` (when `fullPrecision`), `baseline` (when `baseline` and a
 * fine-tuning task runs), then every quantizer × bits × group size. A cell the quantizer cannot
 * run carries `skip`: bits outside its `supportedBits`, or a group size it does not support or
 * that does not divide the input features of every quantized linear. Ids are
 * `<label>-b<bits>-g<size|row>`, sanitized; a collision gets `-2`, `-3`…
 */
export function planGrid(settings: BenchSettings, config: Pick<LlamaConfig, "hiddenSize" | "numHeads" | "headDim" | "intermediateSize">): BenchCell[] {
  const cells: BenchCell[] = [];
  const row = (id: string, kind: BenchCell["kind"]): BenchCell => ({ id, kind, label: null, quantizer: null, options: {}, bits: null, groupSize: null });
  if (settings.fullPrecision) cells.push(row("fp", "full-precision"));
  if (settings.baseline && settings.tasks.some((t) => t === "classify" || t === "summarize")) cells.push(row("baseline", "baseline"));
  const used = new Set(cells.map((c) => c.id));
  const ins = linearInFeatures(config);
  for (const q of settings.quantizers) {
    const plugin = getQuantizer(q.name);
    const label = q.label ?? q.name;
    for (const bits of settings.bits) {
      for (const groupSize of settings.groupSizes) {
        let skip: string | undefined;
        if (!plugin.supportedBits.includes(bits)) skip = `${plugin.name} supports bits ${plugin.supportedBits.join(", ")} only`;
        else {
          for (const n of ins) {
            const why = unsupportedGroupSize(plugin, groupSize, n);
            if (why) {
              skip = why;
              break;
            }
          }
        }
        const base = sanitizeId(`${label}-b${bits}-${groupPart(groupSize)}`);
        let id = base;
        for (let k = 2; used.has(id); k++) id = `${base}-${k}`;
        used.add(id);
        cells.push({ id, kind: "quantized", label, quantizer: q.name, options: { ...(q.options ?? {}) }, bits, groupSize, ...(skip ? { skip } : {}) });
      }
    }
  }
  return cells;
}
