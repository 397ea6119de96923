import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { cudaAddonPath, cudaMissingMessage, findCudaToolkit, isCudaAddonBuilt, nvccCandidates, type CudaProbe } from "../src/index.js";

/** A probe over a fake filesystem: `files` exist, `executables` exist and are executable. */
function probe(env: Record<string, string | undefined>, files: string[], executables: string[] = [], platform = "linux", arch = "x64"): CudaProbe {
  const f = new Set([...files, ...executables]);
  const x = new Set(executables);
  return { env, platform, arch, exists: (p) => f.has(p), isExecutable: (p) => x.has(p) };
}

const toolkit12 = [
  "/usr/local/cuda-12.8/targets/x86_64-linux/lib/libcublas.so",
  "/usr/local/cuda-12.8/targets/x86_64-linux/lib/libcublasLt.so",
  "/usr/local/cuda-12.8/targets/x86_64-linux/include/cublasLt.h",
];

describe("finding the CUDA toolkit", () => {
  it("looks for nvcc in CUDACXX, CUDA_PATH, CUDA_HOME, CUDAToolkit_ROOT, PATH, then /usr/local/cuda", () => {
    const p = probe({ CUDACXX: "/c/nvcc", CUDA_PATH: "/a", CUDA_HOME: "/h", CUDAToolkit_ROOT: "/r", PATH: "/usr/bin:/bin" }, []);
    expect(nvccCandidates(p)).toEqual([
      ["CUDACXX", "/c/nvcc"],
      ["CUDA_PATH/bin", "/a/bin/nvcc"],
      ["CUDA_HOME/bin", "/h/bin/nvcc"],
      ["CUDAToolkit_ROOT/bin", "/r/bin/nvcc"],
      ["PATH", "/usr/bin/nvcc"],
      ["PATH", "/bin/nvcc"],
      ["/usr/local/cuda/bin", "/usr/local/cuda/bin/nvcc"],
    ]);
  });
  it("finds a toolkit from CUDA_HOME with cuBLAS under targets/x86_64-linux", () => {
    const t = findCudaToolkit(probe({ CUDA_HOME: "/usr/local/cuda-12.8", PATH: "/usr/bin" }, toolkit12, ["/usr/local/cuda-12.8/bin/nvcc"]));
    expect(t).toEqual({
      nvcc: "/usr/local/cuda-12.8/bin/nvcc",
      root: "/usr/local/cuda-12.8",
      cublas: { library: toolkit12[0], libraryLt: toolkit12[1], include: toolkit12[2] },
      missing: [],
    });
  });
  it("finds a distribution's toolkit (nvcc in /usr/bin, cuBLAS in the multiarch lib folder)", () => {
    const files = ["/usr/lib/x86_64-linux-gnu/libcublas.so", "/usr/lib/x86_64-linux-gnu/libcublasLt.so", "/usr/include/cublasLt.h"];
    const t = findCudaToolkit(probe({ PATH: "/usr/local/bin:/usr/bin" }, files, ["/usr/bin/nvcc"]));
    expect(t.root).toBe("/usr");
    expect(t.cublas?.library).toBe("/usr/lib/x86_64-linux-gnu/libcublas.so");
    expect(t.missing).toEqual([]);
  });
  it("follows a link to nvcc into the toolkit (e.g. /usr/local/bin/nvcc -> /usr/local/cuda-12.8/bin/nvcc)", () => {
    const p = probe({ PATH: "/usr/local/bin:/usr/bin" }, toolkit12, ["/usr/local/bin/nvcc"]);
    p.realpath = (x) => (x === "/usr/local/bin/nvcc" ? "/usr/local/cuda-12.8/bin/nvcc" : x);
    const t = findCudaToolkit(p);
    expect(t.nvcc).toBe("/usr/local/bin/nvcc");
    expect(t.root).toBe("/usr/local/cuda-12.8");
    expect(t.missing).toEqual([]);
  });
  it("MODULORA_CUBLAS_ROOT is searched before the toolkit", () => {
    const wheel = ["/w/nvidia/cublas/lib/libcublas.so", "/w/nvidia/cublas/lib/libcublasLt.so", "/w/nvidia/cublas/include/cublasLt.h"];
    const t = findCudaToolkit(probe({ MODULORA_CUBLAS_ROOT: "/w/nvidia/cublas", PATH: "/opt/cuda/bin" }, [...wheel, ...toolkit12], ["/opt/cuda/bin/nvcc"]));
    expect(t.cublas).toEqual({ library: wheel[0], libraryLt: wheel[1], include: wheel[2] });
  });
  it("uses the sbsa target folder on arm64 and lib/x64 on Windows", () => {
    const arm = ["/cuda/targets/sbsa-linux/lib/libcublas.so", "/cuda/targets/sbsa-linux/lib/libcublasLt.so", "/cuda/targets/sbsa-linux/include/cublasLt.h"];
    expect(findCudaToolkit(probe({ CUDA_PATH: "/cuda" }, arm, ["/cuda/bin/nvcc"], "linux", "arm64")).missing).toEqual([]);
    const win = ["C:/CUDA/lib/x64/cublas.lib", "C:/CUDA/lib/x64/cublasLt.lib", "C:/CUDA/include/cublasLt.h"];
    expect(findCudaToolkit(probe({ CUDA_PATH: "C:/CUDA" }, win, ["C:/CUDA/bin/nvcc.exe"], "win32")).missing).toEqual([]);
  });
  it("names what is missing: no nvcc anywhere", () => {
    const t = findCudaToolkit(probe({ PATH: "/usr/bin:/bin" }, []));
    expect(t.missing).toEqual([
      "nvcc, the CUDA compiler (not in CUDACXX, $CUDA_PATH/bin, $CUDA_HOME/bin, $CUDAToolkit_ROOT/bin, on PATH or in /usr/local/cuda/bin)",
      "cuBLAS (no toolkit found to look in, and MODULORA_CUBLAS_ROOT is not set)",
    ]);
    expect(cudaMissingMessage(t.missing)).toBe(
      "@modulora/kernels-cuda: cannot build the CUDA addon: missing nvcc, the CUDA compiler (not in CUDACXX, $CUDA_PATH/bin, $CUDA_HOME/bin, $CUDAToolkit_ROOT/bin, on PATH or in /usr/local/cuda/bin); " +
        "cuBLAS (no toolkit found to look in, and MODULORA_CUBLAS_ROOT is not set). " +
        "Install the CUDA toolkit 12 or newer with cuBLAS (https://developer.nvidia.com/cuda-downloads) and put its bin/ on PATH or set CUDA_PATH, " +
        "then run the install again (`npm install`). Without this package, @modulora/kernels runs on the CPU.",
    );
  });
  it("names what is missing: nvcc without cuBLAS's header", () => {
    const t = findCudaToolkit(probe({ CUDA_HOME: "/usr/local/cuda-12.8" }, toolkit12.slice(0, 2), ["/usr/local/cuda-12.8/bin/nvcc"]));
    expect(t.nvcc).toBe("/usr/local/cuda-12.8/bin/nvcc");
    expect(t.missing).toEqual([
      "cuBLAS (cublasLt.h not found under /usr/local/cuda-12.8: install the toolkit's cuBLAS (libcublas-dev), or set MODULORA_CUBLAS_ROOT to a folder holding cuBLAS's lib/ and include/)",
    ]);
  });
  it("a non-executable nvcc does not count", () => {
    expect(findCudaToolkit(probe({ CUDA_HOME: "/c" }, ["/c/bin/nvcc", ...toolkit12])).nvcc).toBeUndefined();
  });
});

