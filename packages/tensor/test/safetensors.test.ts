import { closeSync, ftruncateSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { allocStorage, MAX_MAPPING_BYTES, releaseStorage } from "@modulora/kernels";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DTYPE_INFO, DTYPES, type DType } from "../src/dtype.js";
import { SafetensorsError } from "../src/safetensors/errors.js";
import { parseSafetensorsHeader } from "../src/safetensors/format.js";
import { SafetensorsReader, type SafetensorsReadMode } from "../src/safetensors/reader.js";
import { writeSafetensors, type SafetensorsTensorData } from "../src/safetensors/writer.js";
import { loadSafetensors, saveSafetensors } from "../src/safetensors/tensors.js";
import { Tensor } from "../src/tensor.js";
import { tensorFrom } from "../src/index.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "modulora-st-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let fileCounter = 0;
const freshPath = (stem = "t") => join(dir, `${stem}-${fileCounter++}.safetensors`);

/** Deterministic pseudo-random numbers (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random elements of a dtype in its own typed array, returned as bytes. */
function randomBytesOf(dtype: DType, count: number, seed: number): Uint8Array {
  const r = rng(seed);
  const info = DTYPE_INFO[dtype];
  const arr = new info.array(count);
  for (let i = 0; i < count; i++) {
    switch (dtype) {
      case "f32":
      case "f64":
        arr[i] = (r() - 0.5) * 1e3;
        break;
      case "bf16":
      case "f16":
        arr[i] = Math.floor(r() * 0x7c00); // finite bit patterns
        break;
      case "i32":
        arr[i] = Math.floor((r() - 0.5) * 2 ** 32);
        break;
      case "i8":
        arr[i] = Math.floor(r() * 256) - 128;
        break;
      case "u8":
        arr[i] = Math.floor(r() * 256);
        break;
      case "u32":
        arr[i] = Math.floor(r() * 2 ** 32);
        break;
    }
  }
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}

const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function sampleTensors(seed: number): SafetensorsTensorData[] {
  const out: SafetensorsTensorData[] = [];
  let s = seed;
  for (const dtype of DTYPES) {
    for (const shape of [[3, 5], [7], [], [0, 3], [2, 1, 3]]) {
      out.push({ name: `${dtype}.${shape.join("x") || "scalar"}`, dtype, shape, data: randomBytesOf(dtype, count(shape), s++) });
    }
  }
  return out;
}

