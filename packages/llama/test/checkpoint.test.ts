import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cast, dispose, loadSafetensors, memory, resetPeakMemory, tensor, writeSafetensors, type DType, type Tensor } from "@modulora/tensor";
import { CheckpointError, expectedTensorShapes, loadCheckpoint } from "../src/checkpoint.js";
import { parseLlamaConfig, readLlamaConfig } from "../src/config.js";
import { loadLlamaFiles } from "../src/load.js";
import type { LlamaConfig } from "../src/types.js";
import { smallLlamaDir } from "./fixtures.js";

const FIXTURES = new URL("../../../fixtures/", import.meta.url).pathname;
const TINY = join(FIXTURES, "tiny-llama");

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-ckpt-"));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});
let dirCount = 0;
const newDir = () => {
  const d = join(tmp, `m${dirCount++}`);
  mkdirSync(d);
  return d;
};

/** A tensor's bytes, copied to the host. */
function bytesOf(t: Tensor): Uint8Array {
  const d = t.dataSync();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** Exact equality of two tensors' bytes (same dtype and shape). */
function sameBytes(a: Tensor, b: Tensor): boolean {
  return a.dtype === b.dtype && a.shape.join() === b.shape.join() && Buffer.compare(bytesOf(a), bytesOf(b)) === 0;
}

/**
 * Writes `tensors` as a checkpoint: one model.safetensors, or `shards` files plus an index
 * (tensor i goes to shard i % shards). `dtypes` converts some tensors on the way.
 */
function writeCheckpoint(dir: string, tensors: ReadonlyMap<string, Tensor>, shards = 1, dtypes: (name: string) => DType = () => "f32", index?: Record<string, string>): void {
  const names = [...tensors.keys()];
  const files = shards === 1 ? ["model.safetensors"] : Array.from({ length: shards }, (_, s) => `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`);
  const weightMap: Record<string, string> = {};
  for (const [s, file] of files.entries()) {
    const mine = names.filter((_, i) => i % shards === s);
    const converted = mine.map((name) => {
      const t = tensors.get(name)!;
      const want = dtypes(name);
      return want === t.dtype ? t : cast(t, want);
    });
    writeSafetensors(join(dir, file), mine.map((name, i) => ({ name, dtype: converted[i]!.dtype, shape: converted[i]!.shape, data: bytesOf(converted[i]!) })));
    converted.forEach((c, i) => c !== tensors.get(mine[i]!) && c.dispose());
    for (const name of mine) weightMap[name] = file;
  }
  if (shards > 1) writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: index ?? weightMap }));
}

/** A small synthetic LLaMA (GQA: 2 heads, 1 KV head) for error cases. */
const synthConfig = (over: Record<string, unknown> = {}): LlamaConfig =>
  parseLlamaConfig({
    architectures: ["LlamaForCausalLM"],
    hidden_size: 8,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    intermediate_size: 12,
    vocab_size: 16,
    max_position_embeddings: 32,
    rms_norm_eps: 1e-5,
    ...over,
  });

/** Tensors with the shapes of `config`, filled with distinct values; `edit` may change the list. */
function synthTensors(config: LlamaConfig, edit: (shapes: Map<string, number[]>) => void = () => undefined): Map<string, Tensor> {
  const shapes = expectedTensorShapes(config);
  edit(shapes);
  const out = new Map<string, Tensor>();
  let k = 0;
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    out.set(name, tensor(Float32Array.from({ length: n }, () => Math.sin(++k)), shape));
  }
  return out;
}

