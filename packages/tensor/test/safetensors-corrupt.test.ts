import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SafetensorsError, type SafetensorsErrorCode } from "../src/safetensors/errors.js";
import { SafetensorsReader } from "../src/safetensors/reader.js";
import { writeSafetensors, type SafetensorsTensorData } from "../src/safetensors/writer.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "modulora-st-bad-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** prefix (the header's true length unless `length` lies) + header + data. */
function file(header: string | Uint8Array, data: number | Uint8Array = 0, length?: bigint): Uint8Array {
  const h = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const d = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

const entry = (dtype: string, shape: unknown[], offsets: unknown[]) => ({ dtype, shape, data_offsets: offsets });
const json = (o: unknown) => JSON.stringify(o);
const w16 = json({ w: entry("F32", [2, 2], [0, 16]) });

interface Case {
  label: string;
  bytes: Uint8Array;
  code: SafetensorsErrorCode;
  /** The tensor the error must name (undefined: none). */
  tensor?: string;
  message: RegExp;
  maxHeaderBytes?: number;
}

const cases: Case[] = [
  { label: "an empty file", bytes: new Uint8Array(0), code: "file-too-small", message: /0 bytes, fewer than the 8-byte/ },
  { label: "a 7-byte file", bytes: new Uint8Array(7), code: "file-too-small", message: /7 bytes/ },
  { label: "a header cut short", bytes: file(w16, 16).subarray(0, 30), code: "header-length", message: /says \d+ bytes but only 22 follow/ },
  { label: "data cut short", bytes: file(w16, 8), code: "offset-range", tensor: "w", message: /\[0, 16\] run past the end of the data section \(8 bytes\); is the file truncated/ },
  { label: "a header length larger than the file", bytes: file(w16, 16, 1000n), code: "header-length", message: /says 1000 bytes but only \d+ follow/ },
  { label: "a header length of 2^60", bytes: file(w16, 16, 2n ** 60n), code: "header-length", message: /says 1152921504606846976 bytes, over the limit of 104857600/ },
  { label: "a header over a custom limit", bytes: file(w16, 16), maxHeaderBytes: 32, code: "header-length", message: /over the limit of 32/ },
  { label: "a header length of 0", bytes: file("", 0), code: "header-json", message: /must start with '\{', found an empty header/ },
  { label: "invalid JSON", bytes: file('{"w": {"dtype": "F32",', 0), code: "header-json", message: /not valid JSON/ },
  { label: "invalid UTF-8", bytes: file(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), code: "header-json", message: /not valid UTF-8/ },
  { label: "a header that is an array", bytes: file("[1, 2]"), code: "header-json", message: /must start with '\{', found byte 0x5b/ },
  { label: "a header with leading spaces", bytes: file(` ${w16}`, 16), code: "header-json", message: /must start with '\{', found byte 0x20/ },
  { label: "NUL padding instead of spaces", bytes: file(`${w16}\0\0\0`, 16), code: "header-json", message: /not valid JSON/ },
  { label: "an entry that is not an object", bytes: file(json({ w: 5 })), code: "header-entry", tensor: "w", message: /must be an object with dtype, shape and data_offsets, got a number/ },
  { label: "an entry without dtype", bytes: file(json({ w: { shape: [1], data_offsets: [0, 4] } }), 4), code: "header-entry", tensor: "w", message: /no 'dtype'/ },
  { label: "an entry without shape", bytes: file(json({ w: { dtype: "F32", data_offsets: [0, 4] } }), 4), code: "header-entry", tensor: "w", message: /no 'shape'/ },
  { label: "an entry without data_offsets", bytes: file(json({ w: { dtype: "F32", shape: [1] } }), 4), code: "header-entry", tensor: "w", message: /no 'data_offsets'/ },
  { label: "a dtype that is not a string", bytes: file(json({ w: entry(5 as unknown as string, [1], [0, 4]) }), 4), code: "header-entry", tensor: "w", message: /'dtype' must be a string, got a number/ },
  { label: "a fractional dimension", bytes: file(json({ w: entry("F32", [2.5], [0, 10]) }), 10), code: "header-entry", tensor: "w", message: /'shape'\[0\] = 2.5 is not a non-negative integer/ },
  { label: "a negative dimension", bytes: file(json({ w: entry("F32", [2, -1], [0, 4]) }), 4), code: "header-entry", tensor: "w", message: /'shape'\[1\] = -1/ },
  { label: "a string dimension", bytes: file(json({ w: entry("F32", ["2"], [0, 8]) }), 8), code: "header-entry", tensor: "w", message: /'shape'\[0\] = "2"/ },
  { label: "a dimension beyond 2^53", bytes: file(json({ w: entry("U8", [1e20], [0, 8]) }), 8), code: "header-entry", tensor: "w", message: /'shape'\[0\] = 100000000000000000000/ },
  { label: "a shape that is not an array", bytes: file(json({ w: entry("F32", 4 as unknown as unknown[], [0, 16]) }), 16), code: "header-entry", tensor: "w", message: /'shape' must be an array/ },
  { label: "three data offsets", bytes: file(json({ w: entry("F32", [1], [0, 4, 8]) }), 8), code: "header-entry", tensor: "w", message: /must be \[begin, end\], got 3 numbers/ },
  { label: "negative data offsets", bytes: file(json({ w: entry("F32", [1], [-4, 0]) }), 4), code: "header-entry", tensor: "w", message: /'data_offsets'\[0\] = -4/ },
  { label: "unknown dtype F33", bytes: file(json({ w: entry("F33", [1], [0, 4]) }), 4), code: "unknown-dtype", tensor: "w", message: /unknown dtype "F33" \(supported: F32, F64, BF16, F16, I32, I8, U8, U32\)/ },
  { label: "lower-case dtype f32", bytes: file(json({ w: entry("f32", [1], [0, 4]) }), 4), code: "unknown-dtype", tensor: "w", message: /unknown dtype "f32"/ },
  { label: "unsupported dtype I64", bytes: file(json({ w: entry("I64", [1], [0, 8]) }), 8), code: "unsupported-dtype", tensor: "w", message: /dtype I64 is not supported/ },
  { label: "unsupported dtype BOOL", bytes: file(json({ w: entry("BOOL", [4], [0, 4]) }), 4), code: "unsupported-dtype", tensor: "w", message: /dtype BOOL is not supported/ },
  { label: "unsupported dtype F8_E4M3", bytes: file(json({ w: entry("F8_E4M3", [4], [0, 4]) }), 4), code: "unsupported-dtype", tensor: "w", message: /F8_E4M3 is not supported/ },
  { label: "a size mismatch", bytes: file(json({ w: entry("F32", [2, 2], [0, 12]) }), 12), code: "size-mismatch", tensor: "w", message: /shape \[2, 2\] of F32 needs 16 bytes but data_offsets \[0, 12\] hold 12/ },
  { label: "a non-empty shape on an empty range", bytes: file(json({ w: entry("U8", [1], [0, 0]) }), 0), code: "size-mismatch", tensor: "w", message: /needs 1 bytes but .* hold 0/ },
  { label: "a huge shape [2^40, 2^40]", bytes: file(json({ w: entry("F32", [2 ** 40, 2 ** 40], [0, 16]) }), 16), code: "size-mismatch", tensor: "w", message: /needs 4835703278458516698824704 bytes but data_offsets \[0, 16\] hold 16/ },
  { label: "offsets past the data section", bytes: file(json({ w: entry("F32", [16], [0, 64]) }), 16), code: "offset-range", tensor: "w", message: /\[0, 64\] run past the end of the data section \(16 bytes\)/ },
  { label: "begin > end", bytes: file(json({ w: entry("F32", [1], [8, 4]) }), 8), code: "offset-range", tensor: "w", message: /\[8, 4\] end before they begin/ },
  { label: "overlapping tensors", bytes: file(json({ a: entry("F32", [4], [0, 16]), b: entry("F32", [4], [8, 24]) }), 24), code: "overlap", tensor: "b", message: /bytes \[8, 24\) overlap those of tensor "a" \[0, 16\)/ },
  { label: "a tensor inside another", bytes: file(json({ a: entry("F32", [4], [0, 16]), b: entry("U8", [2], [4, 6]) }), 16), code: "overlap", tensor: "b", message: /overlap those of tensor "a"/ },
  { label: "the same tensor name twice", bytes: file(`{"a":${json(entry("U8", [1], [0, 1]))},"b":${json(entry("U8", [1], [1, 2]))},"a":${json(entry("U8", [1], [2, 3]))}}`, 3), code: "duplicate-name", tensor: "a", message: /appears more than once/ },
  { label: "trailing bytes after the last tensor", bytes: file(w16, 20), code: "trailing-data", message: /holds 20 bytes but the tensors end at byte 16: 4 unexplained bytes/ },
  { label: "data but no tensors", bytes: file("{}", 8), code: "trailing-data", message: /tensors end at byte 0/ },
  { label: "non-string metadata", bytes: file(json({ __metadata__: { a: "x", b: 1 } })), code: "metadata", message: /__metadata__ value for key "b" must be a string, got a number/ },
  { label: "metadata that is not an object", bytes: file(json({ __metadata__: ["x"] })), code: "metadata", message: /__metadata__ must be an object of strings, got an array/ },
  { label: "null metadata", bytes: file(json({ __metadata__: null })), code: "metadata", message: /got null/ },
];

describe("corrupted safetensors files", () => {
  for (const c of cases) {
    it(`rejects ${c.label} with ${c.code}`, () => {
      const path = join(dir, `${c.label.replace(/[^a-z0-9]+/gi, "_")}.safetensors`);
      writeFileSync(path, c.bytes);
      for (const mode of ["stream", "mmap"] as const) {
        let err: unknown;
        try {
          SafetensorsReader.open(path, { mode, maxHeaderBytes: c.maxHeaderBytes }).close();
        } catch (e) {
          err = e;
        }
        expect(err, "should have thrown").toBeInstanceOf(SafetensorsError);
        const e = err as SafetensorsError;
        expect(e.code).toBe(c.code);
        expect(e.path).toBe(path);
        expect(e.tensor).toBe(c.tensor);
        expect(e.message).toContain(path);
        if (c.tensor) expect(e.message).toContain(`tensor "${c.tensor}"`);
        expect(e.message).toMatch(c.message);
      }
    });
  }

  it("rejects a huge shape without allocating for it", () => {
    const path = join(dir, "huge.safetensors");
    writeFileSync(path, file(json({ w: entry("F64", [2 ** 52, 2 ** 52, 2 ** 52], [0, 8]) }), 8));
    const before = process.memoryUsage().rss;
    expect(() => SafetensorsReader.open(path)).toThrow(expect.objectContaining({ code: "size-mismatch" }));
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  it("reports a missing file and a directory as io", () => {
    const missing = join(dir, "missing.safetensors");
    expect(() => SafetensorsReader.open(missing)).toThrow(expect.objectContaining({ code: "io", path: missing, message: expect.stringMatching(/cannot open the file: ENOENT/) }));
    expect(() => SafetensorsReader.open(dir)).toThrow(expect.objectContaining({ code: "io", path: dir }));
  });

  it("rejects bad open options", () => {
    const path = join(dir, "ok.safetensors");
    writeFileSync(path, file("{}"));
    expect(() => SafetensorsReader.open(path, { mode: "fast" as "stream" })).toThrow(TypeError);
    expect(() => SafetensorsReader.open(path, { maxHeaderBytes: -1 })).toThrow(RangeError);
    SafetensorsReader.open(path, { maxHeaderBytes: 2 }).close();
  });
});

describe("atomic writes", () => {
  const tensors: SafetensorsTensorData[] = [
    { name: "a", dtype: "f32", shape: [256], data: new Uint8Array(1024).fill(1) },
    { name: "b", dtype: "u8", shape: [4096], data: new Uint8Array(4096).fill(2) },
  ];

  /** A fresh directory holding one valid file, `model.safetensors`. */
  function setup(): { d: string; target: string; original: Buffer } {
    const d = mkdtempSync(join(dir, "atomic-"));
    const target = join(d, "model.safetensors");
    writeSafetensors(target, [{ name: "old", dtype: "i8", shape: [3], data: new Uint8Array([1, 2, 3]) }], { v: "1" });
    return { d, target, original: readFileSync(target) };
  }

  it("replaces an existing file and leaves no temporary file", () => {
    const { d, target } = setup();
    writeSafetensors(target, tensors);
    expect(readdirSync(d)).toEqual(["model.safetensors"]);
    const r = SafetensorsReader.open(target);
    expect(r.names()).toEqual(["a", "b"]);
    r.close();
  });

  it("leaves the old file intact when validation fails", () => {
    const { d, target, original } = setup();
    const bad = [tensors[0]!, { ...tensors[1]!, data: new Uint8Array(10) }];
    expect(() => writeSafetensors(target, bad)).toThrow(expect.objectContaining({ code: "size-mismatch", tensor: "b" }));
    expect(readFileSync(target)).toEqual(original);
    expect(readdirSync(d)).toEqual(["model.safetensors"]);
  });

  it("leaves the old file intact when the write fails midway", () => {
    const { d, target, original } = setup();
    let sawTemp = false;
    const boom = new Error("disk on fire");
    let err: unknown;
    try {
      writeSafetensors(target, tensors, undefined, {
        onProgress: () => {
          sawTemp = readdirSync(d).some((f) => f.startsWith("model.safetensors.tmp-"));
          throw boom;
        },
      });
    } catch (e) {
      err = e;
    }
    expect(sawTemp).toBe(true);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).code).toBe("io");
    expect((err as SafetensorsError).cause).toBe(boom);
    expect((err as SafetensorsError).message).toMatch(/left unchanged: disk on fire/);
    expect(readFileSync(target)).toEqual(original);
    expect(readdirSync(d)).toEqual(["model.safetensors"]);
  });

  it("cleans up when the final rename fails (target is a directory)", () => {
    const { d } = setup();
    const target = join(d, "adir");
    mkdirSync(target);
    writeFileSync(join(target, "keep"), "x");
    expect(() => writeSafetensors(target, tensors)).toThrow(expect.objectContaining({ code: "io", path: target }));
    expect(statSync(target).isDirectory()).toBe(true);
    expect(readdirSync(target)).toEqual(["keep"]);
    expect(readdirSync(d).sort()).toEqual(["adir", "model.safetensors"]);
  });

  it("reports a missing parent directory as io", () => {
    const target = join(dir, "no", "such", "dir", "m.safetensors");
    expect(() => writeSafetensors(target, tensors)).toThrow(expect.objectContaining({ code: "io", message: expect.stringMatching(/ENOENT/) }));
  });

  // The temporary file cannot be created: its name (target + ".tmp-<pid>-<12 hex>") is longer than
  // the 255 bytes a file name may have, while the target's own name fits. This fails for root too,
  // unlike a read-only directory (root ignores directory permissions, and CI runs as root).
  it("leaves the old file intact when the temporary file cannot be created", () => {
    const { d, target: short, original } = setup();
    const target = join(d, `${"m".repeat(240)}.safetensors`);
    renameSync(short, target); // writeSafetensors could not have written it under this name
    expect(() => writeSafetensors(target, tensors)).toThrow(
      expect.objectContaining({ code: "io", path: target, message: expect.stringMatching(/left unchanged: ENAMETOOLONG/) }),
    );
    expect(readFileSync(target)).toEqual(original);
    expect(readdirSync(d)).toEqual([`${"m".repeat(240)}.safetensors`]);
  });
});
