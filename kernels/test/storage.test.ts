import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  allocBlock, allocScratch, allocStorage, cpuInfo, getNumThreads, hasCuda, nativeMemoryStats, releaseScratch, releaseStorage, resetPeakMemory,
  setIsa, setNumThreads, trimAllocatorCache, addonCandidates, ADDON_PATH_ENV, cudaAddon, cudaInfo, hasCudaBuild,
} from "../ts/index.js";

describe("native storage", () => {
  it("allocates zero-filled, 64-byte aligned memory and counts it", () => {
    const before = nativeMemoryStats();
    const b = allocStorage(1000);
    expect(b.byteLength).toBe(1000);
    expect(new Uint8Array(b).every((v) => v === 0)).toBe(true);
    const now = nativeMemoryStats();
    expect(now.bytes - before.bytes).toBe(1000);
    expect(now.count - before.count).toBe(1);
    expect(releaseStorage(b)).toBe(true);
    expect(b.byteLength).toBe(0); // detached: stale views read as empty
    expect(releaseStorage(b)).toBe(false); // idempotent
    expect(nativeMemoryStats().bytes).toBe(before.bytes);
  });
  it("reuses freed blocks through the caching allocator, zero-filled again", () => {
    trimAllocatorCache();
    const a = allocStorage(1 << 20);
    new Float32Array(a).fill(7);
    releaseStorage(a);
    expect(nativeMemoryStats().cachedBytes).toBeGreaterThanOrEqual(1 << 20);
    const b = allocStorage(1 << 20);
    expect(nativeMemoryStats().cachedBytes).toBe(0);
    expect(new Float32Array(b).every((v) => v === 0)).toBe(true);
    releaseStorage(b);
    expect(trimAllocatorCache()).toBeGreaterThanOrEqual(1 << 20);
    expect(nativeMemoryStats().cachedBytes).toBe(0);
  });
  it("without zero-fill, a recycled block keeps its old bytes (no memset on the hot path)", () => {
    trimAllocatorCache();
    const a = allocStorage(1 << 20);
    new Float32Array(a).fill(7);
    releaseStorage(a);
    const b = allocStorage(1 << 20, false);
    expect(b.byteLength).toBe(1 << 20);
    expect(new Float32Array(b)[12345]).toBe(7); // the same block, untouched
    releaseStorage(b);
    trimAllocatorCache();
  });
  it("with a small cap, the least recently freed blocks make room, and released pages leave the process", () => {
    // A child process, because the cap is read once from MODULORA_ALLOCATOR_CACHE_MB.
    const addon = [process.env[ADDON_PATH_ENV], ...addonCandidates()].find((p): p is string => !!p && existsSync(p))!;
    const script = `
      const m = require(${JSON.stringify(addon)});
      const MiB = 1 << 20;
      const rss = () => Number(require("fs").readFileSync("/proc/self/statm", "utf8").split(" ")[1]) * 4096;
      const out = {};
      const ones = [0, 1, 2, 3].map(() => m.alloc(MiB));
      ones.forEach((b) => new Uint8Array(b).fill(1));
      ones.forEach((b) => m.release(b));
      out.afterOnes = m.memoryStats().cachedBytes;                // 4 x 1 MiB, the cap
      const two = m.alloc(2 * MiB); m.release(two);
      out.afterTwo = m.memoryStats().cachedBytes;                 // two oldest 1 MiB blocks evicted
      const a = m.alloc(MiB), b = m.alloc(MiB);
      out.afterTwoOnes = m.memoryStats().cachedBytes;             // the remaining 1 MiB blocks reused
      const c = m.alloc(MiB);
      out.afterThird = m.memoryStats().cachedBytes;               // none left: a fresh block
      [a, b, c].forEach((x) => m.release(x));
      m.trimCache();
      const before = rss();
      const big = m.alloc(64 * MiB); new Uint8Array(big).fill(1);
      const touched = rss();
      m.release(big);                                             // over the cap: unmapped at once
      out.bigResident = touched - before;
      out.bigReleased = touched - rss();
      out.bigCached = m.memoryStats().cachedBytes;
      console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", env: { ...process.env, MODULORA_ALLOCATOR_CACHE_MB: "4" } });
    expect(r.status, r.stderr).toBe(0);
    const o = JSON.parse(r.stdout) as Record<string, number>;
    const MiB = 1 << 20;
    expect(o).toMatchObject({ afterOnes: 4 * MiB, afterTwo: 4 * MiB, afterTwoOnes: 2 * MiB, afterThird: 2 * MiB, bigCached: 0 });
    expect(o["bigResident"]).toBeGreaterThan(60 * MiB);
    expect(o["bigReleased"]).toBeGreaterThan(60 * MiB);
  });
  it("a StorageBlock is a native object owning one block: buffer, byteLength, release() once, counted", () => {
    const before = nativeMemoryStats();
    const b = allocBlock(4096);
    expect(b.byteLength).toBe(4096);
    expect(b.buffer).toBe(b.buffer); // one buffer, not a new one per access
    expect(new Uint8Array(b.buffer).every((v) => v === 0)).toBe(true);
    new Float32Array(b.buffer)[3] = 2.5;
    expect(new Float32Array(b.buffer)[3]).toBe(2.5);
    expect(nativeMemoryStats().bytes - before.bytes).toBe(4096);
    expect(b.released).toBe(false);
    expect(b.release()).toBe(true);
    expect([b.released, b.buffer.byteLength, b.release()]).toEqual([true, 0, false]); // detached; idempotent
    expect(nativeMemoryStats().bytes).toBe(before.bytes);
    const empty = allocBlock(0, false);
    expect([empty.byteLength, empty.release()]).toEqual([0, true]);
    const Ctor = allocBlock(8).constructor as new (...a: unknown[]) => unknown;
    expect(() => new Ctor(-1, true)).toThrow("StorageBlock: expected (bytes, zeroFill) with bytes an integer in [0, 2^40] and zeroFill a boolean");
    expect(() => new Ctor(8)).toThrow(TypeError);
  });
  it("empty storage owns no native memory", () => {
    const before = nativeMemoryStats();
    const e = allocStorage(0);
    expect(e.byteLength).toBe(0);
    expect(releaseStorage(e)).toBe(false);
    expect(nativeMemoryStats().bytes).toBe(before.bytes);
  });
  it("scratch is counted separately and freed by releaseScratch", () => {
    resetPeakMemory();
    const before = nativeMemoryStats();
    const s = allocScratch(4096);
    expect(nativeMemoryStats().scratchBytes - before.scratchBytes).toBe(4096);
    expect(nativeMemoryStats().peakBytes).toBeGreaterThanOrEqual(before.bytes + 4096);
    expect(releaseScratch(s)).toBe(true);
    expect(nativeMemoryStats().scratchBytes).toBe(before.scratchBytes);
  });
  it("bad arguments name the op", () => {
    expect(() => allocStorage(-1)).toThrow(/^alloc: argument 'bytes' = -1 is outside/);
    expect(() => allocStorage(1.5)).toThrow(/alloc: argument 'bytes' must be an integer/);
    expect(() => (allocStorage as (b: number, z: unknown) => ArrayBuffer)(8, "no")).toThrow(/alloc: argument 'zeroFill' must be a boolean/);
    expect(() => releaseStorage(new ArrayBuffer(8))).toThrow(/release: this ArrayBuffer was not allocated by alloc\(\)/);
    expect(() => releaseScratch(new ArrayBuffer(8))).toThrow(/releaseScratch: this ArrayBuffer was not allocated by allocScratch\(\)/);
    expect(() => (releaseStorage as (x: unknown) => boolean)(3)).toThrow(/release: argument 'buffer' must be an ArrayBuffer/);
  });
});

describe("threads, ISA and build info", () => {
  it("the pool size can be changed and restored", () => {
    const n = getNumThreads();
    setNumThreads(3);
    expect(getNumThreads()).toBe(3);
    setNumThreads(n);
    expect(getNumThreads()).toBe(n);
    expect(() => setNumThreads(0)).toThrow(/setNumThreads: argument 'n' = 0 is outside \[1, 1024\]/);
  });
  it("reports the ISA and refuses paths the CPU lacks", () => {
    const info = cpuInfo();
    expect(["generic", "avx2", "avx512"]).toContain(info.best);
    setIsa("generic");
    expect(cpuInfo().active).toBe("generic");
    setIsa(info.best);
    expect(cpuInfo().active).toBe(info.best);
    expect(() => setIsa("sse9" as never)).toThrow("setIsa: unknown ISA 'sse9'; use generic, avx2 or avx512");
    if (info.best !== "avx512") expect(() => setIsa("avx512")).toThrow(/does not support 'avx512'/);
  });
  it("says whether this build has the CUDA backend, and where it looks for the addon", () => {
    // AUTO builds CUDA wherever a toolkit with cuBLAS is found, GPU or not, so both kinds of build occur.
    expect(hasCuda()).toBe(hasCudaBuild());
    if (hasCudaBuild()) {
      const info = cudaInfo();
      expect(info.runtimeVersion).toBeGreaterThanOrEqual(12000);
      if (!info.available) expect(info.reason).toMatch(/cuda\w+ failed: .+\(cuda\w+\)/);
      else expect(info.devices.length).toBeGreaterThan(0);
    } else {
      expect(cudaInfo()).toMatchObject({ available: false, reason: "this build of the addon has no CUDA backend", devices: [] });
      expect(() => cudaAddon()).toThrow(/has no CUDA backend .*MODULORA_CUDA=ON makes a missing toolkit a configure error/);
    }
    const prev = process.env[ADDON_PATH_ENV];
    process.env[ADDON_PATH_ENV] = "/nowhere/modulora_kernels.node";
    expect(addonCandidates()).toEqual(["/nowhere/modulora_kernels.node"]);
    if (prev === undefined) delete process.env[ADDON_PATH_ENV];
    else process.env[ADDON_PATH_ENV] = prev;
    expect(addonCandidates().some((p) => p.endsWith("modulora_kernels.node"))).toBe(true);
  });
});
