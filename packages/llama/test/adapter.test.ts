// LoRA adapters: LoRALinear (dense base), attachLoRA / detach, PEFT adapter files (save, load,
// checks), merged weights, and a short training run. Golden test: the PEFT-made adapter
// fixtures/tiny-llama-lora applied to fixtures/tiny-llama reproduces PEFT's logits (printed).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as T from "@modulora/tensor";
import { maxAbsDiff } from "@modulora/tensor/testing";
import { LoRALinear, ModuLoRALinear, stepSeed } from "@modulora/core";
import { quantizeRtn } from "@modulora/quantizer-rtn";
import {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, Adapter, AdapterError, attachLoRA, baseModelFingerprint, createLoRALayer, loadAdapter,
  LoRALayer, loraLayerSeed, mergedWeights, MODULORA_ADAPTER_FILE, peftTensorName, saveAdapter,
} from "../src/adapter.js";
import { expectedTensorShapes } from "../src/checkpoint.js";
import { parseLlamaConfig } from "../src/config.js";
import { DenseLinear, QuantizedLinear } from "../src/linear.js";
import { LlamaModel, shiftLabels } from "../src/model.js";
import { LINEAR_NAMES, type Linear } from "../src/types.js";

const FIX = fileURLToPath(new URL("../../../fixtures/", import.meta.url));
const TINY = `${FIX}tiny-llama/`;
const LORA = `${FIX}tiny-llama-lora/`;
const RESULTS = fileURLToPath(new URL("../scripts/results/", import.meta.url));
const TRAINED = `${RESULTS}trained-adapter`;
const TRAINED_LOGITS = `${RESULTS}trained-adapter-logits.safetensors`;
const rawConfig = JSON.parse(readFileSync(`${TINY}config.json`, "utf8")) as Record<string, unknown>;

/** tiny-llama, with config.json keys overridden; blocks past num_hidden_layers are dropped. */
function tinyModel(override: Record<string, unknown> = {}): LlamaModel {
  const config = parseLlamaConfig({ ...rawConfig, ...override });
  const tensors = T.loadSafetensors(`${TINY}model.safetensors`);
  for (const [k, t] of tensors) {
    const m = /^model\.layers\.(\d+)\./.exec(k);
    if (m && Number(m[1]) >= config.numLayers) {
      t.dispose();
      tensors.delete(k);
    }
  }
  return LlamaModel.fromTensors(config, tensors);
}

/** A model with random weights for a config.json. */
function randomModel(raw: Record<string, unknown>): LlamaModel {
  const config = parseLlamaConfig(raw);
  const tensors = new Map<string, T.Tensor>();
  let seed = 1;
  for (const [name, shape] of expectedTensorShapes(config)) tensors.set(name, shape.length === 1 ? T.ones(shape) : T.randn(shape, { seed: seed++, std: 0.02 }));
  return LlamaModel.fromTensors(config, tensors);
}

/** Every block linear → QuantizedLinear(RTN), named as quantizeModel names it. */
function quantizeLinears(model: LlamaModel, bits = 4, groupSize = 64): void {
  for (const layer of model.layers) {
    for (const n of LINEAR_NAMES) {
      const d = layer.linears[n] as DenseLinear;
      layer.linears[n] = new QuantizedLinear(quantizeRtn(d.weight, { bits, groupSize }), "rtn");
      d.dispose();
    }
  }
}

/** B ← random (an untrained adapter has B = 0 and changes nothing). */
function randomizeB(adapter: Adapter, seed: number): void {
  T.noGrad(() => {
    let s = seed;
    for (const l of adapter.layers.values()) T.tidy(() => T.assign(l.loraB, T.randn(l.loraB.shape, { seed: s++, std: 0.05 })));
  });
}

const logitsOf = (model: LlamaModel, ids: T.Tensor): Float32Array => T.tidy(() => new Float32Array(model.forward(ids).logits.dataSync() as Float32Array));
const headerOf = (path: string): Record<string, { dtype: string; shape: number[] } | Record<string, string>> => {
  const b = readFileSync(path);
  return JSON.parse(b.subarray(8, 8 + Number(b.readBigUInt64LE(0))).toString("utf8"));
};

let ids: T.Tensor; // i32 [3, 48]
let refLogits: Float32Array; // PEFT's logits with tiny-llama-lora
let base: LlamaModel; // tiny-llama, kept dense and adapter-free between tests
let baseLogits: Float32Array;
const tmp = mkdtempSync(join(tmpdir(), "modulora-adapter-"));

