// The backend conformance suite on `cpu` (one `it` per case of the table), checks that the
// suite itself catches wrong results, its command line, and the bundled runner under plain node.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { addonCandidates } from "@modulora/kernels";
import { add, dropout, keep, registerSimBackend, scale, sub, type Tensor } from "../src/index.js";
import {
  CaseRng, CONFORMANCE_CASES, FINITE_DIFFERENCE_ERROR, caseName, compareArrays, finiteDifferenceGrad, formatResult, roundToDType, kernelsWithoutCase, runBackendConformance, runConformanceCase, runConformanceCli,
  type ConformanceCase,
} from "../src/conformance/index.js";

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
    it(`every kernel registered for ${backend} is run by a case`, () => {
      expect(kernelsWithoutCase(backend)).toEqual([]);
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
  it("exits 1 with a FAIL line when a case fails", async () => {
    const c = byName("exp f32 [127]");
    const r = await cli(["--backend", "cpu"], [{ ...c, forward: (xs, d) => scale(c.forward(xs, d) as Tensor, 1.01) }]);
    expect(r.code).toBe(1);
    expect(r.out.some((l) => l.startsWith("FAIL exp f32 [127]  out0: element"))).toBe(true);
    // The one-case table leaves every other cpu kernel without a case: that fails too.
    expect(r.out.some((l) => l.startsWith("FAIL coverage: kernels of 'cpu' that no case runs: adamwStep, add,"))).toBe(true);
    expect(r.out.at(-1)).toBe("0 passed, 2 failed");
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