describe("expectedTensorShapes", () => {
  it("lists 9 tensors per block plus embedding, norm and lm_head (not when tied)", () => {
    const c = synthConfig();
    const shapes = expectedTensorShapes(c);
    expect(shapes.size).toBe(2 * 9 + 3);
    expect(shapes.get("model.layers.1.self_attn.q_proj.weight")).toEqual([8, 8]);
    expect(shapes.get("model.layers.1.self_attn.k_proj.weight")).toEqual([4, 8]);
    expect(shapes.get("model.layers.0.self_attn.o_proj.weight")).toEqual([8, 8]);
    expect(shapes.get("model.layers.0.mlp.down_proj.weight")).toEqual([8, 12]);
    expect(shapes.get("lm_head.weight")).toEqual([16, 8]);
    expect(expectedTensorShapes(synthConfig({ tie_word_embeddings: true })).has("lm_head.weight")).toBe(false);
  });
});

describe("tiny-llama", () => {
  const config = readLlamaConfig(TINY);

  it("loads 39 f32 tensors with the right shapes, reporting progress", () => {
    const before = memory().tensors;
    const progress: [number, number, string][] = [];
    const tensors = loadCheckpoint(TINY, config, { onProgress: (d, t, n) => progress.push([d, t, n]) });
    try {
      expect(tensors.size).toBe(39);
      const expected = expectedTensorShapes(config);
      expect([...tensors.keys()]).toEqual([...expected.keys()]);
      for (const [name, t] of tensors) {
        expect(t.dtype).toBe("f32");
        expect(t.shape).toEqual(expected.get(name));
      }
      expect(progress.length).toBe(39);
      expect(progress.map((p) => p[0])).toEqual(Array.from({ length: 39 }, (_, i) => i + 1));
      expect(progress.every((p) => p[1] === 39)).toBe(true);
      expect(new Set(progress.map((p) => p[2]))).toEqual(new Set(expected.keys()));
    } finally {
      dispose(tensors);
    }
    expect(memory().tensors).toBe(before);
  });

  it("a sharded copy with bf16 and f16 tensors loads to the same (rounded) values", () => {
    const original = loadSafetensors(join(TINY, "model.safetensors"));
    const dir = newDir();
    const dtypeOf = (name: string): DType => (name.includes("embed") || name.includes("layers.1.") ? "bf16" : name.includes("mlp") ? "f16" : "f32");
    try {
      writeCheckpoint(dir, original, 3, dtypeOf);
      const loaded = loadCheckpoint(dir, config);
      try {
        expect(loaded.size).toBe(39);
        const counts: Record<string, number> = {};
        for (const [name, t] of loaded) {
          const src = original.get(name)!;
          const d = dtypeOf(name);
          counts[d] = (counts[d] ?? 0) + 1;
          if (d === "f32") {
            expect(sameBytes(t, src), name).toBe(true);
          } else {
            const low = cast(src, d);
            const rounded = cast(low, "f32");
            expect(sameBytes(t, rounded), name).toBe(true);
            dispose([low, rounded]);
          }
        }
        expect(counts).toEqual({ bf16: 10, f16: 9, f32: 20 });
      } finally {
        dispose(loaded);
      }
    } finally {
      dispose(original);
    }
  });

  it("peak memory of a sharded bf16 load stays below 1.3x the f32 model", () => {
    const dir = newDir();
    const original = loadSafetensors(join(TINY, "model.safetensors"));
    try {
      writeCheckpoint(dir, original, 3, () => "bf16");
    } finally {
      dispose(original);
    }
    resetPeakMemory();
    const before = memory().bytes;
    const loaded = loadCheckpoint(dir, config);
    try {
      const finalBytes = [...loaded.values()].reduce((s, t) => s + t.size * 4, 0);
      const peak = memory().peakBytes - before;
      expect(memory().bytes - before).toBe(finalBytes);
      expect(peak / finalBytes).toBeLessThan(1.3);
    } finally {
      dispose(loaded);
    }
  });

  it("loadLlamaFiles returns config, tensors and tokenizer", () => {
    const files = loadLlamaFiles(TINY);
    try {
      expect(files.config.hiddenSize).toBe(256);
      expect(files.tensors.size).toBe(39);
      expect(files.tokenizer.vocabSize).toBe(4096);
      expect(files.tokenizer.encode("Hello world")).toEqual([0, 1311, 303, 81, 1161]);
    } finally {
      dispose(files.tensors);
    }
  });
});

