// The backend conformance suite on `cpu` (one `it` per case of the table), checks that the
// suite itself catches wrong results, its command line, and the bundled runner under plain node.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { addonCandidates } from "@modulora/kernels";
import { add, cast, dropout, keep, listQuantFormats, registerSimBackend, scale, sub, tensorFrom, type Tensor } from "../src/index.js";
import {
  AFFINE_CASE_BITS, CODEBOOK_CASE_BITS, CaseRng, CONFORMANCE_CASES, FINITE_DIFFERENCE_ERROR, NOT_AT_BF16, caseName, compareArrays, finiteDifferenceGrad, formatResult, roundToDType, kernelsWithoutCase, quantKernelsWithoutCase, runBackendConformance, runConformanceCase, runConformanceCli,
  type ConformanceCase,
} from "../src/conformance/index.js";
import { bitsToNumber16, f16Bits } from "../src/conformance/reference.js";

process.env.MODULORA_NUM_THREADS ??= "1";

// Every backend CI can run. The simulated device joins this list once it is registered here
// (issue 14, item 3: registerSimBackend()).
const BACKENDS = ["cpu", "sim"];
registerSimBackend();

for (const backend of BACKENDS) {
  describe(`backend conformance: ${backend}`, () => {
    for (const c of CONFORMANCE_CASES) {
      it(caseName(c), () => {
        const r = runConformanceCase(c, backend);
        expect(r.passed, formatResult(r)).toBe(true);
      });
    }
    it(`every kernel registered for ${backend} is run by a case, and every entry of its quantized format table`, () => {
      expect(kernelsWithoutCase(backend)).toEqual([]);
      expect(listQuantFormats(backend)).toEqual(["affine", "codebook"]);
      expect(quantKernelsWithoutCase(backend)).toEqual([]);
    });
  });
}

const byName = (name: string): ConformanceCase => {
  const c = CONFORMANCE_CASES.find((k) => caseName(k) === name);
  if (!c) throw new Error(`no case named '${name}'`);
  return c;
};

// One f32 case per op family, with non-zero outputs and gradients.
const REPRESENTATIVE = [
  "exp f32 [127]",
  "mul f32 [3,1,33] [17,1]",
  "sum f32 [3,4099] axes=[1]",
  "matmul f32 [17,33] [33,3]",
  "softmax f32 [3,4099] axis=-1",
  "crossEntropy f32 [5,17] mean ignored 1/5",
  "rmsnorm f32 [3,17]",
  "rope f32 [2,3,2,16] theta=5e5 positions [B,T]",
  "swiglu f32 [3,17]",
  "attention f32 q[2,7,4,4] kv[2,7,2,4] causal G=2",
  "gather f32 [17,5] axis=0 idx [3,4]",
  "quantMatmul f32 affine b4 g32 zeros=int x[5,96] w[37,96]",
  "quantMatmul f32 codebook b4 block64 absmax=dq x[5,128] w[37,128]",
];

