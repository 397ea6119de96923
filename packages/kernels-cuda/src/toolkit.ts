// Finding the CUDA toolkit (nvcc) and cuBLAS/cuBLASLt before the install starts a CUDA build, in
// the places kernels/CMakeLists.txt's find_package(CUDAToolkit) and find_library look, so that a
// missing piece is named up front instead of after a CMake configure.
import { dirname, join } from "node:path";

/** How the toolkit is looked up: the environment, the platform, and file tests (injected by tests). */
export interface CudaProbe {
  env: Record<string, string | undefined>;
  platform: string;
  /** `process.arch`: chooses the `targets/<arch>-linux` folder of the toolkit. */
  arch: string;
  exists(path: string): boolean;
  isExecutable(path: string): boolean;
  /** Resolves symbolic links (nvcc on PATH is often a link into the toolkit); the path itself when absent. */
  realpath?(path: string): string;
}

/** cuBLAS as found: the folder it was found under and its two libraries and header. */
export interface CublasLocation {
  library: string;
  libraryLt: string;
  include: string;
}

/** What was found: nvcc and the toolkit root, cuBLAS; and what is missing, in words. */
export interface CudaToolkit {
  /** The CUDA compiler. */
  nvcc?: string;
  /** The toolkit folder (the parent of the `bin/` that nvcc, its links resolved, is in). */
  root?: string;
  cublas?: CublasLocation;
  /** Empty when the CUDA build can be configured. */
  missing: string[];
}

/** Where nvcc is looked for, in order, as `[label, path or name]`: CUDACXX, CUDA_PATH, CUDA_HOME, CUDAToolkit_ROOT, PATH, /usr/local/cuda. */
export function nvccCandidates(probe: CudaProbe): Array<[string, string]> {
  const exe = probe.platform === "win32" ? "nvcc.exe" : "nvcc";
  const out: Array<[string, string]> = [];
  const { env } = probe;
  if (env.CUDACXX) out.push(["CUDACXX", env.CUDACXX]);
  for (const v of ["CUDA_PATH", "CUDA_HOME", "CUDAToolkit_ROOT"]) {
    const dir = env[v];
    if (dir) out.push([`${v}/bin`, join(dir, "bin", exe)]);
  }
  const sepChar = probe.platform === "win32" ? ";" : ":";
  for (const dir of (env.PATH ?? env.Path ?? "").split(sepChar).filter(Boolean)) out.push(["PATH", join(dir, exe)]);
  if (probe.platform !== "win32") out.push(["/usr/local/cuda/bin", "/usr/local/cuda/bin/nvcc"]);
  return out;
}

const TARGET_DIR: Record<string, string> = { x64: "x86_64-linux", arm64: "sbsa-linux" };
const MULTIARCH: Record<string, string> = { x64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu" };

/** The folders searched for cuBLAS under one root (a toolkit or MODULORA_CUBLAS_ROOT): `[lib dirs, include dirs]`. */
export function cublasSearchDirs(root: string, probe: CudaProbe): [string[], string[]] {
  if (probe.platform === "win32") return [[join(root, "lib", "x64"), join(root, "lib")], [join(root, "include")]];
  const libs = [join(root, "lib64"), join(root, "lib")];
  const incs = [join(root, "include")];
  const target = TARGET_DIR[probe.arch];
  if (target) {
    libs.push(join(root, "targets", target, "lib"));
    incs.push(join(root, "targets", target, "include"));
  }
  const multiarch = MULTIARCH[probe.arch];
  if (multiarch) libs.push(join(root, "lib", multiarch)); // a distribution's toolkit (root /usr)
  return [libs, incs];
}

/** Looks for nvcc and for cuBLAS (MODULORA_CUBLAS_ROOT first, then the toolkit), as the CMake configure will. */
export function findCudaToolkit(probe: CudaProbe): CudaToolkit {
  const t: CudaToolkit = { missing: [] };
  const nvcc = nvccCandidates(probe).find(([, p]) => probe.isExecutable(p));
  if (nvcc) {
    t.nvcc = nvcc[1];
    t.root = dirname(dirname(probe.realpath?.(nvcc[1]) ?? nvcc[1]));
  } else {
    t.missing.push(
      "nvcc, the CUDA compiler (not in CUDACXX, $CUDA_PATH/bin, $CUDA_HOME/bin, $CUDAToolkit_ROOT/bin, on PATH or in /usr/local/cuda/bin)",
    );
  }
  const roots = [probe.env.MODULORA_CUBLAS_ROOT, t.root].filter((r): r is string => !!r);
  const win = probe.platform === "win32";
  const names = win ? ["cublas.lib", "cublasLt.lib"] : ["libcublas.so", "libcublasLt.so"];
  const libDirs = roots.flatMap((r) => cublasSearchDirs(r, probe)[0]);
  const incDirs = roots.flatMap((r) => cublasSearchDirs(r, probe)[1]);
  const find = (dirs: string[], file: string) => dirs.map((d) => join(d, file)).find((p) => probe.exists(p));
  const library = find(libDirs, names[0]!);
  const libraryLt = find(libDirs, names[1]!);
  const include = find(incDirs, "cublasLt.h");
  if (library && libraryLt && include) t.cublas = { library, libraryLt, include };
  else if (roots.length > 0) {
    const absent = [library ? undefined : names[0], libraryLt ? undefined : names[1], include ? undefined : "cublasLt.h"].filter(Boolean);
    t.missing.push(
      `cuBLAS (${absent.join(", ")} not found under ${roots.join(" or ")}: install the toolkit's cuBLAS (libcublas-dev), ` +
        "or set MODULORA_CUBLAS_ROOT to a folder holding cuBLAS's lib/ and include/)",
    );
  } else {
    t.missing.push("cuBLAS (no toolkit found to look in, and MODULORA_CUBLAS_ROOT is not set)");
  }
  return t;
}

/** The install error when the CUDA build cannot run: what is missing and what to install. */
export function cudaMissingMessage(missing: readonly string[]): string {
  return (
    `@modulora/kernels-cuda: cannot build the CUDA addon: missing ${missing.join("; ")}. ` +
    "Install the CUDA toolkit 12 or newer with cuBLAS (https://developer.nvidia.com/cuda-downloads) and put its bin/ on PATH " +
    "or set CUDA_PATH, then run the install again (`npm install`). Without this package, @modulora/kernels runs on the CPU."
  );
}
