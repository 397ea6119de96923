// The transfer API: bytes move between the host and a device only through dataSync()/data(),
// tensorFrom() and to(); the `sim` device proves it by counting every crossing.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as T from "../src/index.js";

T.registerSimBackend();
const dir = mkdtempSync(join(tmpdir(), "modulora-transfers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `fn` and returns what it counted on `sim`. */
function counted(fn: () => void): T.SimStats {
  T.resetSimStats();
  fn();
  return T.simStats();
}

describe("copies in and out", () => {
  it("tensorFrom copies host data in once, dataSync copies it out once, for every dtype", () => {
    for (const [dtype, data] of [
      ["f32", new Float32Array([1.5, -2, 3])],
      ["f64", new Float64Array([1e300, -0, 2])],
      ["i32", new Int32Array([-7, 0, 2 ** 31 - 1])],
      ["u8", new Uint8Array([0, 255, 9])],
      ["bf16", new Uint16Array([0x3f80, 0xc000, 0x7f80])],
    ] as const) {
      T.tidy(() => {
        let t!: T.Tensor;
        expect(counted(() => (t = T.tensorFrom(data, { dtype, device: "sim" })))).toMatchObject({ hostToDevice: 1, deviceToHost: 0, bytesToDevice: data.byteLength });
        let back!: ArrayLike<number>;
        expect(counted(() => (back = t.dataSync()))).toMatchObject({ hostToDevice: 0, deviceToHost: 1, synchronizations: 1, bytesToHost: data.byteLength });
        expect(back.constructor).toBe(data.constructor);
        expect(Array.from(back)).toEqual(Array.from(data));
      });
    }
  });
  it("numbers are converted on the host; bf16 from numbers is rounded by the device's cast kernel", () => {
    T.tidy(() => {
      expect(Array.from(T.tensorFrom([1, 2, 3], { dtype: "i32", device: "sim" }).dataSync())).toEqual([1, 2, 3]);
      // 1 + 2^-9 rounds to 1 in bf16 (8 bits of mantissa); 3.0 is exact.
      expect(Array.from(T.tensorFrom([1 + 2 ** -9, 3], { dtype: "bf16", device: "sim" }).toFloat64Array())).toEqual([1, 3]);
      expect(() => T.tensorFrom([1.5], { dtype: "i32", device: "sim" })).toThrow("tensorFrom: value 1.5 at index 0 is not an integer, as dtype i32 needs");
      expect(() => T.tensorFrom(new Uint16Array(2))).toThrow("tensorFrom: a Uint16Array holds bf16 or f16 bits; say which with { dtype }");
      expect(() => T.tensorFrom([1, 2, 3], { shape: [2, 2] })).toThrow("tensorFrom: 3 values do not fill shape [2,2]");
    });
  });
  it("await data() resolves with the same copy as dataSync(), and a view is made contiguous on the device first", async () => {
    const t = T.tensorFrom(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3], device: "sim" });
    const v = t.transpose(0, 1);
    T.resetSimStats();
    const got = await v.data();
    expect(Array.from(got)).toEqual([1, 4, 2, 5, 3, 6]);
    expect(T.simStats()).toMatchObject({ deviceToHost: 1, hostToDevice: 0 }); // the transpose is copied on the device
    expect(Array.from(v.dataSync())).toEqual(Array.from(got));
    v.dispose();
    t.dispose();
  });
  it("to() copies across devices through the host and keeps dtype and shape; to the same device is a new handle", () => {
    T.tidy(() => {
      const c = T.tensorFrom(new Float32Array([1, 2, 3, 4]), { shape: [2, 2] });
      let s!: T.Tensor;
      expect(counted(() => (s = c.to("sim")))).toMatchObject({ hostToDevice: 1, deviceToHost: 0 });
      expect([s.device, s.dtype, s.shape]).toEqual(["sim", "f32", [2, 2]]);
      let back!: T.Tensor;
      expect(counted(() => (back = s.to("cpu")))).toMatchObject({ hostToDevice: 0, deviceToHost: 1 });
      expect(Array.from(back.dataSync())).toEqual([1, 2, 3, 4]);
      const same = s.to("sim");
      expect(same).not.toBe(s);
      expect(same.storage).toBe(s.storage);
      expect(() => c.to("nowhere")).toThrow("device 'nowhere' is not available");
    });
  });
  it("item() and toArray() are transfers too (one each)", () => {
    T.tidy(() => {
      const t = T.tensorFrom([2.5], { shape: [], device: "sim" });
      expect(counted(() => expect(t.item()).toBe(2.5))).toMatchObject({ deviceToHost: 1 });
      expect(counted(() => expect(T.add(t, t).toArray()).toEqual([5]))).toMatchObject({ deviceToHost: 1, hostToDevice: 0 });
    });
  });
});

