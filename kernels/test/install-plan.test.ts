import { describe, expect, it } from "vitest";
import { BUILD_TOOLS_HINT, findBuildTools, findOnPath, planInstall, type BuildTools, type InstallInputs, type ToolProbe } from "../ts/install-plan.js";

/** A probe over a fake set of executables. */
function probe(executables: string[], env: Record<string, string | undefined>, platform = "linux"): ToolProbe {
  const set = new Set(executables);
  return { env, platform, isExecutable: (p) => set.has(p) };
}

const allTools: BuildTools = { compiler: "/usr/bin/c++", cmake: "/usr/bin/cmake", buildTool: "/usr/bin/make", missing: [] };
const base: InstallInputs = {
  triple: "linux-x64-glibc",
  workspace: false,
  env: {},
  prebuilt: { state: "loads", path: "/p/prebuilds/linux-x64-glibc/modulora_kernels.node" },
  tools: allTools,
};

describe("finding build tools", () => {
  it("searches PATH in order, and takes a path as it is", () => {
    const pr = probe(["/opt/bin/cmake", "/usr/bin/cmake", "/tools/g++"], { PATH: "/nowhere:/opt/bin:/usr/bin" });
    expect(findOnPath("cmake", pr)).toBe("/opt/bin/cmake");
    expect(findOnPath("/tools/g++", pr)).toBe("/tools/g++");
    expect(findOnPath("ninja", pr)).toBeUndefined();
  });
  it("uses PATHEXT on Windows", () => {
    const pr = probe(["C:\\cmake\\bin/cmake.EXE"], { Path: "C:\\cmake\\bin", PATHEXT: ".EXE" }, "win32");
    expect(findOnPath("cmake", pr)).toBe("C:\\cmake\\bin/cmake.EXE");
  });
  it("finds c++, g++ or clang++, ninja before make, and cmake", () => {
    const pr = probe(["/usr/bin/clang++", "/usr/bin/make", "/usr/bin/ninja", "/usr/bin/cmake"], { PATH: "/usr/bin" });
    expect(findBuildTools(pr)).toEqual({ compiler: "/usr/bin/clang++", buildTool: "/usr/bin/ninja", cmake: "/usr/bin/cmake", missing: [] });
  });
  it("CXX names the compiler (its first word), and then only it", () => {
    const pr = probe(["/usr/bin/ccache", "/usr/bin/make", "/usr/bin/cmake", "/usr/bin/g++"], { PATH: "/usr/bin", CXX: "ccache g++" });
    expect(findBuildTools(pr).compiler).toBe("/usr/bin/ccache");
    const bad = findBuildTools(probe(["/usr/bin/g++", "/usr/bin/make", "/usr/bin/cmake"], { PATH: "/usr/bin", CXX: "icpx" }));
    expect(bad.missing).toEqual(["the C++ compiler CXX=icpx (not an executable on PATH)"]);
  });
  it("names each missing tool", () => {
    expect(findBuildTools(probe([], { PATH: "/usr/bin" })).missing).toEqual([
      "a C++ compiler (none of c++, g++, clang++ is on PATH, and CXX is not set)",
      "a build tool (neither make nor ninja is on PATH)",
      "CMake (cmake is not on PATH)",
    ]);
    // Windows: cmake-js finds MSVC and its build tool itself; only CMake is looked for.
    expect(findBuildTools(probe([], { Path: "C:\\x" }, "win32")).missing).toEqual(["CMake (cmake is not on PATH)"]);
  });
});

describe("the install decision", () => {
  it("skips in the workspace", () => {
    expect(planInstall({ ...base, workspace: true, prebuilt: { state: "missing", path: "/x" } })).toEqual({
      action: "skip",
      message: "@modulora/kernels: workspace checkout, nothing to install (`pnpm build` builds the addon)",
    });
  });
  it("keeps a prebuilt that loads", () => {
    expect(planInstall(base)).toEqual({ action: "prebuilt", message: "@modulora/kernels: using the prebuilt addon for linux-x64-glibc" });
  });
  it("builds from source with MODULORA_BUILD_FROM_SOURCE=1, without a prebuilt, or when the prebuilt does not load", () => {
    expect(planInstall({ ...base, env: { MODULORA_BUILD_FROM_SOURCE: "1" } })).toEqual({
      action: "build",
      message: "@modulora/kernels: MODULORA_BUILD_FROM_SOURCE=1 asks for a build from source; building from source with cmake-js",
    });
    expect(planInstall({ ...base, env: { MODULORA_BUILD_FROM_SOURCE: "0" } }).action).toBe("prebuilt");
    expect(planInstall({ ...base, triple: "linux-riscv64-glibc", prebuilt: { state: "missing", path: "/x" } }).message).toBe(
      "@modulora/kernels: no prebuilt addon for linux-riscv64-glibc; building from source with cmake-js",
    );
    const glibc = "version `GLIBC_2.17' not found";
    expect(planInstall({ ...base, prebuilt: { state: "fails", path: "/x", error: glibc } })).toEqual({
      action: "build",
      message: `@modulora/kernels: the prebuilt addon for linux-x64-glibc does not load here (${glibc}); building from source with cmake-js`,
    });
  });
  it("without a compiler: fails naming what is missing and what to install", () => {
    const tools = findBuildTools(probe(["/usr/bin/make", "/usr/bin/cmake"], { PATH: "/usr/bin" }));
    const d = planInstall({ ...base, tools, prebuilt: { state: "missing", path: "/x" }, triple: "linux-riscv64-glibc" });
    expect(d).toEqual({
      action: "fail",
      message:
        "@modulora/kernels: no prebuilt addon for linux-riscv64-glibc, and it cannot be built from source here: " +
        "missing a C++ compiler (none of c++, g++, clang++ is on PATH, and CXX is not set). " +
        `Install ${BUILD_TOOLS_HINT}, then run the install again (\`npm install\`; npm rolled this one back, so \`npm rebuild\` would find nothing).`,
    });
    expect(BUILD_TOOLS_HINT).toContain("sudo apt-get install build-essential cmake");
    expect(BUILD_TOOLS_HINT).toContain("sudo dnf install gcc-c++ make cmake");
    expect(BUILD_TOOLS_HINT).toContain("brew install cmake");
  });
});
