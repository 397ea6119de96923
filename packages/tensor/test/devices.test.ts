// Devices are an open registry: names registered by the backend that owns them, families of
// indexed devices, errors that name the op, the device and what to do.
import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";

// The tests below run in order and share the registry of this file's module graph.

/**
 * A toy backend family: devices `toy:0` and `toy:1` on CPU-reachable storage. The family's one
 * kernel (`add`, registered under `toy`) serves both devices; `mul` exists on `toy:1` only.
 * Every kernel writes its output on the inputs' own device and logs (op, device).
 */
const calls: string[] = [];
let toyRegistrations = 0;

function toyBinary(op: string, f: (a: number, b: number) => number): T.Kernel {
  return ([a, b]) => {
    calls.push(`${op}@${a!.device}`);
    expect(a!.device).toBe(b!.device);
    // A toy kernel computes on host copies, through the transfer API like any outside code.
    const [av, bv] = [a!.dataSync(), b!.dataSync()];
    const yv = new Float32Array(av.length);
    for (let i = 0; i < yv.length; i++) yv[i] = f(av[i]!, bv[i]!);
    return [T.tensorFrom(yv, { shape: a!.shape, device: a!.device })];
  };
}

function registerToyBackend(): void {
  toyRegistrations++;
  for (const name of ["toy:0", "toy:1"]) {
    T.registerBackend({ ...T.cpuBackend, name, supportsOp: (op) => T.hasKernel(op, name) });
  }
  T.registerKernel("add", "toy", toyBinary("add", (x, y) => x + y));
  T.registerKernel("mul", "toy:1", toyBinary("mul", (x, y) => x * y));
}

const f32 = (values: number[], device: string) => T.tensor(new Float32Array(values), [values.length], { device });

describe("device names", () => {
  it("parseDevice splits a family and an index, and refuses malformed names", () => {
    expect(T.parseDevice("cpu")).toEqual({ family: "cpu", index: null });
    expect(T.parseDevice("cuda:1")).toEqual({ family: "cuda", index: 1 });
    expect(T.parseDevice("toy:12")).toEqual({ family: "toy", index: 12 });
    for (const bad of ["CUDA", "cuda:", "cuda:01", "cuda:-1", ":0", "", "cuda:1:2"]) {
      expect(() => T.parseDevice(bad)).toThrow(`device '${bad}' is not a device name: expected a lowercase backend name with an optional index, like 'cpu', 'cuda' or 'cuda:1'`);
    }
  });
  it("registration refuses malformed names", () => {
    expect(() => T.registerBackend({ ...T.cpuBackend, name: "Toy" })).toThrow("device 'Toy' is not a device name");
    expect(() => T.setBackendRegistration("toy:0", () => {})).toThrow(
      "setBackendRegistration: 'toy:0' is not a backend family name: expected a lowercase name without an index, like 'cpu' or 'cuda'",
    );
    expect(T.listBackends()).toEqual(["cpu"]);
  });
});