describe("safetensors round trip", () => {
  for (const mode of ["stream", "mmap"] as SafetensorsReadMode[]) {
    it(`keeps every dtype, scalars, empty tensors and metadata (${mode})`, () => {
      const path = freshPath();
      const tensors = sampleTensors(mode === "stream" ? 1 : 1000);
      const metadata = { format: "pt", note: "ünïcødé ✓", "": "empty key" };
      writeSafetensors(path, tensors, metadata);

      const r = SafetensorsReader.open(path, { mode });
      try {
        expect(r.mode).toBe(mode);
        expect(r.names()).toEqual(tensors.map((t) => t.name));
        expect(r.metadata).toEqual(metadata);
        for (const t of tensors) {
          const e = r.entry(t.name);
          expect(e.dtype).toBe(t.dtype);
          expect(e.shape).toEqual(t.shape);
          expect(e.end - e.begin).toBe(t.data.byteLength);
          expect(r.read(t.name)).toEqual(t.data);
          if (mode === "mmap") expect(r.view(t.name)).toEqual(t.data);
        }
        // Element values survive too, not just bytes: check one f32 and one i8 tensor.
        const f32 = tensors.find((t) => t.dtype === "f32")!;
        const back = r.read(f32.name);
        expect(new Float32Array(back.buffer, back.byteOffset, back.byteLength / 4)).toEqual(
          new Float32Array(f32.data.buffer, f32.data.byteOffset, f32.data.byteLength / 4),
        );
      } finally {
        r.close();
      }
    });
  }

  it("writes and reads a file with no tensors", () => {
    const path = freshPath();
    writeSafetensors(path, []);
    const bytes = readFileSync(path);
    expect(bytes.length % 8).toBe(0);
    expect(bytes.subarray(8).toString("utf8").trimEnd()).toBe("{}");
    for (const mode of ["stream", "mmap"] as const) {
      const r = SafetensorsReader.open(path, { mode });
      expect(r.names()).toEqual([]);
      expect(r.metadata).toEqual({});
      r.close();
    }
  });

  it("pads the header with spaces so the data section starts at a multiple of 8", () => {
    for (let nameLength = 1; nameLength <= 9; nameLength++) {
      const path = freshPath();
      const data = new Uint8Array([1, 2, 3, 4]);
      writeSafetensors(path, [{ name: "x".repeat(nameLength), dtype: "u8", shape: [4], data }]);
      const bytes = new Uint8Array(readFileSync(path));
      const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
      expect((8 + n) % 8).toBe(0);
      expect(bytes.length).toBe(8 + n + 4);
      const header = new TextDecoder().decode(bytes.subarray(8, 8 + n));
      const json = header.trimEnd();
      expect(header.slice(json.length)).toMatch(/^ {0,7}$/);
      expect(JSON.parse(json)).toEqual({ ["x".repeat(nameLength)]: { dtype: "U8", shape: [4], data_offsets: [0, 4] } });
      expect(bytes.subarray(8 + n)).toEqual(data);
    }
  });

  it("keeps insertion order in the header, __metadata__ first, even for integer-like names", () => {
    const path = freshPath();
    const names = ["b", "10", "a", "2"];
    writeSafetensors(
      path,
      names.map((name, i) => ({ name, dtype: "u8" as const, shape: [1], data: new Uint8Array([i]) })),
      { k: "v" },
    );
    const text = readFileSync(path).subarray(8).toString("utf8");
    const order = [...text.matchAll(/"([^"]+)":\{/g)].map((m) => m[1]);
    expect(order).toEqual(["__metadata__", "b", "10", "a", "2"]);
    const r = SafetensorsReader.open(path);
    expect(r.names()).toEqual(names);
    expect(Array.from(r.read("2"))).toEqual([3]);
    r.close();
  });

  it("omits empty metadata and keeps a __proto__ metadata key as data", () => {
    const p1 = freshPath();
    writeSafetensors(p1, [], {});
    expect(readFileSync(p1).subarray(8).toString("utf8")).not.toContain("__metadata__");
    const p2 = freshPath();
    const meta = JSON.parse('{"__proto__":"x","a":"b"}') as Record<string, string>;
    writeSafetensors(p2, [], meta);
    const r = SafetensorsReader.open(p2);
    expect(Object.keys(r.metadata)).toEqual(["__proto__", "a"]);
    expect(Object.getPrototypeOf(r.metadata)).toBe(Object.prototype);
    r.close();
  });

  it("reports progress and aborts cleanly when asked to", () => {
    const path = freshPath();
    const tensors = sampleTensors(7).slice(0, 4);
    const seen: [number, number, string][] = [];
    writeSafetensors(path, tensors, undefined, { onProgress: (w, t, n) => seen.push([w, t, n]) });
    const total = tensors.reduce((a, t) => a + t.data.byteLength, 0);
    expect(seen.map((s) => s[2])).toEqual(tensors.map((t) => t.name));
    expect(seen[seen.length - 1]).toEqual([total, total, tensors[3]!.name]);
  });
});

