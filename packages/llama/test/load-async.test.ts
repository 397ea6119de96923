// Loading without blocking the event loop: loadModelAsync reads every tensor on libuv's thread
// pool and builds the same model as loadModel (full precision, bf16 and a GPTQ-layout quantized
// checkpoint), leaves the loop free during the load, and on a bad file fails like the synchronous
// load, freeing what it had placed.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { memory, tensorFrom, tidy } from "@modulora/tensor";
import { rtnQuantizer } from "@modulora/quantizer-rtn";
import { loadLlama, loadModel, loadModelAsync, quantizeModel, saveQuantizedModel, type LlamaModel } from "../src/index.js";
import { FIXTURES } from "./fixtures.js";

const TINY = join(FIXTURES, "tiny-llama");
let tmp: string;
let gptq: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-load-async-"));
  const q = loadLlama(TINY).model;
  await quantizeModel(q, rtnQuantizer, { bits: 3, groupSize: 32, measureError: false });
  gptq = join(tmp, "gptq");
  saveQuantizedModel(q, gptq, { plugin: rtnQuantizer, sourceDir: TINY });
  q.dispose();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ids = [[1, 5, 9, 2, 7, 3]];
function logits(model: LlamaModel): number[] {
  return tidy(() => Array.from(model.forward(tensorFrom(ids.flat(), { shape: [1, ids[0]!.length], dtype: "i32" })).logits.toFloat64Array()));
}

describe("loadModelAsync", () => {
  for (const [what, dir, dtype] of [["full precision", () => TINY, "f32"], ["bf16", () => TINY, "bf16"], ["GPTQ-layout 3-bit", () => gptq, "f32"]] as const) {
    it(`${what}: the same model as loadModel, bit for bit`, async () => {
      const a = loadModel(dir(), { dtype });
      const b = await loadModelAsync(dir(), { dtype });
      try {
        expect(b.quantized).toBe(a.quantized);
        expect(b.model.dtype).toBe(dtype);
        expect(logits(b.model)).toEqual(logits(a.model));
      } finally {
        a.model.dispose();
        b.model.dispose();
      }
    });
  }
  it("leaves the event loop free: the promise is pending across a macrotask turn, and timers fire during the load", async () => {
    let settled = false;
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const pending = loadModelAsync(gptq).then((r) => ((settled = true), r));
    await new Promise((r) => setImmediate(r));
    const early = settled;
    const r = await pending;
    clearInterval(timer);
    r.model.dispose();
    expect(early).toBe(false); // a synchronous load would have finished before this turn
    expect(ticks).toBeGreaterThan(0);
  });
  it("a NaN in a weight rejects with the error loadModel throws, and frees every tensor it had placed", async () => {
    const bad = join(tmp, "nan");
    cpSync(TINY, bad, { recursive: true });
    const file = join(bad, "model.safetensors");
    const bytes = readFileSync(file);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString("utf8")) as Record<string, { data_offsets: [number, number] }>;
    const target = header["model.norm.weight"]!;
    bytes.writeFloatLE(Number.NaN, 8 + headerLen + target.data_offsets[0]); // f32 checkpoint
    writeFileSync(file, bytes);
    const before = memory().tensors;
    let syncError: unknown;
    try {
      loadModel(bad).model.dispose();
    } catch (err) {
      syncError = err;
    }
    expect(syncError).toBeInstanceOf(Error);
    await expect(loadModelAsync(bad)).rejects.toThrow((syncError as Error).message);
    expect(memory().tensors).toBe(before);
  });
});
