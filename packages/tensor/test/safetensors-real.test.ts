import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";

const fixture = (p: string) => fileURLToPath(new URL(`../../../fixtures/${p}`, import.meta.url));

describe("real Hugging Face safetensors files (fixtures/tiny-llama, written by transformers)", () => {
  it("the model checkpoint: 39 f32 tensors with the LLaMA names and shapes", () => {
    const r = T.SafetensorsReader.open(fixture("tiny-llama/model.safetensors"));
    try {
      expect(r.metadata).toEqual({ format: "pt" });
      const names = r.names();
      expect(names.length).toBe(39);
      expect(r.entry("model.embed_tokens.weight")).toMatchObject({ dtype: "f32", shape: [4096, 256] });
      expect(r.entry("model.layers.3.mlp.down_proj.weight")).toMatchObject({ dtype: "f32", shape: [256, 768] });
      expect(r.entry("model.norm.weight")).toMatchObject({ dtype: "f32", shape: [256] });
    } finally {
      r.close();
    }
  });
  it("stream and mmap reads give identical tensors; RMSNorm weights are finite and near 1", () => {
    const names = ["model.norm.weight", "model.layers.0.self_attn.q_proj.weight"];
    const a = T.loadSafetensors(fixture("tiny-llama/model.safetensors"), { names, mode: "stream" });
    const b = T.loadSafetensors(fixture("tiny-llama/model.safetensors"), { names, mode: "mmap" });
    try {
      for (const n of names) expect(Array.from(a.get(n)!.dataSync())).toEqual(Array.from(b.get(n)!.dataSync()));
      const norm = a.get("model.norm.weight")!.toArray();
      expect(norm.every(Number.isFinite)).toBe(true);
      const mean = norm.reduce((s, x) => s + x, 0) / norm.length;
      expect(mean).toBeGreaterThan(0.1);
      expect(mean).toBeLessThan(10);
    } finally {
      T.dispose([...a.values(), ...b.values()]);
    }
  });
  it("the reference outputs and a PEFT adapter (i32 and f32 tensors)", () => {
    const ref = T.loadSafetensors(fixture("tiny-llama/reference.safetensors"));
    const lora = T.loadSafetensors(fixture("tiny-llama-lora/adapter_model.safetensors"));
    try {
      expect(ref.get("input_ids")!.dtype).toBe("i32");
      expect(ref.get("input_ids")!.shape).toEqual([3, 48]);
      expect(ref.get("logits")!.shape).toEqual([3, 48, 4096]);
      const ids = ref.get("input_ids")!.toArray();
      expect(ids.every((v) => v >= 0 && v < 4096)).toBe(true);
      const a = lora.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")!;
      expect(a.shape).toEqual([8, 256]);
      expect(lora.get("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight")!.shape).toEqual([256, 8]);
    } finally {
      T.dispose([...ref.values(), ...lora.values()]);
    }
  });
});
