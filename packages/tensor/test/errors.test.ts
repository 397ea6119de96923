import { describe, expect, it } from "vitest";
import * as T from "../src/index.js";

describe("bad input names the op, the shapes and the dtypes", () => {
  it("shape mismatches", () => {
    T.tidy(() => {
      const a = T.zeros([2, 3]);
      const b = T.zeros([4, 5]);
      expect(() => T.add(a, b)).toThrow("add: shapes [2,3] and [4,5] do not broadcast (inputs: [2,3] f32, [4,5] f32)");
      expect(() => T.matmul(a, b)).toThrow("matmul: inner dimensions differ: op(a) is [2,3] and op(b) is [4,5] (transA=false, transB=false) (inputs: [2,3] f32, [4,5] f32)");
      expect(() => T.matmul(T.zeros([2, 2, 3]), T.zeros([3, 3, 4]))).toThrow(/matmul: batch dimensions \[2\] and \[3\] do not broadcast/);
      expect(() => T.matmul(T.zeros([3]), a)).toThrow(/matmul: both inputs need at least 2 dimensions/);
      expect(() => T.sum(a, 2)).toThrow("sum: axis 2 is out of range for a tensor of rank 2");
      expect(() => T.sum(a, [0, 0])).toThrow(/sum: axis 0 is listed twice/);
    });
  });
  it("wrong dtypes", () => {
    T.tidy(() => {
      const f = T.zeros([2]);
      const d = T.zeros([2], { dtype: "f64" });
      const i = T.zeros([2], { dtype: "i32" });
      const b = T.zeros([2], { dtype: "bf16" });
      const h = T.zeros([2], { dtype: "f16" });
      expect(() => T.add(f, d)).toThrow("add: inputs have different dtypes (f32, f64); cast one of them with .cast(dtype) (the cast is differentiable) (inputs: [2] f32, [2] f64)");
      expect(() => T.add(f, b)).toThrow("add: inputs have different dtypes (f32, bf16); cast one of them with .cast(dtype)");
      expect(() => T.exp(i)).toThrow("exp: expects f32, f64 or bf16 tensors, got i32 (inputs: [2] i32)");
      expect(() => T.mul(h, h)).toThrow(/mul: expects f32, f64 or bf16 tensors, got f16; f16 is a storage type only, cast it with \.cast\("f32"\) \(or \.cast\("bf16"\)\) first/);
      expect(T.mul(b, b).dtype).toBe("bf16");
      expect(() => (i.requiresGrad = true)).toThrow(/only float tensors can require gradients/);
      expect(() => T.Tensor.empty([2], "f33" as T.DType)).toThrow("unknown dtype 'f33'; known dtypes: f32, f64, bf16, f16, i32, i8, u8, u32");
    });
  });
  it("bad shapes and arguments", () => {
    expect(() => T.zeros([2, -1])).toThrow(/must hold non-negative integers/);
    expect(() => T.zeros([1.5])).toThrow(/must hold non-negative integers/);
    expect(() => T.zeros([1, 1, 1, 1, 1, 1, 1, 1, 1])).toThrow(/at most 8 dimensions/);
    expect(() => T.randn([2], { seed: 0.5 })).toThrow(/seed must be a safe integer/);
    T.tidy(() => {
      const a = T.zeros([2, 2]);
      expect(() => T.scale(a, NaN)).toThrow(/scale: alpha and beta must be finite numbers/);
      expect(() => a.item()).toThrow(/item: item\(\) needs a tensor with one element, this one has 4/);
      expect(() => T.transpose(T.zeros([3]))).toThrow(/transpose: needs a tensor of rank 2 or more/);
    });
  });
  it("the native boundary checks its arguments too", async () => {
    const k = await import("@modulora/kernels");
    expect(() => k.gemm(false, false, 2, 2, 2, 1, new Float32Array(3), 2, 0, new Float32Array(4), 2, 0, 0, new Float32Array(4), 2, 0, 1)).toThrow(/gemm/);
    expect(() => k.allocStorage(-1)).toThrow(/alloc: argument 'bytes'/);
  });
});

describe("backend registry", () => {
  it("capability queries and the kernel list", () => {
    const cpu = T.getBackend("cpu");
    expect(cpu.name).toBe("cpu");
    expect(cpu.supportsOp("matmul")).toBe(true);
    expect(cpu.supportsOp("no-such-op")).toBe(false);
    expect(cpu.supportsDtype("bf16")).toBe(true);
    expect(T.listKernels("cpu")).toEqual(expect.arrayContaining(["add", "matmul", "reduce", "gather", "cast", "unary"]));
    expect(T.listBackends()).toContain("cpu");
  });
  it("duplicates throw; missing kernels and devices say which", () => {
    expect(() => T.registerKernel("matmul", "cpu", () => [])).toThrow("registerKernel: a kernel for op 'matmul' on backend 'cpu' is already registered");
    expect(() => T.registerBackend(T.cpuBackend)).toThrow(/backend 'cpu' is already registered/);
    expect(() => T.getKernel("frobnicate", "cpu")).toThrow("frobnicate: no kernel is registered for device 'cpu' — register one with registerKernel('frobnicate', 'cpu', kernel)");
    expect(() => T.zeros([2], { device: "gpu" })).toThrow(
      "device 'gpu' is not available: no backend is registered for it (available: cpu); use one of the available devices, or register a backend for 'gpu' first (setBackendRegistration)",
    );
    expect(() => T.zeros([2], { device: "cuda" })).toThrow(/^device 'cuda' is not available: registering backend 'cuda' failed: .*(CUDA toolkit|NVIDIA GPU)/);
  });
  it("a new backend plugs in through the registry without touching op code", () => {
    // A toy backend that reuses the CPU's allocator but registers its own 'fill' and 'add' kernels.
    const calls: string[] = [];
    const toy: T.Backend = { ...T.cpuBackend, name: "toy", supportsOp: (op) => op === "add" };
    T.setBackendRegistration("toy", () => {
      T.registerBackend(toy);
      // The toy's kernels work through its own transfer methods (they cannot reach the bytes otherwise).
      T.registerKernel<{ value: number }>("fill", "toy", ([t], { value }) => {
        toy.writeSync(t!.storage.handle, 0, new Uint8Array(new Float32Array(t!.size).fill(value).buffer));
        return [];
      });
      T.registerKernel("add", "toy", ([a, b]) => {
        calls.push("add");
        const [x, y] = [a!.dataSync() as Float32Array, b!.dataSync() as Float32Array];
        return [T.tensorFrom(x.map((v, i) => v + y[i]!), { shape: a!.shape, device: "toy" })];
      });
    });
    T.tidy(() => {
      const a = T.ones([3], { device: "toy" });
      expect(a.device).toBe("toy");
      const y = T.add(a, a);
      expect(calls).toEqual(["add"]);
      expect(() => T.mul(a, a)).toThrow("mul: no kernel is registered for device 'toy'; devices with one: cpu — move the inputs to one of them, or register one with registerKernel('mul', 'toy', kernel)");
      return y.toArray();
    });
  });
});