describe("small-llama (5 bf16 shards, GQA)", () => {
  it("loads every tensor as f32 with GQA shapes, values equal to the bf16 ones", () => {
    const SMALL = smallLlamaDir();
    const config = readLlamaConfig(SMALL);
    const tensors = loadCheckpoint(SMALL, config);
    try {
      expect(tensors.size).toBe(6 * 9 + 3);
      const expected = expectedTensorShapes(config);
      for (const [name, t] of tensors) expect(t.shape, name).toEqual(expected.get(name));
      expect(tensors.get("model.layers.5.self_attn.k_proj.weight")!.shape).toEqual([256, 512]);
      expect(tensors.get("model.layers.5.self_attn.v_proj.weight")!.shape).toEqual([256, 512]);
      expect(tensors.get("model.layers.5.self_attn.q_proj.weight")!.shape).toEqual([512, 512]);
      const index = JSON.parse(readFileSync(join(SMALL, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
      for (const name of ["model.norm.weight", "model.layers.2.mlp.down_proj.weight"]) {
        const raw = loadSafetensors(join(SMALL, index.weight_map[name]!), { names: [name] });
        const bf16 = raw.get(name)!;
        expect(bf16.dtype).toBe("bf16");
        const f32 = cast(bf16, "f32");
        expect(sameBytes(tensors.get(name)!, f32), name).toBe(true);
        dispose([raw, f32]);
      }
    } finally {
      dispose(tensors);
    }
  });
});

describe("checkpoint errors", () => {
  const config = synthConfig();

  /** The CheckpointError `fn` throws. */
  function ckptError(fn: () => unknown): CheckpointError {
    try {
      const out = fn();
      dispose(out);
    } catch (err) {
      expect(err).toBeInstanceOf(CheckpointError);
      return err as CheckpointError;
    }
    throw new Error("expected a CheckpointError");
  }

  it("reports every missing, unexpected and mis-shaped tensor by name in one error", () => {
    const dir = newDir();
    const tensors = synthTensors(config, (s) => {
      s.delete("model.layers.1.mlp.up_proj.weight");
      s.delete("lm_head.weight");
      s.set("model.layers.0.self_attn.q_proj.bias", [8]);
      s.set("model.layers.0.self_attn.k_proj.weight", [8, 4]);
      s.set("model.norm.weight", [9]);
      s.set("model.layers.0.self_attn.rotary_emb.inv_freq", [2]); // ignored, as transformers does
    });
    writeCheckpoint(dir, tensors);
    dispose(tensors);
    const before = memory().tensors;
    const e = ckptError(() => loadCheckpoint(dir, config));
    expect(memory().tensors).toBe(before);
    expect(e.missing.sort()).toEqual(["lm_head.weight", "model.layers.1.mlp.up_proj.weight"]);
    expect(e.unexpected).toEqual(["model.layers.0.self_attn.q_proj.bias"]);
    expect(e.misshaped).toEqual([
      { name: "model.layers.0.self_attn.k_proj.weight", expected: [4, 8], actual: [8, 4] },
      { name: "model.norm.weight", expected: [8], actual: [9] },
    ]);
    expect(e.problems.length).toBe(5);
    for (const name of ["lm_head.weight", "model.layers.1.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.weight", "model.norm.weight"]) {
      expect(e.message).toContain(`"${name}"`);
    }
    expect(e.message).not.toContain("inv_freq");
    expect(e.message).toContain("has shape [8,4], expected [4,8]");
  });

  it("a shard named by the index but absent is reported by file name", () => {
    const dir = newDir();
    const tensors = synthTensors(config);
    writeCheckpoint(dir, tensors, 3);
    dispose(tensors);
    rmSync(join(dir, "model-00002-of-00003.safetensors"));
    const e = ckptError(() => loadCheckpoint(dir, config));
    expect(e.message).toContain("shard model-00002-of-00003.safetensors named by model.safetensors.index.json is missing");
  });

  it("index entries their shard does not hold, and shard tensors missing from the index", () => {
    const dir = newDir();
    const tensors = synthTensors(config);
    const names = [...tensors.keys()];
    const index: Record<string, string> = {};
    names.forEach((n, i) => (index[n] = `model-0000${(i % 2) + 1}-of-00002.safetensors`));
    // Swap one tensor's shard and forget another.
    index["model.norm.weight"] = index["model.norm.weight"]!.includes("00001-") ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    delete index["model.layers.0.input_layernorm.weight"];
    writeCheckpoint(dir, tensors, 2, undefined, index);
    dispose(tensors);
    const e = ckptError(() => loadCheckpoint(dir, config));
    expect(e.message).toMatch(/places tensor "model\.norm\.weight" in shard model-0000\d-of-00002\.safetensors, which does not hold it/);
    expect(e.message).toMatch(/tensor "model\.layers\.0\.input_layernorm\.weight" is in shard .* but not in model\.safetensors\.index\.json/);
    expect(e.missing).toEqual(["model.layers.0.input_layernorm.weight"]);
  });

  it("no checkpoint, a malformed index, a shard path outside the directory", () => {
    const dir = newDir();
    expect(ckptError(() => loadCheckpoint(dir, config)).message).toContain("neither model.safetensors nor model.safetensors.index.json");
    writeFileSync(join(dir, "model.safetensors.index.json"), "{ nope");
    expect(ckptError(() => loadCheckpoint(dir, config)).message).toContain("model.safetensors.index.json: the file is not valid JSON");
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { "model.norm.weight": "../x.safetensors" } }));
    expect(ckptError(() => loadCheckpoint(dir, config)).message).toContain(`maps to "../x.safetensors", which is not a file name`);
  });

  it("unsupported dtypes on disk are reported", () => {
    const dir = newDir();
    const tensors = synthTensors(config);
    writeCheckpoint(dir, tensors, 1, (n) => (n === "model.norm.weight" ? "i32" : "f32"));
    dispose(tensors);
    expect(ckptError(() => loadCheckpoint(dir, config)).message).toContain(`tensor "model.norm.weight" in model.safetensors is i32; supported on disk: f32, bf16, f16`);
  });

  it("tied embeddings: lm_head is not needed, and a stored one is ignored", () => {
    const tied = synthConfig({ tie_word_embeddings: true });
    const dir = newDir();
    const tensors = synthTensors(config); // includes lm_head.weight
    writeCheckpoint(dir, tensors, 2);
    dispose(tensors);
    const loaded = loadCheckpoint(dir, tied);
    expect(loaded.size).toBe(2 * 9 + 2);
    expect(loaded.has("lm_head.weight")).toBe(false);
    dispose(loaded);
  });

  it("a failure during loading leaks nothing", () => {
    const dir = newDir();
    const tensors = synthTensors(config);
    writeCheckpoint(dir, tensors, 2, () => "bf16");
    dispose(tensors);
    const before = memory();
    expect(() =>
      loadCheckpoint(dir, config, {
        onProgress: (done) => {
          if (done === 7) throw new Error("stop");
        },
      }),
    ).toThrow("stop");
    expect(memory().tensors).toBe(before.tensors);
    expect(memory().bytes).toBe(before.bytes);
  });

  it("refuses quantized configs and other compute dtypes", () => {
    const q = parseLlamaConfig({ ...config.raw, quantization_config: { quant_method: "gptq" } });
    expect(ckptError(() => loadCheckpoint(newDir(), q)).message).toContain(`quantization_config (quant_method "gptq")`);
    expect(() => loadCheckpoint(newDir(), config, { dtype: "f16" as "f32" })).toThrow(/loadCheckpoint: dtype "f16" is not a compute dtype; use "f32" or "bf16"/);
  });
});