describe("the references", () => {
  it("every analytic reference gradient agrees with finite differences of its reference (f64 cases up to 700 input elements)", () => {
    let checked = 0;
    for (const c of CONFORMANCE_CASES) {
      // Casts round (a step function); a max/min over hundreds of values has near-ties within the
      // difference step (its reference gradient is a mask); the 1e±20 RMSNorm rows are far below the step.
      if (c.dtype !== "f64" || !c.referenceGrad || ["cast", "max", "min"].includes(c.op) || c.label.includes("x ~")) continue;
      const inputs = c.inputs(new CaseRng(7));
      if (!inputs.some((x) => x.grad) || inputs.reduce((n, x) => n + x.data.length, 0) > 700) continue;
      if (inputs.some((x) => x.grad && x.data.some((v) => !Number.isFinite(v)))) continue; // -inf logits: no difference quotient
      const xs = inputs.map((x) => roundToDType(x.data, x.dtype));
      const out = c.reference(xs.map((x) => x.slice()));
      const w = new CaseRng(8).uniform((Array.isArray(out) ? out[0]! : out).length);
      const analytic = c.referenceGrad(xs.map((x) => x.slice()), w);
      inputs.forEach((x, i) => {
        if (!x.grad) return;
        const fd = finiteDifferenceGrad(c, xs.map((v) => v.slice()), i, w);
        const check = compareArrays(`grad${i}`, fd, analytic[i]!, FINITE_DIFFERENCE_ERROR);
        expect(check.passed, `${caseName(c)} ${check.what}: ${check.detail}`).toBe(true);
        checked++;
      });
    }
    expect(checked).toBeGreaterThan(150);
  });
  it("the quantized cases' reference gradients agree with finite differences of their references", () => {
    let checked = 0;
    for (const c of CONFORMANCE_CASES) {
      if (c.op !== "quantMatmul" || !c.label.includes("x[3,")) continue;
      const inputs = c.inputs(new CaseRng(7));
      const xs = inputs.map((x) => roundToDType(x.data, x.dtype));
      const w = new CaseRng(8).uniform((c.reference(xs.map((x) => x.slice())) as Float64Array).length);
      const analytic = c.referenceGrad!(xs.map((x) => x.slice()), w);
      expect(analytic.slice(1).every((g) => g === null)).toBe(true); // only x takes a gradient
      const check = compareArrays("grad0", finiteDifferenceGrad(c, xs.map((v) => v.slice()), 0, w), analytic[0]!, FINITE_DIFFERENCE_ERROR);
      expect(check.passed, `${caseName(c)}: ${check.detail}`).toBe(true);
      checked++;
    }
    expect(checked).toBe(12); // affine g=row at 4 widths, codebook block20 at 4 widths × 2 absmax kinds
  });
});