beforeAll(() => {
  const ref = T.loadSafetensors(`${LORA}reference.safetensors`);
  ids = T.keep(ref.get("input_ids")!);
  refLogits = new Float32Array(ref.get("logits")!.dataSync() as Float32Array);
  ref.get("logits")!.dispose();
  base = tinyModel();
  baseLogits = logitsOf(base, ids);
});
afterAll(() => {
  base.dispose();
  ids.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** A copy of the fixture adapter to edit. */
function fixtureCopy(name: string): string {
  const dir = join(tmp, name);
  cpSync(LORA, dir, { recursive: true });
  rmSync(join(dir, "reference.safetensors"));
  return dir;
}
function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const p = join(dir, ADAPTER_CONFIG_FILE);
  const c = JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;
  edit(c);
  writeFileSync(p, JSON.stringify(c));
}
const loadError = (model: LlamaModel, dir: string, options?: { strict?: boolean }): AdapterError => {
  try {
    loadAdapter(model, dir, options).detach();
  } catch (err) {
    expect(err).toBeInstanceOf(AdapterError);
    return err as AdapterError;
  }
  throw new Error("loadAdapter did not fail");
};

describe("LoRALinear (dense base)", () => {
  it("Y = X·Wᵀ + s·(X·Aᵀ)·Bᵀ, PEFT init, and the same A, scaling and dropout masks as ModuLoRALinear", () => {
    T.tidy(() => {
      const w = T.randn([12, 32], { seed: 1 });
      const q = quantizeRtn(w, { bits: 8, groupSize: 32 });
      const wq = T.tensor((() => { const b = new Float32Array(12 * 32); q.materialize(0, 12, b); return b; })(), [12, 32]);
      const dense = new LoRALinear(wq, { r: 4, alpha: 8, dropout: 0.3, seed: 5 });
      const quant = new ModuLoRALinear(q, { r: 4, alpha: 8, dropout: 0.3, seed: 5 });
      expect(dense.loraA.toArray()).toEqual(quant.loraA.toArray());
      expect(Math.max(...dense.loraA.toArray().map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(32));
      expect(dense.loraB.toArray().every((v) => v === 0)).toBe(true);
      expect(dense.scaling).toBe(2);
      expect(new LoRALinear(wq, { r: 4, alpha: 8, rsLora: true }).scaling).toBe(4);
      T.noGrad(() => {
        T.assign(dense.loraB, T.randn([12, 4], { seed: 2 }));
        T.assign(quant.loraB, dense.loraB);
      });
      const x = T.randn([3, 32], { seed: 3 });
      const ref = T.add(T.matmul(x, wq, { transB: true }), T.scale(T.matmul(T.matmul(x, dense.loraA, { transB: true }), dense.loraB, { transB: true }), 2));
      expect(maxAbsDiff(dense.forward(x).dataSync(), ref.dataSync())).toBeLessThan(1e-5);
      // training: same masks (same stepSeed) on both
      const a = dense.forward(x, { training: true, step: 3 }).dataSync();
      expect(maxAbsDiff(a, quant.forward(x, { training: true, step: 3 }).dataSync())).toBeLessThan(1e-4);
      expect(maxAbsDiff(a, ref.dataSync())).toBeGreaterThan(1e-3);
      const mask = T.dropout(x, 0.3, { seed: stepSeed(5, 3) });
      const byHand = T.add(T.matmul(x, wq, { transB: true }), T.scale(T.matmul(T.matmul(mask, dense.loraA, { transB: true }), dense.loraB, { transB: true }), 2));
      expect(maxAbsDiff(a, byHand.dataSync())).toBeLessThan(1e-5);
      // merged
      const merged = dense.mergedWeight();
      expect(maxAbsDiff(T.matmul(x, merged, { transB: true }).dataSync(), ref.dataSync())).toBeLessThan(1e-5);
      expect(dense.parameters()).toEqual([dense.loraA, dense.loraB]);
      expect(() => new LoRALinear(wq, { r: 0, alpha: 1 })).toThrow(/LoRALinear: rank r must be a positive integer/);
      expect(() => new LoRALinear(T.zeros([4]), { r: 1, alpha: 1 })).toThrow(/weight must be \[out, in\]/);
      dense.dispose();
      quant.dispose();
      q.dispose();
    });
  });
  it("gradients reach A and B only, and match a dense reference", () => {
    T.tidy(() => {
      const w = T.randn([6, 10], { seed: 7 });
      const l = new LoRALinear(w, { r: 3, alpha: 3, seed: 1 });
      T.noGrad(() => T.assign(l.loraB, T.randn([6, 3], { seed: 8 })));
      const x = T.randn([4, 10], { seed: 9 });
      T.backward(T.sum(T.square(l.forward(x))));
      const gA = l.loraA.grad!.toArray();
      const gB = l.loraB.grad!.toArray();
      expect(w.grad).toBeFalsy();
      // reference: y = x Wᵀ + (x Aᵀ) Bᵀ, L = Σ y²: dB = 2 yᵀ (x Aᵀ), dA = 2 Bᵀ yᵀ x
      const [X, W, A, B] = [x, w, l.loraA, l.loraB].map((t) => t.toArray());
      const y = Array.from({ length: 24 }, (_, k) => {
        const [i, o] = [Math.floor(k / 6), k % 6];
        let s = 0;
        for (let j = 0; j < 10; j++) s += X![i * 10 + j]! * W![o * 10 + j]!;
        for (let r = 0; r < 3; r++) { let h = 0; for (let j = 0; j < 10; j++) h += X![i * 10 + j]! * A![r * 10 + j]!; s += h * B![o * 3 + r]!; }
        return s;
      });
      const h = Array.from({ length: 12 }, (_, k) => { let s = 0; for (let j = 0; j < 10; j++) s += X![Math.floor(k / 3) * 10 + j]! * A![(k % 3) * 10 + j]!; return s; });
      const dB = Array.from({ length: 18 }, (_, k) => { let s = 0; for (let i = 0; i < 4; i++) s += 2 * y[i * 6 + Math.floor(k / 3)]! * h[i * 3 + (k % 3)]!; return s; });
      const dA = Array.from({ length: 30 }, (_, k) => {
        const [r, j] = [Math.floor(k / 10), k % 10];
        let s = 0;
        for (let i = 0; i < 4; i++) for (let o = 0; o < 6; o++) s += 2 * B![o * 3 + r]! * y[i * 6 + o]! * X![i * 10 + j]!;
        return s;
      });
      expect(maxAbsDiff(gB, dB)).toBeLessThan(1e-3);
      expect(maxAbsDiff(gA, dA)).toBeLessThan(1e-3);
      l.dispose();
    });
  });
});

describe("PEFT fixture: tiny-llama-lora on tiny-llama", () => {
  it("reproduces PEFT's logits (max abs diff < 1e-3)", () => {
    const adapter = loadAdapter(base, LORA);
    try {
      expect(adapter.config).toMatchObject({ r: 8, alpha: 16, dropout: 0, rsLora: false, layers: null, targets: [...LINEAR_NAMES] });
      expect(adapter.metadata).toBeNull();
      expect(adapter.warnings).toEqual([]);
      expect(adapter.layers.size).toBe(28);
      expect([...adapter.layers.values()].every((l) => l.scaling === 2 && l.lora instanceof LoRALinear)).toBe(true);
      const logits = logitsOf(base, ids);
      const d = maxAbsDiff(logits, refLogits);
      console.log(`tiny-llama-lora logits vs PEFT: max abs diff ${d.toExponential(2)} (the adapter moves them by up to ${maxAbsDiff(baseLogits, refLogits).toFixed(2)})`);
      expect(d).toBeLessThan(1e-3);
    } finally {
      adapter.detach();
    }
  });
  it("detach() restores the original layers, outputs and memory", () => {
    const before = T.memory();
    const q = base.layers[2]!.linears.q_proj;
    const adapter = loadAdapter(base, LORA);
    expect(base.layers[2]!.linears.q_proj).toBeInstanceOf(LoRALayer);
    expect(base.parameters()).toHaveLength(56);
    expect(maxAbsDiff(logitsOf(base, ids), baseLogits)).toBeGreaterThan(0.1);
    adapter.detach();
    expect(base.layers[2]!.linears.q_proj).toBe(q);
    expect(base.parameters()).toEqual([]);
    expect(maxAbsDiff(logitsOf(base, ids), baseLogits)).toBe(0);
    expect(T.memory().bytes).toBe(before.bytes);
    expect(adapter.attached).toBe(false);
    expect(() => adapter.detach()).toThrow(/already detached/);
    expect(() => adapter.parameters()).toThrow(/detached/);
  });
  it("use_rslora: scaling alpha/√r (same logits as alpha·√r/r without it)", () => {
    const rs = fixtureCopy("rslora");
    editConfig(rs, (c) => { c["use_rslora"] = true; });
    const plain = fixtureCopy("alpha-equivalent");
    editConfig(plain, (c) => { c["lora_alpha"] = 16 * Math.sqrt(8); });
    const a = loadAdapter(base, rs);
    expect(a.layers.get("model.layers.0.mlp.up_proj")!.scaling).toBeCloseTo(16 / Math.sqrt(8), 12);
    const la = logitsOf(base, ids);
    a.detach();
    const b = loadAdapter(base, plain);
    const lb = logitsOf(base, ids);
    b.detach();
    expect(maxAbsDiff(la, lb)).toBeLessThan(1e-5);
    expect(maxAbsDiff(la, refLogits)).toBeGreaterThan(1e-2);
  });
});

describe("attachLoRA", () => {
  it("wraps the targets of every block through the dispatchers; B = 0 leaves the outputs unchanged; layer seeds differ", () => {
    const adapter = attachLoRA(base, { r: 4, alpha: 8, targets: ["v_proj", "q_proj"], seed: 2 });
    try {
      expect(adapter.config).toEqual({ r: 4, alpha: 8, dropout: 0.05, targets: ["q_proj", "v_proj"], rsLora: false, seed: 2, layers: null });
      expect([...adapter.layers.keys()].slice(0, 3)).toEqual(["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj"]);
      expect(adapter.parameters()).toHaveLength(16);
      const seeds = [...adapter.layers.values()].map((l) => l.lora.seed);
      expect(new Set(seeds).size).toBe(8);
      expect(seeds[0]).toBe(loraLayerSeed(2, 0, "q_proj"));
      expect(loraLayerSeed(2, 1, "v_proj")).toBe(2000 + 7 + 2);
      expect(base.layers[0]!.linears.k_proj.kind).toBe("dense");
      expect(maxAbsDiff(logitsOf(base, ids), baseLogits)).toBeLessThan(1e-5);
      expect(() => attachLoRA(base, { targets: ["q_proj"] })).toThrow(/already carry an adapter.*detach it first/);
    } finally {
      adapter.detach();
    }
  });
  it("rejects bad options, and bases no dispatcher handles (naming the supported kinds)", () => {
    expect(() => attachLoRA(base, { targets: ["q_proj", "lm_head" as never] })).toThrow(/unknown target 'lm_head'; targets are q_proj, k_proj/);
    expect(() => attachLoRA(base, { targets: [] })).toThrow(/non-empty/);
    expect(() => attachLoRA(base, { r: 0 })).toThrow(/rank r must be a positive integer/);
    expect(() => attachLoRA(base, { layers: [4] })).toThrow(/block indices in \[0, 4\)/);
    expect(() => attachLoRA(base, { seed: -1 })).toThrow(/seed must be a non-negative integer/);
    const odd: Linear = { kind: "quantized", inFeatures: 2, outFeatures: 2, forward: (x) => x, parameters: () => [], storageBytes: () => 0, dispose: () => {} };
    expect(() => createLoRALayer(odd, { r: 1, alpha: 1 })).toThrow(/no dispatcher handles a 'quantized' layer \(Object\); supported: dense \(DenseLinear → LoRALinear\), quantized \(QuantizedLinear → ModuLoRALinear\)/);
    // a failure part-way leaves the model untouched
    const keep = base.layers[3]!.linears.down_proj;
    base.layers[3]!.linears.down_proj = odd;
    const before = T.memory().bytes;
    expect(() => attachLoRA(base)).toThrow(/no dispatcher/);
    base.layers[3]!.linears.down_proj = keep;
    expect(base.layers.every((l) => LINEAR_NAMES.every((n) => l.linears[n].kind === "dense"))).toBe(true);
    expect(T.memory().bytes).toBe(before);
  });
  it("training: a few AdamW steps on the LoRA parameters (dropout on) reduce the loss; base weights get no gradient", () => {
    const adapter = attachLoRA(base, { r: 8, alpha: 16, dropout: 0.05, seed: 1 });
    const x = T.keep(T.slice(ids, [0, 0], [2, 48]));
    const targets = T.keep(shiftLabels(x));
    const loss = (training: boolean, step = 0) => T.crossEntropy(base.forward(x, { training, step }).logits, targets, { ignoreIndex: -100 });
    const opt = new T.AdamW(adapter.parameters(), { lr: 1e-2 });
    try {
      const before = T.tidy(() => loss(false).item());
      const memBefore = T.memory().bytes;
      for (let step = 0; step < 6; step++) {
        T.tidy(() => T.backward(loss(true, step)));
        opt.step();
        opt.zeroGrad();
      }
      expect(T.memory().bytes).toBe(memBefore);
      const after = T.tidy(() => loss(false).item());
      console.log(`LoRA training on tiny-llama: loss ${before.toFixed(4)} → ${after.toFixed(4)} in 6 AdamW steps`);
      expect(after).toBeLessThan(before - 0.05);
      expect((base.layers[0]!.linears.q_proj as LoRALayer).base).toBeInstanceOf(DenseLinear);
      expect(((base.layers[0]!.linears.q_proj as LoRALayer).base as DenseLinear).weight.grad).toBeFalsy();
    } finally {
      opt.dispose();
      x.dispose();
      targets.dispose();
      adapter.detach();
    }
  });
});

describe("saveAdapter / loadAdapter", () => {
  it("writes PEFT's layout: the fixture's keys, shapes and dtype; PEFT's config fields; modulora.json beside them", () => {
    const adapter = attachLoRA(base, { seed: 4 });
    const dir = join(tmp, "layout");
    try {
      const res = saveAdapter(adapter, dir, { baseModelNameOrPath: "fixtures/tiny-llama", extra: { taskFormat: "lm", promptTemplate: "{text}", labels: ["a", "b"], note: 1 } });
      expect(res.files).toEqual([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, MODULORA_ADAPTER_FILE]);
      expect(readdirSync(dir).sort()).toEqual([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, MODULORA_ADAPTER_FILE].sort());
      expect(readdirSync(tmp).filter((n) => n.includes(".tmp-") || n.includes(".old-"))).toEqual([]);
      const ours = headerOf(join(dir, ADAPTER_WEIGHTS_FILE));
      const peft = headerOf(`${LORA}${ADAPTER_WEIGHTS_FILE}`);
      expect(ours["__metadata__"]).toEqual({ format: "pt" });
      const strip = (h: typeof ours) => Object.fromEntries(Object.entries(h).filter(([k]) => k !== "__metadata__").map(([k, v]) => [k, { dtype: (v as { dtype: string }).dtype, shape: (v as { shape: number[] }).shape }]));
      expect(strip(ours)).toEqual(strip(peft));
      expect(Object.keys(ours)).toContain(peftTensorName(3, "down_proj", "B"));
      expect(peftTensorName(0, "q_proj", "A")).toBe("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
      const config = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8")) as Record<string, unknown>;
      expect(config).toMatchObject({
        peft_type: "LORA", r: 8, lora_alpha: 16, lora_dropout: 0.05, bias: "none", use_rslora: false, task_type: "CAUSAL_LM",
        base_model_name_or_path: "fixtures/tiny-llama", fan_in_fan_out: false, inference_mode: true, init_lora_weights: true,
        modules_to_save: null, layers_to_transform: null, rank_pattern: {}, alpha_pattern: {}, use_dora: false,
      });
      expect(config["target_modules"]).toEqual([...LINEAR_NAMES]);
      // every field we write is one PEFT writes, with the same JSON type
      const fixture = JSON.parse(readFileSync(`${LORA}${ADAPTER_CONFIG_FILE}`, "utf8")) as Record<string, unknown>;
      for (const [k, v] of Object.entries(config)) {
        expect(fixture, k).toHaveProperty(k);
        if (v !== null && fixture[k] !== null) expect(typeof v, k).toBe(typeof fixture[k]);
      }
      expect(Object.keys(config)).toEqual(Object.keys(config).sort());
      const meta = JSON.parse(readFileSync(join(dir, MODULORA_ADAPTER_FILE), "utf8")) as Record<string, unknown>;
      expect(meta).toEqual({
        modulora_adapter_version: 1, base_model: baseModelFingerprint(base.config), quantization: null, seed: 4,
        task_format: "lm", prompt_template: "{text}", labels: ["a", "b"], note: 1,
      });
      expect(meta["base_model"]).toMatchObject({ architecture: "LlamaForCausalLM", hidden_size: 256, num_hidden_layers: 4, vocab_size: 4096 });
      expect((meta["base_model"] as { config_sha256: string }).config_sha256).toMatch(/^[0-9a-f]{64}$/);
      // refuses a non-empty directory unless overwrite; overwrite replaces it whole
      expect(() => saveAdapter(adapter, dir, { baseModelNameOrPath: null })).toThrow(/exists and is not empty; pass overwrite: true/);
      writeFileSync(join(dir, "stale.txt"), "x");
      saveAdapter(adapter, dir, { baseModelNameOrPath: null, overwrite: true });
      expect(existsSync(join(dir, "stale.txt"))).toBe(false);
      expect(readdirSync(tmp).filter((n) => n.includes(".tmp-") || n.includes(".old-"))).toEqual([]);
      mkdirSync(join(tmp, "empty"));
      saveAdapter(adapter, join(tmp, "empty"), { baseModelNameOrPath: null });
      expect(readdirSync(join(tmp, "empty"))).toHaveLength(3);
      expect(() => saveAdapter(adapter, join(tmp, "x"), {} as never)).toThrow(/baseModelNameOrPath is required/);
    } finally {
      adapter.detach();
    }
    const detached = attachLoRA(base);
    detached.detach();
    expect(() => saveAdapter(detached, join(tmp, "y"), { baseModelNameOrPath: null })).toThrow(/detached/);
  });
  it("round trip on a dense base: identical A, B, config and outputs (also rsLora, a subset of layers and targets)", () => {
    for (const [i, options] of [{ seed: 3 }, { r: 4, alpha: 16, rsLora: true, targets: ["v_proj", "q_proj", "down_proj"] as const, layers: [2, 1], dropout: 0 }].entries()) {
      const a = attachLoRA(base, { ...options, targets: options.targets ? [...options.targets] : undefined });
      randomizeB(a, 10 + i);
      const dir = join(tmp, `round-dense-${i}`);
      saveAdapter(a, dir, { baseModelNameOrPath: TINY });
      const saved = logitsOf(base, ids);
      const params = a.parameters().map((p) => p.toArray());
      const config = { ...a.config };
      a.detach();
      const other = tinyModel();
      const b = loadAdapter(other, dir);
      expect(b.config).toEqual(config);
      expect(b.warnings).toEqual([]);
      expect(b.parameters().map((p) => p.toArray())).toEqual(params);
      expect(b.parameters().every((p) => p.requiresGrad)).toBe(true);
      expect(maxAbsDiff(logitsOf(other, ids), saved)).toBe(0);
      expect(maxAbsDiff(saved, baseLogits)).toBeGreaterThan(1e-3);
      other.dispose();
    }
  });
  it("round trip on an RTN-quantized base (ModuLoRALinear): identical outputs; quantization recorded; merged weights", () => {
    const q1 = tinyModel();
    quantizeLinears(q1);
    const a = attachLoRA(q1, { seed: 5 });
    expect([...a.layers.values()].every((l) => l.lora instanceof ModuLoRALinear)).toBe(true);
    randomizeB(a, 20);
    const dir = join(tmp, "round-rtn");
    saveAdapter(a, dir, { baseModelNameOrPath: TINY, extra: { quantizer: "rtn", taskFormat: "lm" } });
    const saved = logitsOf(q1, ids);
    const meta = JSON.parse(readFileSync(join(dir, MODULORA_ADAPTER_FILE), "utf8")) as Record<string, unknown>;
    expect(meta["quantization"]).toEqual({ quantizer: "rtn", format: "affine", bits: 4, group_size: 64, symmetric: false, layers: 28 });
    expect(meta["task_format"]).toBe("lm");

    // merged weights: Ŵ + s·B·A, dequantized; the model is unchanged
    const merged = mergedWeights(q1);
    expect(merged.size).toBe(28);
    const name = "model.layers.1.mlp.gate_proj";
    const l = a.layers.get(name)!;
    const w = (l.base as QuantizedLinear).weight;
    const deq = new Float32Array(w.outFeatures * w.inFeatures);
    w.materialize(0, w.outFeatures, deq);
    const ba = T.tidy(() => T.matmul(l.loraB, l.loraA).toArray());
    const expected = Array.from(deq, (v, i) => v + l.scaling * ba[i]!);
    expect(merged.get(`${name}.weight`)!.shape).toEqual([768, 256]);
    expect(maxAbsDiff(merged.get(`${name}.weight`)!.dataSync(), expected)).toBeLessThan(1e-5);
    expect(maxAbsDiff(logitsOf(q1, ids), saved)).toBe(0);
    // a dense model built from the merged weights computes the same function
    const dense = tinyModel();
    dense.layers.forEach((layer, i) => {
      for (const n of LINEAR_NAMES) {
        layer.linears[n].dispose();
        const key = `model.layers.${i}.${n === "gate_proj" || n === "up_proj" || n === "down_proj" ? "mlp" : "self_attn"}.${n}.weight`;
        layer.linears[n] = new DenseLinear(merged.get(key)!);
        merged.delete(key);
      }
    });
    expect(merged.size).toBe(0);
    const dm = maxAbsDiff(logitsOf(dense, ids), saved);
    console.log(`merged (dequantized) weights vs quantized base + LoRA: logits max abs diff ${dm.toExponential(2)}`);
    expect(dm).toBeLessThan(1e-3);
    dense.dispose();

    const q2 = tinyModel();
    quantizeLinears(q2);
    const b = loadAdapter(q2, dir);
    expect(b.warnings).toEqual([]);
    expect(b.metadata?.quantization?.quantizer).toBe("rtn");
    expect(maxAbsDiff(logitsOf(q2, ids), saved)).toBe(0);
    q2.dispose();
    // onto the dense base: refused, naming both bases (it once loaded with only a warning, and
    // `modulora eval` then scored the adapter on the wrong base); strict: false warns instead
    const e = loadError(base, dir);
    expect(e.problems).toEqual([
      "base quantization: the adapter was trained on a base that is rtn affine, 4-bit, group 64, asymmetric (28 layers); this model's layers are full precision (not quantized)",
    ]);
    expect(base.layers[0]!.linears.q_proj.kind).toBe("dense");
    const c = loadAdapter(base, dir, { strict: false });
    expect(c.warnings).toEqual(e.problems);
    c.detach();
    // another group size, another quantizer: refused, naming both
    const g32 = tinyModel();
    quantizeLinears(g32, 4, 32);
    expect(loadError(g32, dir).problems[0]).toMatch(/^base quantization: .*rtn affine, 4-bit, group 64, .*; this model's layers are rtn affine, 4-bit, group 32/);
    g32.dispose();
    const other = tinyModel();
    quantizeLinears(other);
    other.layers.forEach((layer) => {
      for (const n of LINEAR_NAMES) layer.linears[n] = new QuantizedLinear((layer.linears[n] as QuantizedLinear).weight, "optq");
    });
    expect(loadError(other, dir).problems).toEqual([
      "base quantizer: the adapter was trained on a base that is rtn affine, 4-bit, group 64, asymmetric (28 layers); this model's layers are optq affine, 4-bit, group 64, asymmetric (28 layers)",
    ]);
    other.dispose();
    a.detach();
    q1.dispose();
  });

  it("the quantizer is recorded from the layers (the library flow: quantizeModel, attachLoRA, saveAdapter without extra)", () => {
    const q = tinyModel();
    q.layers.forEach((layer) => {
      for (const n of LINEAR_NAMES) {
        const d = layer.linears[n] as DenseLinear;
        layer.linears[n] = new QuantizedLinear(quantizeRtn(d.weight, { bits: 2, groupSize: 64 }), "rtn");
        d.dispose();
      }
    });
    const a = attachLoRA(q, { targets: ["q_proj", "v_proj"] });
    const dir = join(tmp, "library-flow");
    saveAdapter(a, dir, { baseModelNameOrPath: null });
    const meta = JSON.parse(readFileSync(join(dir, MODULORA_ADAPTER_FILE), "utf8")) as Record<string, unknown>;
    expect(meta["quantization"]).toEqual({ quantizer: "rtn", format: "affine", bits: 2, group_size: 64, symmetric: false, layers: 8 });
    expect(() => saveAdapter(a, join(tmp, "library-flow-2"), { baseModelNameOrPath: null, extra: { quantizer: "optq" } }))
      .toThrow("saveAdapter: extra.quantizer is 'optq' but the base layers were quantized by 'rtn'");
    a.detach();
    q.dispose();
    // a modulora.json recording a dense base is refused on a quantized model, and the reverse
    const d = attachLoRA(base, { targets: ["q_proj"] });
    const denseDir = join(tmp, "dense-base");
    saveAdapter(d, denseDir, { baseModelNameOrPath: null });
    d.detach();
    const q4 = tinyModel();
    quantizeLinears(q4);
    expect(loadError(q4, denseDir).problems).toEqual([
      "base quantization: the adapter was trained on a base that is full precision (not quantized); this model's layers are rtn affine, 4-bit, group 64, asymmetric (4 layers)",
    ]);
    q4.dispose();
    // a modulora.json without the record: loaded, with a warning that it was not checked
    const p = join(denseDir, MODULORA_ADAPTER_FILE);
    const m = JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;
    delete m["quantization"];
    writeFileSync(p, JSON.stringify(m));
    const ok = loadAdapter(base, denseDir);
    expect(ok.warnings).toEqual(["modulora.json does not record the base's quantization; it was not checked"]);
    ok.detach();
  });
  it("mergedWeights on a dense base equals W + s·B·A and leaves the model as it was", () => {
    const a = loadAdapter(base, LORA);
    try {
      const merged = mergedWeights(base);
      const l = a.layers.get("model.layers.0.self_attn.o_proj")!;
      const w = (l.base as DenseLinear).weight.toArray();
      const ba = T.tidy(() => T.matmul(l.loraB, l.loraA).toArray());
      expect(maxAbsDiff(merged.get("model.layers.0.self_attn.o_proj.weight")!.dataSync(), w.map((v, i) => v + 2 * ba[i]!))).toBeLessThan(1e-6);
      expect(maxAbsDiff(logitsOf(base, ids), refLogits)).toBeLessThan(1e-3);
      T.dispose(merged);
    } finally {
      a.detach();
    }
    expect(mergedWeights(base).size).toBe(0);
  });
});

describe("loadAdapter: an adapter for another model", () => {
  let ours: string; // saved from tiny-llama (4 layers, hidden 256), with modulora.json
  beforeAll(() => {
    const a = attachLoRA(base, { seed: 6 });
    ours = join(tmp, "ours");
    saveAdapter(a, ours, { baseModelNameOrPath: TINY });
    a.detach();
  });
  it("wrong layer count: names the counts (and the base identity when modulora.json is there)", () => {
    const two = tinyModel({ num_hidden_layers: 2 });
    const e = loadError(two, ours);
    expect(e.problems[0]).toMatch(/layer count: the adapter has tensors for blocks 0–3 \(4 layers\), the model has 2; blocks 2–3 do not exist/);
    expect(e.message).toMatch(/base model num_hidden_layers: the adapter was trained on 4, the model has 2/);
    expect(e.message).toMatch(/base model config_sha256: .*\(config\.json differs\)/);
    // a PEFT-made adapter (no modulora.json): the tensors tell
    expect(loadError(two, LORA).problems).toEqual(["layer count: the adapter has tensors for blocks 0–3 (4 layers), the model has 2; blocks 2–3 do not exist"]);
    // an adapter with fewer layers than the model
    const a2 = attachLoRA(two, { seed: 1 });
    saveAdapter(a2, join(tmp, "two-layers"), { baseModelNameOrPath: null });
    a2.detach();
    const e2 = loadError(base, join(tmp, "two-layers"), { strict: false });
    expect(e2.problems).toEqual(["layer count: the adapter has tensors for 2 layers (0–1), the model has 4; blocks 2–3 have none"]);
    two.dispose();
  });
  it("wrong hidden size: names the fingerprint field and every misshapen factor", () => {
    const narrow = randomModel({ ...rawConfig, hidden_size: 128, num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 384 });
    const e = loadError(narrow, ours);
    expect(e.message).toMatch(/base model hidden_size: the adapter was trained on 256, the model has 128/);
    expect(e.message).toMatch(/base model intermediate_size: the adapter was trained on 768, the model has 384/);
    expect(e.problems).toContain("model.layers.0.self_attn.q_proj.lora_A is [8, 256], the model needs [8, 128]");
    expect(e.problems).toContain("model.layers.3.mlp.down_proj.lora_A is [8, 768], the model needs [8, 384]");
    const e2 = loadError(narrow, LORA);
    expect(e2.problems).toHaveLength(4 * 7 * 2); // A and B of every linear of every block
    narrow.dispose();
  });
  it("wrong base fingerprint: config.json differs → error naming config_sha256; strict: false loads with a warning", () => {
    const other = tinyModel({ rope_parameters: { rope_theta: 20000.0, rope_type: "default" } });
    const e = loadError(other, ours);
    expect(e.problems).toHaveLength(1);
    expect(e.problems[0]).toMatch(/^base model config_sha256: the adapter was trained on "[0-9a-f]{64}", the model has "[0-9a-f]{64}" \(config\.json differs\)$/);
    const a = loadAdapter(other, ours, { strict: false });
    expect(a.warnings).toEqual(e.problems);
    a.detach();
    other.dispose();
    // storage dtype and transformers version are not part of the identity
    const same = tinyModel({ dtype: "bfloat16", transformers_version: "9.9.9", use_cache: false });
    loadAdapter(same, ours).detach();
    same.dispose();
  });
});

describe("loadAdapter: malformed adapters", () => {
  it("adapter_config.json: missing, not JSON, not an object, bad fields — all named", () => {
    expect(loadError(base, join(tmp, "nope")).problems).toEqual(["the directory does not exist"]);
    const dir = fixtureCopy("bad-config");
    writeFileSync(join(dir, ADAPTER_CONFIG_FILE), "{ r: 8");
    expect(loadError(base, dir).problems[0]).toMatch(/^adapter_config\.json: the file is not valid JSON/);
    writeFileSync(join(dir, ADAPTER_CONFIG_FILE), "[]");
    expect(loadError(base, dir).problems).toEqual(["adapter_config.json must hold a JSON object"]);
    rmSync(join(dir, ADAPTER_CONFIG_FILE));
    expect(loadError(base, dir).problems).toEqual(["adapter_config.json: the file does not exist"]);
    cpSync(`${LORA}${ADAPTER_CONFIG_FILE}`, join(dir, ADAPTER_CONFIG_FILE));
    editConfig(dir, (c) => {
      delete c["r"];
      c["lora_alpha"] = "16";
      c["lora_dropout"] = 1.5;
      c["target_modules"] = [];
      c["peft_type"] = "IA3";
    });
    expect(loadError(base, dir).problems).toEqual([
      'adapter_config.json: peft_type is "IA3", this loader reads "LORA" adapters',
      "adapter_config.json: r must be a positive integer, got undefined",
      'adapter_config.json: lora_alpha must be a positive number, got "16"',
      "adapter_config.json: lora_dropout must be a number in [0, 1), got 1.5",
      "adapter_config.json: target_modules must be a non-empty list of module names or a regex string, got []",
    ]);
  });
  it("refuses what it does not implement: DoRA, biases, modules_to_save, fan_in_fan_out, patterns", () => {
    const dir = fixtureCopy("refused");
    editConfig(dir, (c) => {
      c["use_dora"] = true;
      c["bias"] = "lora_only";
      c["modules_to_save"] = ["lm_head"];
      c["fan_in_fan_out"] = true;
      c["rank_pattern"] = { q_proj: 4 };
      c["task_type"] = "SEQ_CLS";
    });
    const e = loadError(base, dir);
    expect(e.problems).toEqual([
      'adapter_config.json: task_type is "SEQ_CLS"; only "CAUSAL_LM" adapters apply to a causal LM',
      "adapter_config.json: use_dora = true: DoRA (weight-decomposed LoRA) is not supported",
      'adapter_config.json: bias = "lora_only": trained biases are not supported; only bias "none"',
      'adapter_config.json: modules_to_save = ["lm_head"]: fully trained extra modules (modules_to_save) are not supported',
      "adapter_config.json: fan_in_fan_out = true: fan_in_fan_out (Conv1D/GPT-2 weight layout) does not apply to LLaMA linears",
      'adapter_config.json: rank_pattern = {"q_proj":4}: per-module ranks (rank_pattern) are not supported',
    ]);
    expect(base.layers[0]!.linears.q_proj.kind).toBe("dense");
  });
  it("tensors: missing file, missing factors, unexpected keys, r inconsistent with the config, modules not targeted", () => {
    const dir = fixtureCopy("bad-tensors");
    rmSync(join(dir, ADAPTER_WEIGHTS_FILE));
    expect(loadError(base, dir).problems).toEqual(["adapter_model.safetensors is missing"]);
    writeFileSync(join(dir, "adapter_model.bin"), "");
    expect(loadError(base, dir).problems[0]).toMatch(/adapter_model\.bin \(PyTorch pickle\) is not read/);
    rmSync(join(dir, "adapter_model.bin"));
    const t = T.loadSafetensors(`${LORA}${ADAPTER_WEIGHTS_FILE}`);
    for (const k of [peftTensorName(2, "q_proj", "B"), peftTensorName(3, "down_proj", "A"), peftTensorName(3, "down_proj", "B")]) {
      t.get(k)!.dispose();
      t.delete(k);
    }
    t.set("base_model.model.lm_head.lora_A.weight", T.zeros([8, 256]));
    t.set("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", T.zeros([256]));
    T.saveSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), t);
    T.dispose(t);
    expect(loadError(base, dir).problems).toEqual([
      "tensor base_model.model.lm_head.lora_A.weight: not a LoRA factor of a block linear (keys are base_model.model.model.layers.{i}.{self_attn|mlp}.{name}.lora_{A|B}.weight)",
      "tensor base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector: a DoRA magnitude vector (DoRA is not supported)",
      "missing tensors in block 2: q_proj.lora_B",
      "missing tensors in block 3: down_proj",
    ]);
    const r4 = fixtureCopy("r4");
    editConfig(r4, (c) => { c["r"] = 4; c["target_modules"] = ["q_proj", "v_proj", "k_proj", "o_proj", "gate_proj", "up_proj"]; });
    const e = loadError(base, r4);
    expect(e.problems).toContain("tensor base_model.model.model.layers.0.mlp.down_proj.lora_A.weight: model.layers.0.mlp.down_proj is not one of the adapter's target_modules");
    expect(e.problems).toContain("model.layers.1.self_attn.k_proj.lora_A is [8, 256], the model needs [4, 256] (r is 4 in adapter_config.json)");
    expect(e.problems).toContain("model.layers.1.self_attn.k_proj.lora_B is [256, 8], the model needs [256, 4] (r is 4 in adapter_config.json)");
    expect(e.problems).toHaveLength(4 * 2 + 4 * 6 * 2);
    const corrupt = fixtureCopy("corrupt");
    writeFileSync(join(corrupt, ADAPTER_WEIGHTS_FILE), Buffer.from([1, 2, 3]));
    expect(loadError(base, corrupt).problems[0]).toMatch(/^adapter_model\.safetensors: .*8-byte header/);
  });
  it("target_modules as a regex: PEFT's full match, in linear time; the review's pathological pattern fails at once", () => {
    const dir = fixtureCopy("regex");
    editConfig(dir, (c) => { c["target_modules"] = "model\\.layers\\.\\d+\\.(self_attn|mlp)\\.(q|k|v|o|gate|up|down)_proj"; });
    const a = loadAdapter(base, dir);
    expect(maxAbsDiff(logitsOf(base, ids), refLogits)).toBeLessThan(1e-3);
    a.detach();
    // `new RegExp` backtracked exponentially on every module name here (eval hung)
    editConfig(dir, (c) => { c["target_modules"] = "(([a-z_0-9.])+)+X"; });
    const e = loadError(base, dir); // (the test finishing is the point: RegExp never returned here)
    expect(e.problems).toHaveLength(56); // every factor of the 28 linears: not targeted
    expect(e.problems[0]).toBe("tensor base_model.model.model.layers.0.mlp.down_proj.lora_A.weight: model.layers.0.mlp.down_proj is not one of the adapter's target_modules");
    editConfig(dir, (c) => { c["target_modules"] = "(?=q).*"; c["exclude_modules"] = "(a)\\1"; });
    expect(loadError(base, dir).problems).toEqual([
      `adapter_config.json: target_modules: the regex is outside the supported subset (literals, ., classes, groups, |, ? * + {m,n}, ^ $): regex ${JSON.stringify("(?=q).*")}: look-ahead is not supported (at offset 0)`,
      `adapter_config.json: exclude_modules: the regex is outside the supported subset (literals, ., classes, groups, |, ? * + {m,n}, ^ $): regex ${JSON.stringify("(a)\\1")}: the back-reference \\1 is not supported (at offset 3)`,
    ]);
  });
  it("a NaN or infinite factor is refused, naming the tensor; the model is left as it was", () => {
    const dir = fixtureCopy("nan-factor");
    const t = T.loadSafetensors(`${LORA}${ADAPTER_WEIGHTS_FILE}`);
    const name = peftTensorName(1, "v_proj", "B");
    const b = new Float32Array(t.get(name)!.dataSync() as Float32Array);
    b[3] = -Infinity;
    t.get(name)!.dispose();
    t.set(name, T.tensor(b, [256, 8]));
    T.saveSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), t);
    T.dispose([...t.values()]);
    expect(loadError(base, dir).problems).toEqual([
      `adapter_model.safetensors: tensor "${name}" holds -Infinity at element 3 (1 of 2048 values are not finite): the weights are damaged, or a run that wrote them diverged`,
    ]);
    expect([...LINEAR_NAMES].every((n) => base.layers.every((l) => l.linears[n].kind === "dense"))).toBe(true);
  });
  it("modulora.json: a newer version or a missing base_model is an error", () => {
    const dir = join(tmp, "meta");
    const a = attachLoRA(base);
    saveAdapter(a, dir, { baseModelNameOrPath: null });
    a.detach();
    const p = join(dir, MODULORA_ADAPTER_FILE);
    const meta = JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;
    writeFileSync(p, JSON.stringify({ ...meta, modulora_adapter_version: 2 }));
    expect(loadError(base, dir).problems).toEqual(["modulora.json: modulora_adapter_version is 2, this loader reads version 1"]);
    writeFileSync(p, JSON.stringify({ ...meta, base_model: undefined }));
    expect(loadError(base, dir).problems).toEqual(["modulora.json: base_model is missing"]);
  });
});

describe("PEFT check inputs (scripts/peft_check.py)", () => {
  // node scripts/write-peft-check.mjs regenerates scripts/results/trained-adapter and its logits.
  it("the committed trained adapter loads and reproduces the committed logits", () => {
    const ref = T.loadSafetensors(TRAINED_LOGITS);
    const a = loadAdapter(base, TRAINED);
    try {
      expect(a.metadata?.seed).toBe(42);
      const logits = T.tidy(() => new Float32Array(base.forward(ref.get("input_ids")!).logits.dataSync() as Float32Array));
      const d = maxAbsDiff(logits, ref.get("logits")!.dataSync());
      console.log(`trained-adapter logits vs the committed ones: max abs diff ${d.toExponential(2)}`);
      expect(d).toBeLessThan(1e-4);
    } finally {
      a.detach();
      T.dispose(ref);
    }
  });
});