describe("the package", () => {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..");
  it("exports where the install builds the addon (not built in the workspace)", () => {
    expect(cudaAddonPath).toBe(join(root, "build", "Release", "modulora_kernels.node"));
    expect(isCudaAddonBuilt()).toBe(false);
  });
  it("its install does nothing in the workspace checkout", () => {
    const r = spawnSync(process.execPath, [join(root, "scripts", "install.mjs")], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^@modulora\/kernels-cuda: workspace checkout, nothing to install/);
  });
  it("outside the workspace, its install fails naming what is missing (no compiler, make or cmake on its PATH)", () => {
    // Staged as npm would unpack it: node_modules/@modulora/{kernels,kernels-cuda}, built dist/ of both.
    const temp = mkdtempSync(join(tmpdir(), "modulora-cuda-install-"));
    try {
      const mods = join(temp, "node_modules", "@modulora");
      const kernels = join(root, "..", "..", "kernels");
      for (const [from, name, parts] of [[kernels, "kernels", ["dist"]], [root, "kernels-cuda", ["dist", "scripts"]]] as const) {
        for (const part of parts) cpSync(join(from, part), join(mods, name, part), { recursive: true });
        copyFileSync(join(from, "package.json"), join(mods, name, "package.json"));
      }
      const bin = join(temp, "bin");
      mkdirSync(bin);
      // The default places (/usr/local/cuda) are looked in whatever PATH says, so what is missing
      // of the toolkit depends on this machine; the C++ tools are all missing with this PATH.
      const env = { PATH: bin };
      const r = spawnSync(process.execPath, [join(mods, "kernels-cuda", "scripts", "install.mjs")], { encoding: "utf8", env });
      expect(r.status).toBe(1);
      const here = findCudaToolkit({ env, platform: process.platform, arch: process.arch, exists: existsSync, isExecutable: (p) => existsSync(p) && statSync(p).isFile(), realpath: realpathSync });
      const missing = [
        ...here.missing,
        "a C++ compiler (none of c++, g++, clang++ is on PATH, and CXX is not set)",
        "a build tool (neither make nor ninja is on PATH)",
        "CMake (cmake is not on PATH)",
      ];
      expect(r.stderr.split("\n")[0]).toBe(cudaMissingMessage(missing));
      expect(r.stderr).toContain("For the C++ side, install a C++17 compiler, make (or ninja) and CMake >= 3.18");
    } finally {
      rmSync(temp, { recursive: true, force: true });
    }
  });
});