describe("the suite catches wrong kernels", () => {
  it("a forward off by a few times the bound fails, for each op family", () => {
    for (const name of REPRESENTATIVE) {
      const c = byName(name);
      const bound = runConformanceCase(c, "cpu").checks[0]!.bound || 2 ** -24;
      const wrong: ConformanceCase = { ...c, forward: (xs, d) => { const y = c.forward(xs, d) as Tensor; return add(y, scale(y, 4 * bound)); } };
      const r = runConformanceCase(wrong, "cpu");
      expect(r.passed, name).toBe(false);
      expect(r.checks[0]!.passed, name).toBe(false);
    }
  });
  it("a backward off by a few times the bound fails while the forward passes, for each op family", () => {
    for (const name of REPRESENTATIVE) {
      const c = byName(name);
      const ok = runConformanceCase(c, "cpu");
      const gradBound = Math.max(...ok.checks.filter((k) => k.what.startsWith("grad")).map((k) => k.bound));
      // y + δ·(y − detach(y)) is y itself, with every gradient scaled by 1 + δ.
      const wrong: ConformanceCase = {
        ...c,
        forward: (xs, d) => { const y = c.forward(xs, d) as Tensor; return add(y, scale(sub(y, y.detach()), 4 * gradBound)); },
      };
      const r = runConformanceCase(wrong, "cpu");
      expect(r.checks.find((k) => k.what === "out0")!.passed, name).toBe(true);
      expect(r.checks.filter((k) => k.what.startsWith("grad")).every((k) => !k.passed), name).toBe(true);
    }
  });
  it("without an analytic reference gradient, finite differences of the reference judge the backward", () => {
    const c = byName("attention f32 q[2,7,4,4] kv[2,7,2,4] causal G=2");
    const fd: ConformanceCase = { ...c, referenceGrad: undefined };
    const ok = runConformanceCase(fd, "cpu");
    expect(ok.passed, formatResult(ok)).toBe(true);
    const grads = ok.checks.filter((k) => k.what.startsWith("grad"));
    expect(grads.map((k) => k.what)).toEqual(["grad0", "grad1", "grad2"]);
    const wrong = runConformanceCase({ ...fd, forward: (xs, d) => { const y = c.forward(xs, d) as Tensor; return add(y, scale(sub(y, y.detach()), 4 * grads[0]!.bound)); } }, "cpu");
    expect(wrong.checks.filter((k) => k.what.startsWith("grad")).every((k) => !k.passed)).toBe(true);
  });
  it("a dropout mask one counter off fails", () => {
    const c = byName("dropout f32 [3,33] p=0.1 seed=7 offset=0");
    const r = runConformanceCase({ ...c, forward: ([x]) => dropout(x!, 0.1, { seed: 7, offset: 1 }) }, "cpu");
    expect(r.passed).toBe(false);
    expect(r.checks[0]!.maxRelError).toBeGreaterThan(0.1);
  });
  it("an exact case fails on a one-ulp difference", () => {
    const c = byName("contiguous f32 [17,33]ᵀ");
    const r = runConformanceCase({ ...c, forward: (xs, d) => scale(c.forward(xs, d) as Tensor, 1 + 2 ** -23) }, "cpu");
    expect(r.passed).toBe(false);
    expect(r.error).toContain("out0: element");
  });
  it("a case that throws or leaks a tensor fails with the reason", () => {
    const c = byName("exp f32 [127]");
    const thrown = runConformanceCase({ ...c, forward: () => { throw new Error("no kernel for exp"); } }, "cpu");
    expect(thrown.passed).toBe(false);
    expect(thrown.error).toBe("no kernel for exp");
    const leaky = runConformanceCase({ ...c, forward: (xs, d) => { keep(scale(xs[0]!, 2)); return c.forward(xs, d); } }, "cpu");
    expect(leaky.passed).toBe(false);
    expect(leaky.error).toBe("leaked 1 tensor handle(s)");
  });
  it("a kernel without a case is reported", () => {
    const withoutAttention = CONFORMANCE_CASES.filter((c) => c.op !== "attention");
    expect(kernelsWithoutCase("cpu", withoutAttention)).toEqual(["attention", "attentionBackward"]);
  });
  it("a quantized format (or one entry of it) without a case is reported", () => {
    const withoutCodebook = CONFORMANCE_CASES.filter((c) => !c.label.startsWith("codebook"));
    expect(quantKernelsWithoutCase("cpu", withoutCodebook)).toEqual(["codebook.forward", "codebook.inputGrad", "codebook.dequantize"]);
    const withoutDequantize = CONFORMANCE_CASES.filter((c) => c.op !== "quantDequantize");
    expect(quantKernelsWithoutCase("sim", withoutDequantize)).toEqual(["affine.dequantize", "codebook.dequantize"]);
    expect(kernelsWithoutCase("cpu", withoutCodebook)).toEqual([]); // the op registry alone would not see it
  });
});

/** `t` with its host values changed by `edit`, as a new tensor of its dtype on `device` (inside the case's tidy). */
const edited = (t: Tensor, device: string, edit: (v: Int32Array | Uint8Array | Float32Array | Uint16Array) => void): Tensor => {
  const v = t.dataSync() as Int32Array;
  edit(v);
  return tensorFrom(v, { shape: [...t.shape], dtype: t.dtype, device });
};

