// The rules a benchmark result must pass before it is written (../../conditions.mjs), and the
// finetune benchmark's refusal of a reference-BLAS PyTorch, end to end. No timing is asserted.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

import { BenchmarkRefusal, paired, requireOptimizedBlas, spread, trackedAddon } from "../../conditions.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const tmps = [];
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), "bench-conditions-"));
  tmps.push(d);
  return d;
};
afterEach(() => {
  while (tmps.length) rmSync(tmps.pop(), { recursive: true, force: true });
});

// What baselines/blas_probe.py reports for Debian's PyTorch on libblas3 (netlib), as measured
// with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blas.
const referenceProbe = {
  python: "/usr/bin/python3", python_version: "3.11.2", numpy: "1.24.2",
  blas: { provider: "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0", via: "dladdr(sgemm_) from libtorch_cpu", kind: "reference", openblas: null },
};
const openblasProbe = {
  ...referenceProbe,
  blas: { provider: "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3", via: "dladdr(sgemm_) from libtorch_cpu", kind: "openblas", openblas: { corename: "SkylakeX", config: "OpenBLAS 0.3.21", threads: 2 } },
};

describe("requireOptimizedBlas", () => {
  it("refuses the reference BLAS, naming the library and the fix", () => {
    expect(() => requireOptimizedBlas(referenceProbe, "the PyTorch baseline")).toThrow(BenchmarkRefusal);
    expect(() => requireOptimizedBlas(referenceProbe, "the PyTorch baseline")).toThrow(
      "the PyTorch baseline runs on /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0 (reference BLAS, found by dladdr(sgemm_) from libtorch_cpu), not OpenBLAS/MKL/BLIS",
    );
    expect(() => requireOptimizedBlas(referenceProbe, "x")).toThrow("install libopenblas0-pthread");
  });
  it("refuses a probe that found no BLAS", () => {
    expect(() => requireOptimizedBlas({ blas: { provider: null, via: "no BLAS library mapped", kind: "unknown" } }, "numpy")).toThrow(
      "numpy runs on no BLAS found (unknown BLAS, found by no BLAS library mapped)",
    );
  });
  it("passes OpenBLAS through", () => {
    expect(requireOptimizedBlas(openblasProbe, "the PyTorch baseline")).toBe(openblasProbe);
  });
});

describe("paired", () => {
  it("takes the ratio within each round, for rates and for times", () => {
    const rates = paired([200, 300, 100], [100, 100, 200], { higherIsBetter: true });
    expect(rates.ratios).toEqual([2, 3, 0.5]);
    expect(rates.ratio).toEqual({ median: 2, min: 0.5, max: 3, n: 3 });
    expect(rates.ours).toEqual({ median: 200, min: 100, max: 300, n: 3 });
    const times = paired([1, 2], [3, 3], { higherIsBetter: false });
    expect(times.ratios).toEqual([3, 1.5]);
    expect(times.ratio.median).toBe(2.25);
  });
  it("refuses unpaired rounds", () => {
    expect(() => paired([1, 2], [1], { higherIsBetter: true })).toThrow("paired: rounds differ");
  });
  it("spread of an even count is the mean of the middle two", () => {
    expect(spread([4, 1, 3, 2])).toEqual({ median: 2.5, min: 1, max: 4, n: 4 });
  });
});

describe("trackedAddon", () => {
  function fakeTree({ addonAge, srcAge }) {
    const root = tmp();
    const now = Date.now() / 1000;
    mkdirSync(path.join(root, "kernels", "build", "Release"), { recursive: true });
    mkdirSync(path.join(root, "kernels", "src", "cpu"), { recursive: true });
    const addon = path.join(root, "kernels", "build", "Release", "modulora_kernels.node");
    const src = path.join(root, "kernels", "src", "cpu", "gemm.cc");
    const cmake = path.join(root, "kernels", "CMakeLists.txt");
    for (const f of [addon, src, cmake]) writeFileSync(f, "");
    utimesSync(cmake, now - 1000, now - 1000);
    utimesSync(src, now - srcAge, now - srcAge);
    utimesSync(addon, now - addonAge, now - addonAge);
    return root;
  }
  it("refuses MODULORA_KERNELS_PATH and MODULORA_KERNELS_ADDON", () => {
    for (const name of ["MODULORA_KERNELS_PATH", "MODULORA_KERNELS_ADDON"]) {
      expect(() => trackedAddon({ env: { [name]: "/work/main/kernels/build-gemm/Release/modulora_kernels.node" } })).toThrow(
        `${name}=/work/main/kernels/build-gemm/Release/modulora_kernels.node points at an addon built outside the tracked tree`,
      );
    }
  });
  it("refuses an addon older than a kernels source", () => {
    const root = fakeTree({ addonAge: 100, srcAge: 10 });
    expect(() => trackedAddon({ root, env: {} })).toThrow(
      "kernels/build/Release/modulora_kernels.node is older than kernels/src/cpu/gemm.cc — rebuild it with `pnpm --filter @modulora/kernels build`",
    );
  });
  it("refuses a missing addon", () => {
    const root = fakeTree({ addonAge: 10, srcAge: 100 });
    rmSync(path.join(root, "kernels", "build"), { recursive: true });
    expect(() => trackedAddon({ root, env: {} })).toThrow("kernels/build/Release/modulora_kernels.node is missing");
  });
  it("accepts a build newer than every source", () => {
    const root = fakeTree({ addonAge: 10, srcAge: 100 });
    expect(trackedAddon({ root, env: {} })).toMatchObject({ path: "kernels/build/Release/modulora_kernels.node", newestSource: "kernels/src/cpu/gemm.cc" });
  });
});

describe("finetune.mjs", () => {
  it("exits 1 and writes nothing when PyTorch's BLAS is the reference BLAS", () => {
    const dir = tmp();
    // A stand-in for /usr/bin/python3 whose probe reports the reference BLAS.
    const fake = path.join(dir, "python-with-reference-blas");
    writeFileSync(fake, `#!/bin/sh\necho '${JSON.stringify(referenceProbe)}'\n`);
    chmodSync(fake, 0o755);
    const out = path.join(dir, "out");
    const r = spawnSync(process.execPath, [path.join(here, "..", "finetune.mjs"), "--python", fake, "--rounds", "1", "--out", out], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(
      "finetune-cpu: the PyTorch baseline runs on /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0 (reference BLAS, found by dladdr(sgemm_) from libtorch_cpu), not OpenBLAS/MKL/BLIS; " +
        "no figure is published from it — install libopenblas0-pthread and check `update-alternatives --display libblas.so.3-x86_64-linux-gnu` (and LD_LIBRARY_PATH)",
    );
    expect(r.stdout).toBe("");
    expect(existsSync(out)).toBe(false);
  });
});
