// The optqSolve op: core's entry to OPTQ's column solve, dispatched by the kernel registry.
import { describe, expect, it } from "vitest";
import { hasKernel, memory, OPTQ_SOLVE_OP, randn, registerSimBackend, resetSimStats, simStats, tensorFrom, type Tensor } from "@modulora/tensor";
import { optqSolve, optqSolveAsync, type OptqSolution } from "../src/index.js";
import { referenceRoundToNearest } from "../src/testing/index.js";

const OUT = 6;
const IN = 64;

/** A symmetric positive definite H [IN, IN] with strong off-diagonal coupling (f64, row-major). */
function coupledHessian(): Float64Array {
  const h = new Float64Array(IN * IN);
  for (let i = 0; i < IN; i++) for (let j = 0; j < IN; j++) h[i * IN + j] = i === j ? 2 + (i % 5) : 0.9 ** Math.abs(i - j);
  return h;
}

const f64 = (a: Float64Array, device = "cpu") => tensorFrom(a, { shape: [IN, IN], dtype: "f64", device });
const plain = (s: OptqSolution) => ({ codes: Array.from(s.codes), scales: Array.from(s.scales), zeros: Array.from(s.zeros), gIdx: Array.from(s.gIdx) });

describe("optqSolve", () => {
  it("is a kernel of cpu only; other devices (sim) are served from a host copy", () => {
    registerSimBackend();
    expect(hasKernel(OPTQ_SOLVE_OP, "cpu")).toBe(true);
    expect(hasKernel(OPTQ_SOLVE_OP, "sim")).toBe(false);
  });

  it("with H = I there is no error feedback: OPTQ is round-to-nearest on the min-max grid (the plain reference)", () => {
    const w = randn([OUT, IN], { seed: 3 });
    const eye = new Float64Array(IN * IN);
    for (let i = 0; i < IN; i++) eye[i * IN + i] = 1;
    const h = f64(eye);
    const s = optqSolve(w, h, { bits: 4, groupSize: 16 });
    const ref = referenceRoundToNearest(w.dataSync() as Float32Array, OUT, IN, 4, 16);
    const groups = IN / 16;
    for (let j = 0; j < OUT; j++)
      for (let i = 0; i < IN; i++) {
        const k = j * groups + Math.floor(i / 16);
        expect(s.scales[k]! * (s.codes[j * IN + i]! - s.zeros[k]!)).toBeCloseTo(ref[j * IN + i]!, 6);
      }
    expect(Array.from(s.gIdx)).toEqual(Array.from({ length: IN }, (_, i) => Math.floor(i / 16)));
    w.dispose();
    h.dispose();
  });

  it("hessianScale scales H inside the op, the async solve gives the sync one bit for bit, and the inputs stay unchanged", async () => {
    const w = randn([OUT, IN], { seed: 5 });
    const hv = coupledHessian();
    const h = f64(hv);
    const scaled = f64(hv.map((v) => v * (2 / 7)));
    const opts = { bits: 3, groupSize: 16, actOrder: true, blockSize: 8 };
    const before = memory().tensors;
    const a = optqSolve(w, h, { ...opts, hessianScale: 2 / 7 });
    const b = optqSolve(w, scaled, opts);
    const c = await optqSolveAsync(w, h, { ...opts, hessianScale: 2 / 7 });
    expect(memory().tensors).toBe(before); // the op's outputs are freed once copied out
    expect(plain(a)).toEqual(plain(b));
    expect(plain(c)).toEqual(plain(a));
    expect(Array.from(h.dataSync() as Float64Array)).toEqual(Array.from(hv));
    // Act-order: the coupled H reorders columns, so g_idx is not ⌊i / 16⌋; error feedback changes codes versus H = I.
    expect(Array.from(a.gIdx).some((g, i) => g !== Math.floor(i / 16))).toBe(true);
    for (const t of [w, h, scaled]) t.dispose();
  });

  it("on sim (no kernel) W and H are copied out once each and the result is cpu's, bit for bit; errors name the op", async () => {
    registerSimBackend();
    const hv = coupledHessian();
    const run = async (device: string, async: boolean) => {
      const w = randn([OUT, IN], { seed: 9, device });
      const h = f64(hv, device);
      if (device === "sim") resetSimStats();
      const s = async ? await optqSolveAsync(w, h, { bits: 4, groupSize: 32 }) : optqSolve(w, h, { bits: 4, groupSize: 32 });
      const moved = device === "sim" ? simStats().deviceToHost : 0;
      w.dispose();
      h.dispose();
      return { s: plain(s), moved };
    };
    const cpu = await run("cpu", false);
    for (const async of [false, true]) {
      const sim = await run("sim", async);
      expect(sim.moved).toBe(2);
      expect(sim.s).toEqual(cpu.s);
    }
    const w = randn([OUT, IN], { seed: 9 });
    const hSim = f64(hv, "sim");
    expect(() => optqSolve(w, hSim, { bits: 4, groupSize: 32 })).toThrow("optqSolve: W is on 'cpu' and H on 'sim'; put both on one device");
    hSim.dispose();
    // Not positive definite after damping: the native solver's error, which says what to change.
    const bad: Tensor = f64(new Float64Array(IN * IN).map((_, k) => (k % (IN + 1) === 0 ? (k === 0 ? -1 : 1) : 0)));
    expect(() => optqSolve(w, bad, { bits: 4, groupSize: 32, percdamp: 0 })).toThrow(/optqQuantize: the Hessian is not positive definite after damping with percdamp = 0; pass a larger percdamp/);
    await expect(optqSolveAsync(w, bad, { bits: 4, groupSize: 32, percdamp: 0 })).rejects.toThrow(/not positive definite/);
    const h = f64(hv);
    expect(() => optqSolve(w, h, { bits: 5, groupSize: 32 })).toThrow(/optqQuantize/);
    for (const t of [w, bad, h]) t.dispose();
  });
});