describe("the suite catches wrong quantized kernels", () => {
  for (const backend of BACKENDS) {
    it(`${backend}: a 3-bit forward that joins a word-crossing code with two bits swapped fails, forward and input gradient`, () => {
      const c = byName("quantMatmul f32 affine b3 g32 zeros=int x[5,96] w[37,96]");
      // Code 10 of each column has bits 30, 31 of stream word 0 and bit 0 of word 1 (i32 [9, 37]).
      // Swapping its middle and high bits in one column changes one weight by ±2 steps of the scale.
      let column = -1;
      const wrong: ConformanceCase = {
        ...c,
        forward: ([x, qweight, ...rest], d) => c.forward([x!, edited(qweight!, d, (q) => {
          const out = qweight!.shape[1]!;
          column = [...Array(out).keys()].find((j) => ((q[j]! >>> 31) & 1) !== (q[out + j]! & 1))!;
          q[column] = q[column]! ^ (1 << 31);
          q[out + column] = q[out + column]! ^ 1;
        }), ...rest], d),
      };
      const r = runConformanceCase(wrong, backend);
      expect(column).toBeGreaterThanOrEqual(0);
      expect(r.passed).toBe(false);
      expect(r.checks.map((k) => [k.what, k.passed])).toEqual([["out0", false], ["grad0", false]]);
      expect(r.error).toMatch(new RegExp(`out0: element \\d+ is`));
    });
    it(`${backend}: a forward that uses the next group's zero points fails; so does a dequantize`, () => {
      for (const name of ["quantMatmul f32 affine b4 g32 zeros=int x[5,96] w[37,96]", "quantDequantize f32 affine b4 g32 zeros=int w[37,96] rows [0,37)"]) {
        const c = byName(name);
        const wrong: ConformanceCase = {
          ...c,
          forward: (xs, d) => c.forward(xs.map((t) => (t.dtype === "u8" ? edited(t, d, (z) => {
            const out = t.shape[1]!;
            const groups = t.shape[0]!;
            const copy = z.slice();
            for (let g = 0; g < groups; g++) for (let j = 0; j < out; j++) z[g * out + j] = copy[((g + 1) % groups) * out + j]!;
          }) : t)), d),
        };
        const r = runConformanceCase(wrong, backend);
        expect(r.passed, name).toBe(false);
        expect(r.checks[0]!.passed, name).toBe(false);
        expect(r.checks[0]!.maxRelError, name).toBeGreaterThan(1e3 * r.checks[0]!.bound);
      }
    });
    it(`${backend}: real (f16) zeros read as if rounded to integers fail`, () => {
      const c = byName("quantMatmul f32 affine b4 g32 zeros=real x[5,96] w[37,96]");
      const wrong: ConformanceCase = {
        ...c,
        // [x, qweight, scales, zeros]: zeros f16 [groups, out], each rounded to the nearest integer.
        forward: ([x, q, sc, z], d) => c.forward([x!, q!, sc!, edited(z!, d, (v) => v.forEach((b, i) => (v[i] = f16Bits(Math.round(bitsToNumber16(b, "f16"))))))], d),
      };
      const r = runConformanceCase(wrong, backend);
      expect(r.passed).toBe(false);
      expect(r.checks[0]!.passed).toBe(false);
    });
    it(`${backend}: a codebook kernel that takes every block scale from the first super-block fails`, () => {
      const c = byName("quantMatmul f32 codebook b4 block64 absmax=dq x[17,640] w[70,640]");
      // absmaxScale and absmaxOffset are f32 [3]: 700 blocks in 3 super-blocks of 256.
      const wrong: ConformanceCase = {
        ...c,
        forward: ([x, codes, levels, aCodes, aScale, aOffset], d) =>
          c.forward([x!, codes!, levels!, aCodes!, edited(aScale!, d, (v) => v.fill(v[0]!)), edited(aOffset!, d, (v) => v.fill(v[0]!))], d),
      };
      const r = runConformanceCase(wrong, backend);
      expect(r.passed).toBe(false);
      expect(r.checks.map((k) => k.passed)).toEqual([false, false]);
    });
  }
  it("quantMatmul runs at f32 and bf16, quantDequantize at f32 only; quantMatmul refuses f64", () => {
    const quant = CONFORMANCE_CASES.filter((c) => c.op.startsWith("quant"));
    expect(quant.filter((c) => c.op === "quantDequantize").every((c) => c.dtype === "f32")).toBe(true);
    expect(NOT_AT_BF16["quantDequantize"]).toBeDefined();
    const bf16 = quant.filter((c) => c.op === "quantMatmul" && c.dtype === "bf16");
    expect(bf16.length).toBeGreaterThanOrEqual(20);
    for (const bits of AFFINE_CASE_BITS) expect(bf16.some((c) => c.label.startsWith(`affine b${bits} `))).toBe(true);
    for (const bits of CODEBOOK_CASE_BITS) expect(bf16.some((c) => c.label.startsWith(`codebook b${bits} `))).toBe(true);
    expect(bf16.some((c) => c.label.includes("gIdx"))).toBe(true);
    expect(bf16.some((c) => c.label.endsWith("strided"))).toBe(true);
    const c = byName("quantMatmul f32 affine b4 g32 zeros=int x[5,96] w[37,96]");
    const r = runConformanceCase({ ...c, forward: ([x, ...w], d) => c.forward([cast(x!, "f64"), ...w], d) }, "cpu");
    expect(r.passed).toBe(false);
    expect(r.error).toContain("quantMatmul: computes in f32 (or bf16, accumulated in f32), got f64; cast the input first");
  });
});