describe("SafetensorsReader", () => {
  let path: string;
  let tensors: SafetensorsTensorData[];
  beforeAll(() => {
    path = freshPath("reader");
    tensors = sampleTensors(42);
    writeSafetensors(path, tensors, { a: "1" });
  });

  it("readInto fills a preallocated buffer at an offset, and native storage", () => {
    const t = tensors.find((x) => x.dtype === "f64" && x.shape.length === 2)!;
    for (const mode of ["stream", "mmap"] as const) {
      const r = SafetensorsReader.open(path, { mode });
      const big = new Uint8Array(t.data.byteLength + 16).fill(0xab);
      r.readInto(t.name, big.subarray(8, 8 + t.data.byteLength));
      expect(big.subarray(8, 8 + t.data.byteLength)).toEqual(t.data);
      expect(big.subarray(0, 8).every((b) => b === 0xab)).toBe(true);
      expect(big.subarray(8 + t.data.byteLength).every((b) => b === 0xab)).toBe(true);

      const native = allocStorage(t.data.byteLength);
      try {
        r.readInto(t.name, new Uint8Array(native));
        expect(new Uint8Array(native)).toEqual(t.data);
      } finally {
        releaseStorage(native);
      }
      expect(() => r.readInto(t.name, new Uint8Array(t.data.byteLength - 1))).toThrow(RangeError);
      expect(() => r.readInto(t.name, new Uint8Array(t.data.byteLength - 1))).toThrow(/destination holds .* bytes but the tensor has/);
      r.close();
    }
  });

  it("names a missing tensor in a not-found error", () => {
    const r = SafetensorsReader.open(path);
    expect(r.has("nope")).toBe(false);
    expect(r.has(tensors[0]!.name)).toBe(true);
    let err: unknown;
    try {
      r.read("nope");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).code).toBe("not-found");
    expect((err as SafetensorsError).tensor).toBe("nope");
    expect((err as SafetensorsError).path).toBe(path);
    expect((err as SafetensorsError).message).toContain('"nope"');
    expect((err as SafetensorsError).message).toContain(path);
    r.close();
  });

  it("mmap views are zero-copy, private, and empty after close", () => {
    const t = tensors.find((x) => x.dtype === "u8" && x.shape.length === 2)!;
    const r = SafetensorsReader.open(path, { mode: "mmap" });
    const v1 = r.view(t.name);
    const v2 = r.view(t.name);
    expect(v1.buffer).toBe(v2.buffer);
    expect(v1).toEqual(t.data);
    v1[0] = v1[0]! ^ 0xff; // copy-on-write: changes the mapping, never the file
    expect(v2[0]).toBe(v1[0]);
    r.close();
    expect(v1.length).toBe(0);
    expect(r.closed).toBe(true);
    r.close(); // idempotent
    const again = SafetensorsReader.open(path);
    expect(again.read(t.name)).toEqual(t.data);
    again.close();
  });

  it("refuses view() in stream mode and any read after close", () => {
    const r = SafetensorsReader.open(path);
    expect(() => r.view(tensors[0]!.name)).toThrow(/mode "mmap"/);
    r.close();
    r.close();
    expect(() => r.read(tensors[0]!.name)).toThrow(expect.objectContaining({ code: "closed" }));
    const m = SafetensorsReader.open(path, { mode: "mmap" });
    m.close();
    expect(() => m.view(tensors[0]!.name)).toThrow(expect.objectContaining({ code: "closed" }));
  });

  it("keeps reading the opened file after another is renamed over its path", () => {
    const p = freshPath();
    const before = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    writeSafetensors(p, [{ name: "w", dtype: "u8", shape: [8], data: before }]);
    const readers = [SafetensorsReader.open(p), SafetensorsReader.open(p, { mode: "mmap" })];
    writeSafetensors(p, [{ name: "pad", dtype: "u8", shape: [3], data: new Uint8Array(3) }, { name: "w", dtype: "u8", shape: [8], data: new Uint8Array(8).fill(9) }]);
    for (const r of readers) {
      expect(r.read("w")).toEqual(before);
      r.close();
    }
    const fresh = SafetensorsReader.open(p);
    expect(Array.from(fresh.read("w"))).toEqual(new Array(8).fill(9));
    fresh.close();
  });

  it("reports io when the file shrinks under a stream reader", () => {
    const p = freshPath();
    writeSafetensors(p, [{ name: "w", dtype: "f32", shape: [1024], data: randomBytesOf("f32", 1024, 3) }]);
    const r = SafetensorsReader.open(p);
    const fd = openSync(p, "r+");
    ftruncateSync(fd, r.dataOffset + 100);
    closeSync(fd);
    expect(() => r.read("w")).toThrow(expect.objectContaining({ code: "io", tensor: "w", message: expect.stringMatching(/file ended at byte/) }));
    r.close();
  });

  it("readIntoAsync reads the bytes readInto reads (stream and mmap), and fails the same way on a shrunk file", async () => {
    const p = freshPath();
    const data = randomBytesOf("f32", 1024, 4);
    writeSafetensors(p, [{ name: "w", dtype: "f32", shape: [1024], data }]);
    for (const mode of ["stream", "mmap"] as const) {
      const r = SafetensorsReader.open(p, { mode });
      const a = new Uint8Array(4096);
      const b = new Uint8Array(4096);
      r.readInto("w", a);
      await r.readIntoAsync("w", b);
      expect(b).toEqual(a);
      await expect(r.readIntoAsync("w", new Uint8Array(8))).rejects.toThrow("the destination holds 8 bytes but the tensor has 4096");
      r.close();
    }
    const r = SafetensorsReader.open(p);
    const fd = openSync(p, "r+");
    ftruncateSync(fd, r.dataOffset + 100);
    closeSync(fd);
    await expect(r.readIntoAsync("w", new Uint8Array(4096))).rejects.toThrow(expect.objectContaining({ code: "io", tensor: "w", message: expect.stringMatching(/file ended at byte/) }));
    r.close();
  });

  it("reads tensors beyond 4 GiB of a sparse file without reading the rest", () => {
    const big = 5 * 2 ** 30 + 3;
    const header = JSON.stringify({
      huge: { dtype: "U8", shape: [big], data_offsets: [0, big] },
      tail: { dtype: "F32", shape: [2], data_offsets: [big, big + 8] },
    });
    const p = freshPath("sparse");
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(header.length), true);
    const fd = openSync(p, "w");
    const dataOffset = 8 + header.length;
    try {
      writeSync(fd, prefix);
      writeSync(fd, header);
      ftruncateSync(fd, dataOffset + big + 8);
      writeSync(fd, new Uint8Array(new Float32Array([1.5, -2]).buffer), 0, 8, dataOffset + big);
      writeSync(fd, new Uint8Array([7]), 0, 1, dataOffset + 2 ** 32 + 1);
    } finally {
      closeSync(fd);
    }
    try {
      for (const mode of ["stream", "mmap"] as const) {
        const r = SafetensorsReader.open(p, { mode });
        expect(r.fileSize).toBe(dataOffset + big + 8);
        const tail = r.read("tail");
        expect(Array.from(new Float32Array(tail.buffer))).toEqual([1.5, -2]);
        if (mode === "mmap" && big > MAX_MAPPING_BYTES) {
          // One buffer cannot hold 5 GiB before Node 22: a clear error, not a crash.
          expect(() => r.view("huge")).toThrow(/"huge": 5368709123 bytes do not fit in one mapping/);
        } else if (mode === "mmap") {
          const v = r.view("huge");
          expect(v.length).toBe(big);
          expect(v[2 ** 32 + 1]).toBe(7);
          expect(v[2 ** 32]).toBe(0);
        }
        r.close();
      }
    } finally {
      rmSync(p);
    }
  });
});

