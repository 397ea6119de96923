import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_MAPPING_BYTES, mmapFile, unmapFile } from "../ts/io.js";

let dir: string;
let file: string;
let content: Uint8Array;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "modulora-io-"));
  file = join(dir, "data.bin");
  content = new Uint8Array(3 * 4096 + 100);
  for (let i = 0; i < content.length; i++) content[i] = (i * 131 + 7) & 0xff;
  writeFileSync(file, content);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("mmapFile / unmapFile", () => {
  it("maps an unaligned range across page boundaries", () => {
    const offset = 4097;
    const length = 5000;
    const buf = mmapFile(file, offset, length);
    expect(buf.byteLength).toBe(length);
    expect(new Uint8Array(buf)).toEqual(content.subarray(offset, offset + length));
    expect(unmapFile(buf)).toBe(true);
  });

  it("maps up to the exact end of the file", () => {
    const buf = mmapFile(file, 5, content.length - 5);
    const view = new Uint8Array(buf);
    expect(view[view.length - 1]).toBe(content[content.length - 1]);
    expect(view[0]).toBe(content[5]);
    unmapFile(buf);
  });

  it("is copy-on-write: writes through the view change neither the file nor a second mapping", () => {
    const a = mmapFile(file, 10, 100);
    const b = mmapFile(file, 10, 100);
    new Uint8Array(a).fill(0xee);
    expect(new Uint8Array(a)[0]).toBe(0xee);
    expect(new Uint8Array(b)).toEqual(content.subarray(10, 110));
    expect(readFileSync(file).subarray(10, 110)).toEqual(Buffer.from(content.subarray(10, 110)));
    unmapFile(a);
    unmapFile(b);
  });

  it("unmap detaches the buffer and every view over it; a second unmap returns false", () => {
    const buf = mmapFile(file, 1, 64);
    const view = new Uint8Array(buf, 8, 16);
    expect(unmapFile(buf)).toBe(true);
    expect(buf.byteLength).toBe(0);
    expect(view.length).toBe(0);
    expect(view[0]).toBeUndefined();
    expect(unmapFile(buf)).toBe(false);
  });

  it("returns an empty buffer for length 0 (also at end of file)", () => {
    const a = mmapFile(file, 0, 0);
    expect(a.byteLength).toBe(0);
    const b = mmapFile(file, content.length, 0);
    expect(b.byteLength).toBe(0);
    expect(unmapFile(a)).toBe(true);
    expect(unmapFile(a)).toBe(false);
  });

  it("maps beyond 4 GiB in a sparse file", () => {
    const sparse = join(dir, "sparse.bin");
    const fd = openSync(sparse, "w");
    const offset = 2 ** 32 + 123;
    try {
      ftruncateSync(fd, offset + 4096);
      writeSync(fd, Buffer.from([1, 2, 3, 4]), 0, 4, offset);
    } finally {
      closeSync(fd);
    }
    const buf = mmapFile(sparse, offset - 2, 8);
    expect(Array.from(new Uint8Array(buf))).toEqual([0, 0, 1, 2, 3, 4, 0, 0]);
    unmapFile(buf);
    // One mapping of the whole 4 GiB + 4219 bytes: beyond Node's buffer cap before Node 22.
    const whole = offset + 4096;
    if (whole > MAX_MAPPING_BYTES) {
      expect(() => mmapFile(sparse, 0, whole)).toThrow(/^mmapFile: cannot map \d+ bytes of '.*sparse\.bin' as one ArrayBuffer/);
      const capped = mmapFile(sparse, whole - MAX_MAPPING_BYTES, MAX_MAPPING_BYTES);
      expect(new Uint8Array(capped)[MAX_MAPPING_BYTES - 4093]).toBe(4);
      unmapFile(capped);
    } else {
      const all = mmapFile(sparse, 0, whole);
      expect(new Uint8Array(all)[offset + 3]).toBe(4);
      unmapFile(all);
    }
    rmSync(sparse);
  });

  it("names mmapFile, the path and the reason for a missing file", () => {
    const missing = join(dir, "nope.bin");
    expect(() => mmapFile(missing, 0, 1)).toThrow(/^mmapFile: .*nope\.bin.*No such file or directory/);
  });

  it("rejects a range beyond the end of the file", () => {
    expect(() => mmapFile(file, content.length - 10, 11)).toThrow(RangeError);
    expect(() => mmapFile(file, content.length - 10, 11)).toThrow(/^mmapFile: .*data\.bin.*beyond the end of the file/);
    expect(() => mmapFile(file, content.length + 1, 0)).toThrow(/mmapFile/);
  });

  it("rejects a directory and bad arguments", () => {
    expect(() => mmapFile(dir, 0, 1)).toThrow(/mmapFile: .*not a regular file/);
    expect(() => mmapFile(file, -1, 1)).toThrow(RangeError);
    expect(() => mmapFile(file, 0.5, 1)).toThrow(TypeError);
    expect(() => (mmapFile as (...a: unknown[]) => ArrayBuffer)(42, 0, 1)).toThrow(/mmapFile: argument 'path'/);
  });

  it("refuses to unmap a buffer it did not map", () => {
    expect(() => unmapFile(new ArrayBuffer(16))).toThrow(/unmapFile: .*not returned by mmapFile/);
    expect(() => (unmapFile as (b: unknown) => boolean)(new Uint8Array(4))).toThrow(TypeError);
  });
});