describe("runBackendConformance and the command line", () => {
  it("filters, reports each result, and names the registered backends for an unknown one", async () => {
    const seen: string[] = [];
    const results = await runBackendConformance({ backend: "cpu", filter: "attention f64", onResult: (r) => seen.push(r.name) });
    expect(results.length).toBe(CONFORMANCE_CASES.filter((c) => caseName(c).startsWith("attention f64")).length);
    expect(results.length).toBeGreaterThanOrEqual(11);
    expect(seen).toEqual(results.map((r) => r.name));
    expect(results.every((r) => r.passed && r.name.startsWith("attention f64"))).toBe(true);
    await expect(runBackendConformance({ backend: "nope" })).rejects.toThrow("device 'nope' is not available");
  });
  const cli = async (argv: string[], cases?: readonly ConformanceCase[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runConformanceCli(argv, { out: (l) => out.push(l), err: (l) => err.push(l) }, cases);
    return { code, out, err };
  };
  it("prints one line per case and the summary last", async () => {
    const r = await cli(["--backend", "cpu", "--filter", "rmsnorm f32"]);
    expect(r.code).toBe(0);
    const lines = r.out.filter((l) => !l.startsWith("#"));
    const n = CONFORMANCE_CASES.filter((c) => caseName(c).includes("rmsnorm f32")).length;
    expect(n).toBeGreaterThanOrEqual(5);
    expect(lines.slice(0, -1)).toHaveLength(n);
    expect(lines.slice(0, -1).every((l) => /^ok {3}rmsnorm f32 \[[\d,]*\][^ ]*(?: [^ ]+)*? {2}err \d\.\d\de[-+]\d+ ≤ \d\.\d\de[-+]\d+ \(abs /.test(l))).toBe(true);
    expect(r.out.at(-1)).toBe(`${n} passed, 0 failed`);
  });
  it("runs the cases that match any of several --filter values", async () => {
    const r = await cli(["--backend", "cpu", "--filter", "rmsnorm f32", "--filter=swiglu f64"]);
    expect(r.code).toBe(0);
    const n = CONFORMANCE_CASES.filter((c) => caseName(c).includes("rmsnorm f32") || caseName(c).includes("swiglu f64")).length;
    expect(r.out[0]).toBe(`# backend cpu: ${n} cases matching 'rmsnorm f32' or 'swiglu f64'`);
    const names = r.out.filter((l) => l.startsWith("ok ")).map((l) => l.slice(5, 16));
    expect(names.filter((x) => x.startsWith("rmsnorm f32")).length).toBeGreaterThanOrEqual(5);
    expect(names.filter((x) => x.startsWith("swiglu f64")).length).toBeGreaterThanOrEqual(3);
    expect(names).toHaveLength(n);
    expect(r.out.at(-1)).toBe(`${n} passed, 0 failed`);
  });
  it("exits 1 with a FAIL line when a case fails", async () => {
    const c = byName("exp f32 [127]");
    const r = await cli(["--backend", "cpu"], [{ ...c, forward: (xs, d) => scale(c.forward(xs, d) as Tensor, 1.01) }]);
    expect(r.code).toBe(1);
    expect(r.out.some((l) => l.startsWith("FAIL exp f32 [127]  out0: element"))).toBe(true);
    // The one-case table leaves every other cpu kernel without a case: that fails too.
    expect(r.out.some((l) => l.startsWith("FAIL coverage: kernels of 'cpu' that no case runs: adamwStep, adamwStepMany, add,"))).toBe(true);
    expect(r.out.some((l) => l.startsWith("FAIL coverage: quantized format kernels of 'cpu' that no case runs: affine.forward, affine.inputGrad, affine.dequantize, codebook.forward,"))).toBe(true);
    expect(r.out.at(-1)).toBe("0 passed, 3 failed");
  });
  it("refuses an unknown backend, a missing value and a filter that matches nothing", async () => {
    const unknown = await cli(["--backend", "nope"]);
    expect(unknown.code).toBe(1);
    expect(unknown.err[0]).toMatch(/^conformance-runner: backend 'nope' is not available \(.*\) — pass --backend with one of: .*cpu/);
    const none = await cli(["--backend"]);
    expect(none).toMatchObject({ code: 1, err: ["conformance-runner: --backend needs a value — e.g. --backend cpu"] });
    const noMatch = await cli(["--backend", "cpu", "--filter", "no such op"]);
    expect(noMatch).toMatchObject({ code: 1, err: ["conformance-runner: no case matches --filter 'no such op' — run with --list to see the case names"] });
    const bad = await cli(["--backnd", "cpu"]);
    expect(bad).toMatchObject({ code: 1, err: ["conformance-runner: unknown argument '--backnd' — run with --help for the options"] });
  });
});

describe("the bundled runner", () => {
  it("each built entry of the package loads first in a fresh process (no import-cycle order trap)", () => {
    // The conformance entry once split the engine's chunks so that importing it (or index) first
    // read ops/gather.ts's definitions before they ran.
    for (const entry of ["index.js", "testing.js", "conformance.js"]) {
      const url = new URL(`../dist/${entry}`, import.meta.url).href;
      const run = spawnSync(process.execPath, ["--input-type=module", "-e", `await import(${JSON.stringify(url)});`], { encoding: "utf8", timeout: 60_000 });
      expect(run.stderr, entry).toBe("");
      expect(run.status, entry).toBe(0);
    }
  });
  it("runs under plain node from outside the workspace, with the addon from MODULORA_KERNELS_ADDON", () => {
    const bundle = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "conformance-runner.mjs");
    expect(existsSync(bundle), `${bundle} is missing: run "pnpm --filter @modulora/tensor build"`).toBe(true);
    const addon = addonCandidates().find((p) => existsSync(p));
    expect(addon, "the kernels addon is not built").toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), "modulora-conformance-"));
    try {
      copyFileSync(bundle, join(dir, "conformance-runner.mjs"));
      const env = { PATH: process.env.PATH ?? "", MODULORA_KERNELS_ADDON: addon!, MODULORA_NUM_THREADS: "1" };
      const run = spawnSync(process.execPath, [join(dir, "conformance-runner.mjs"), "--backend", "cpu"], { cwd: dir, env, encoding: "utf8", timeout: 60_000 });
      expect(run.stderr).toBe("");
      const lines = run.stdout.trim().split("\n");
      expect(lines.at(-1)).toBe(`${CONFORMANCE_CASES.length} passed, 0 failed`);
      expect(lines.filter((l) => l.startsWith("ok   "))).toHaveLength(CONFORMANCE_CASES.length);
      expect(run.status).toBe(0);
      const unknown = spawnSync(process.execPath, [join(dir, "conformance-runner.mjs"), "--backend", "nope"], { cwd: dir, env, encoding: "utf8", timeout: 60_000 });
      expect(unknown.status).toBe(1);
      expect(unknown.stderr).toContain("conformance-runner: backend 'nope' is not available");
      const noAddon = spawnSync(process.execPath, [join(dir, "conformance-runner.mjs"), "--backend", "cpu"], { cwd: dir, env: { PATH: env.PATH }, encoding: "utf8", timeout: 60_000 });
      expect(noAddon.status).toBe(1);
      expect(noAddon.stderr).toContain("the native addon modulora_kernels.node was not found");
      expect(noAddon.stderr).toContain("— set MODULORA_KERNELS_ADDON to its path");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