describe("the device registry", () => {
  it("the CPU backend is an entry of the registry, declared by the explicit built-in registration", () => {
    expect(() => T.setBackendRegistration("cpu", () => {})).toThrow("setBackendRegistration: a registration for backend 'cpu' is already declared");
    expect(T.getBackend("cpu")).toBe(T.cpuBackend);
    expect(T.listKernels("cpu")).toContain("matmul");
  });

  it("an unknown device's error names it, lists the available devices and says what to do", () => {
    T.setBackendRegistration("toy", registerToyBackend);
    // Not run yet: the pending family is listed by its name, and asking for another device does not run it.
    expect(() => T.getBackend("gpu")).toThrow(
      "device 'gpu' is not available: no backend is registered for it (available: cpu, toy); use one of the available devices, or register a backend for 'gpu' first (setBackendRegistration)",
    );
    expect(toyRegistrations).toBe(0);
    expect(() => T.zeros([2], { device: "gpu:1" })).toThrow("device 'gpu:1' is not available: no backend is registered for it (available: cpu, toy)");
    expect(() => T.getKernel("add", "gpu")).toThrow("add: device 'gpu' is not available: no backend is registered for it");
    expect(T.hasKernel("add", "gpu")).toBe(false);
    // The shipped cuda family is declared: without a CUDA build (or a GPU) its registration fails, and says why.
    expect(() => T.zeros([2], { device: "cuda:1" })).toThrow(
      /^device 'cuda:1' is not available: registering backend 'cuda' failed: (this build of @modulora\/kernels has no CUDA backend|the CUDA build of the addon sees no GPU)/,
    );
    expect(T.hasKernel("add", "cuda")).toBe(false);
  });

  it("a family registers its devices on first use, once; a missing index lists the ones it has", () => {
    expect(() => T.getBackend("toy:2")).toThrow(
      "device 'toy:2' is not available: backend 'toy' registered no device of that name (available: cpu, toy:0, toy:1); use one of the available devices",
    );
    expect(toyRegistrations).toBe(1);
    expect(T.getBackend("toy:1").name).toBe("toy:1");
    expect(T.listBackends()).toEqual(["cpu", "toy:0", "toy:1"]);
    expect(toyRegistrations).toBe(1);
    // The family's kernels serve each device; a device's own kernels only that device.
    expect(T.listKernels("toy:0")).toEqual(["add"]);
    expect(T.listKernels("toy:1")).toEqual(["add", "mul"]);
    expect(T.getBackend("toy:0").supportsOp("add")).toBe(true);
    expect(T.getBackend("toy:0").supportsOp("mul")).toBe(false);
    expect(T.getBackend("toy:1").supportsOp("mul")).toBe(true);
  });

  it("ops run through the registry on the inputs' device", () => {
    calls.length = 0;
    T.tidy(() => {
      const a0 = f32([1, 2, 3], "toy:0");
      const a1 = f32([1, 2, 3], "toy:1");
      const s0 = T.add(a0, a0);
      const s1 = T.add(a1, a1);
      const p1 = T.mul(a1, f32([4, 5, 6], "toy:1"));
      expect([s0.device, s1.device, p1.device]).toEqual(["toy:0", "toy:1", "toy:1"]);
      expect(Array.from(s0.dataSync())).toEqual([2, 4, 6]);
      expect(Array.from(s1.dataSync())).toEqual([2, 4, 6]);
      expect(Array.from(p1.dataSync())).toEqual([4, 10, 18]);
      expect(calls).toEqual(["add@toy:0", "add@toy:1", "mul@toy:1"]);
      // The CPU is untouched by the toy family.
      expect(Array.from(T.add(f32([1], "cpu"), f32([2], "cpu")).dataSync())).toEqual([3]);
      expect(calls).toHaveLength(3);
    });
  });

  it("op errors name the op, the devices and what to do", () => {
    T.tidy(() => {
      const a0 = f32([1, 2], "toy:0");
      expect(() => T.mul(a0, a0)).toThrow(
        "mul: no kernel is registered for device 'toy:0'; devices with one: cpu, toy:1 — move the inputs to one of them, or register one with registerKernel('mul', 'toy', kernel)",
      );
      expect(() => T.add(a0, f32([1, 2], "toy:1"))).toThrow(
        "add: inputs are on different devices ('toy:0', 'toy:1'); an op runs on one device: create or copy all its inputs on the same device (inputs: [2] f32, [2] f32)",
      );
      expect(() => T.add(f32([1, 2], "cpu"), a0)).toThrow("add: inputs are on different devices ('cpu', 'toy:0')");
    });
  });

  it("duplicates throw", () => {
    expect(() => T.setBackendRegistration("toy", registerToyBackend)).toThrow("setBackendRegistration: a registration for backend 'toy' is already declared");
    expect(() => T.registerBackend({ ...T.cpuBackend, name: "toy:0" })).toThrow("registerBackend: backend 'toy:0' is already registered");
    expect(() => T.registerKernel("add", "toy", () => [])).toThrow("registerKernel: a kernel for op 'add' on backend 'toy' is already registered");
    // A family whose backend was registered directly cannot be declared afterwards.
    T.registerBackend({ ...T.cpuBackend, name: "eager" });
    expect(() => T.setBackendRegistration("eager", () => {})).toThrow("setBackendRegistration: backend 'eager' is already registered");
  });

  it("a registration that fails says why, every time, and queries stay false", () => {
    let runs = 0;
    T.setBackendRegistration("broken", () => {
      runs++;
      throw new Error("libbroken.so: cannot open shared object file");
    });
    const why = "device 'broken' is not available: registering backend 'broken' failed: libbroken.so: cannot open shared object file";
    expect(() => T.getBackend("broken")).toThrow(why);
    expect(() => T.zeros([1], { device: "broken:0" })).toThrow("device 'broken:0' is not available: registering backend 'broken' failed");
    expect(() => T.getBackend("broken")).toThrow(why);
    expect(T.hasKernel("add", "broken")).toBe(false);
    expect(runs).toBe(1);
    // A failed family is not offered as available.
    expect(() => T.getBackend("gpu")).toThrow("(available: cpu, toy:0, toy:1, eager)");
  });
});