describe("hand-assembled files", () => {
  /** prefix + header text + data, exactly as the spec lays them out. */
  function assemble(header: string, data: number[]): Uint8Array {
    const h = new TextEncoder().encode(header);
    const out = new Uint8Array(8 + h.length + data.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
    out.set(h, 8);
    out.set(data, 8 + h.length);
    return out;
  }

  it("parses a file written by hand from the spec (odd header length, trailing spaces, metadata last)", () => {
    // I32 [2, 2] = [[1, -2], [256, 65536]] little-endian, then BF16 [2] = [1.0, -2.0] (0x3f80, 0xc000),
    // then an empty F16 [0] and a U8 scalar.
    const header =
      '{"w":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]},' +
      '"e":{"dtype":"F16","shape":[0],"data_offsets":[20,20]},"s":{"dtype":"U8","shape":[],"data_offsets":[20,21]},' +
      '"__metadata__":{"format":"pt"}}   ';
    expect((8 + header.length) % 8).not.toBe(0);
    const bytes = assemble(header, [1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0, 0, 1, 0, 0x80, 0x3f, 0x00, 0xc0, 42]);
    const p = freshPath("hand");
    writeFileSync(p, bytes);
    for (const mode of ["stream", "mmap"] as const) {
      const r = SafetensorsReader.open(p, { mode });
      expect(r.dataOffset).toBe(8 + header.length);
      expect(r.metadata).toEqual({ format: "pt" });
      expect(r.names()).toEqual(["w", "b", "e", "s"]);
      expect(r.entry("w")).toEqual({ name: "w", dtype: "i32", shape: [2, 2], begin: 0, end: 16 });
      expect(Array.from(new Int32Array(r.read("w").buffer))).toEqual([1, -2, 256, 65536]);
      expect(Array.from(new Uint16Array(r.read("b").buffer))).toEqual([0x3f80, 0xc000]);
      expect(r.entry("e")).toMatchObject({ dtype: "f16", shape: [0] });
      expect(r.read("e").length).toBe(0);
      expect(r.entry("s").shape).toEqual([]);
      expect(Array.from(r.read("s"))).toEqual([42]);
      r.close();
    }
  });

  it("accepts gaps between tensors and reads around them", () => {
    const header = '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[5,7]}}';
    const p = freshPath("gap");
    writeFileSync(p, assemble(header, [1, 2, 99, 99, 99, 3, 4]));
    const r = SafetensorsReader.open(p);
    expect(Array.from(r.read("a"))).toEqual([1, 2]);
    expect(Array.from(r.read("b"))).toEqual([3, 4]);
    r.close();
  });

  it("parseSafetensorsHeader validates an in-memory header and lists tensors in data order", () => {
    const text = '{"late":{"dtype":"F64","shape":[1],"data_offsets":[4,12]},"early":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    const h = parseSafetensorsHeader(new TextEncoder().encode(text), 12, "mem");
    expect(h.tensors.map((t) => t.name)).toEqual(["early", "late"]);
    expect(h.metadata).toEqual({});
    expect(() => parseSafetensorsHeader(new TextEncoder().encode(text), 11, "mem")).toThrow(
      expect.objectContaining({ code: "offset-range", path: "mem", tensor: "late" }),
    );
  });
});

describe("writer argument checks", () => {
  const ok = { name: "x", dtype: "f32" as const, shape: [2], data: new Uint8Array(8) };
  const cases: [string, SafetensorsTensorData[], Record<string, string> | undefined, string, RegExp][] = [
    ["empty name", [{ ...ok, name: "" }], undefined, "header-entry", /non-empty/],
    ["reserved name", [{ ...ok, name: "__metadata__" }], undefined, "header-entry", /reserved/],
    ["duplicate name", [ok, ok], undefined, "duplicate-name", /tensor "x".*two tensors/],
    ["short data", [{ ...ok, data: new Uint8Array(7) }], undefined, "size-mismatch", /needs 8 bytes but data holds 7/],
    ["negative dim", [{ ...ok, shape: [-2] }], undefined, "header-entry", /non-negative integers/],
    ["fractional dim", [{ ...ok, shape: [1.5] }], undefined, "header-entry", /non-negative integers/],
    ["unknown dtype", [{ ...ok, dtype: "f33" as DType }], undefined, "unknown-dtype", /f33/],
    ["data not bytes", [{ ...ok, data: new Float32Array(2) as unknown as Uint8Array }], undefined, "header-entry", /Uint8Array/],
    ["non-string metadata", [ok], { a: 1 } as unknown as Record<string, string>, "metadata", /"a" must be a string/],
  ];
  for (const [label, tensors, metadata, code, message] of cases) {
    it(`rejects ${label} before touching the disk`, () => {
      const p = freshPath("bad");
      expect(() => writeSafetensors(p, tensors, metadata)).toThrow(expect.objectContaining({ code, message: expect.stringMatching(message) }));
      expect(readdirSync(dir).filter((f) => f.startsWith(p.slice(dir.length + 1)))).toEqual([]);
    });
  }
});

describe("loadSafetensors / saveSafetensors", () => {
  it("round-trips tensors, including a scalar and a non-contiguous one, and loads a subset", () => {
    const a = tensorFrom(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3] });
    const s = tensorFrom(new Int32Array([-7]), { shape: [] });
    const aT = a.transpose(0, 1); // [3, 2], a non-contiguous view
    expect(aT.isContiguous).toBe(false);
    const p = freshPath("tensors");
    saveSafetensors(p, new Map<string, Tensor>([["a", a], ["s", s], ["aT", aT]]), { who: "test" });
    const header = SafetensorsReader.open(p);
    expect(header.metadata).toEqual({ who: "test" });
    header.close();

    for (const mode of ["stream", "mmap"] as const) {
      const loaded = loadSafetensors(p, { mode });
      expect([...loaded.keys()]).toEqual(["a", "s", "aT"]);
      expect(loaded.get("a")!.shape).toEqual([2, 3]);
      expect(loaded.get("a")!.dtype).toBe("f32");
      expect(Array.from(loaded.get("a")!.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
      expect(loaded.get("s")!.shape).toEqual([]);
      expect(loaded.get("s")!.dataSync()[0]).toBe(-7);
      expect(loaded.get("aT")!.shape).toEqual([3, 2]);
      expect(Array.from(loaded.get("aT")!.dataSync())).toEqual([1, 4, 2, 5, 3, 6]);
      for (const t of loaded.values()) t.dispose();
    }
    const subset = loadSafetensors(p, { names: ["s"] });
    expect([...subset.keys()]).toEqual(["s"]);
    subset.get("s")!.dispose();
    expect(() => loadSafetensors(p, { names: ["s", "missing"] })).toThrow(expect.objectContaining({ code: "not-found", tensor: "missing" }));
    for (const t of [aT, a, s]) t.dispose();
  });

  it("round-trips an empty tensor", () => {
    const e = Tensor.empty([0, 4], "bf16");
    const p = freshPath("tensors-empty");
    saveSafetensors(p, { e });
    const loaded = loadSafetensors(p);
    expect(loaded.get("e")!.shape).toEqual([0, 4]);
    expect(loaded.get("e")!.dtype).toBe("bf16");
    loaded.get("e")!.dispose();
    e.dispose();
  });
});