describe("the sim device", () => {
  it("creation ops and compute run as kernels on the device: no transfer at all", () => {
    T.tidy(() => {
      const stats = counted(() => {
        const x = T.randn([4, 8], { seed: 3, device: "sim" });
        const y = T.add(T.matmul(x, T.ones([8, 2], { device: "sim" })), T.arange(0, 2, 1, { device: "sim" }));
        T.sum(T.mul(y, T.zeros([4, 2], { device: "sim" })));
      });
      expect(stats).toEqual({ hostToDevice: 0, deviceToHost: 0, bytesToDevice: 0, bytesToHost: 0, synchronizations: 0 });
    });
  });
  it("matches the CPU bit for bit (same kernels, same Philox numbers)", () => {
    T.tidy(() => {
      const run = (device: string) => {
        const x = T.randn([5, 7], { seed: 11, offset: 3, device });
        const w = T.rand([7, 3], { seed: 12, device, low: -1, high: 1 });
        return T.softmax(T.matmul(x, w), -1).dataSync();
      };
      expect(Array.from(run("sim"))).toEqual(Array.from(run("cpu")));
    });
  });
  it("new storage is poisoned, not zeroed: a kernel that relies on zeros shows NaN here", () => {
    T.tidy(() => {
      const e = T.Tensor.empty([3], "f32", "sim");
      expect(Array.from(e.dataSync()).every(Number.isNaN)).toBe(true);
      expect(Array.from(T.zeros([3], { device: "sim" }).dataSync())).toEqual([0, 0, 0]);
    });
  });
  it("safetensors load onto the device one tensor at a time (one copy in each) and save from it (one copy out each)", () => {
    const p = join(dir, "a.safetensors");
    T.tidy(() => {
      const a = T.tensorFrom(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3], device: "sim" });
      const b = T.tensorFrom(new Int32Array([7]), { shape: [], device: "sim" });
      expect(counted(() => T.saveSafetensors(p, new Map([["a", a.transpose(0, 1)], ["b", b]])))).toMatchObject({ deviceToHost: 2, hostToDevice: 0 });
      for (const mode of ["stream", "mmap"] as const) {
        let loaded!: Map<string, T.Tensor>;
        expect(counted(() => (loaded = T.loadSafetensors(p, { mode, device: "sim" })))).toMatchObject({ hostToDevice: 2, deviceToHost: 0 });
        expect(loaded.get("a")!.device).toBe("sim");
        expect(Array.from(loaded.get("a")!.dataSync())).toEqual([1, 4, 2, 5, 3, 6]);
        expect(Array.from(loaded.get("b")!.dataSync())).toEqual([7]);
      }
    });
  });
  it("the optimizer restores its state onto the parameters' device from tensors saved anywhere", () => {
    T.tidy(() => {
      const p = T.zeros([3], { device: "sim" }).requireGrad();
      const opt = new T.AdamW([p], { lr: 0.1 });
      opt.loadState(4, [T.tensorFrom([1, 2, 3])], [T.tensorFrom([4, 5, 6])]);
      expect(opt.state().step).toBe(4);
      expect(Array.from(opt.state().m[0]!.dataSync())).toEqual([1, 2, 3]);
      expect(opt.state().v[0]!.device).toBe("sim");
      opt.dispose();
    });
  });
  it("exists only once registered: a fresh process without registerSimBackend() has no 'sim'", () => {
    expect(T.listBackends()).toContain("sim");
    const script = `import("${join(__dirname, "../dist/index.js")}").then((T) => {
      console.log(JSON.stringify(T.listBackends()));
      try { T.zeros([1], { device: "sim" }); } catch (e) { console.log(e.message); }
    });`;
    const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 60_000 });
    expect(r.stdout.split("\n").slice(0, 2)).toEqual([
      '["cpu"]',
      "device 'sim' is not available: no backend is registered for it (available: cpu); use one of the available devices, or register a backend for 'sim' first (setBackendRegistration)",
    ]);
  });
});
