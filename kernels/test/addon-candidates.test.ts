import { describe, expect, it } from "vitest";
import { addonCandidatesFor, addonNotFoundMessage, loadFirstAddon, type AddonContext, type AddonIo } from "../ts/loader.js";
import { cudaPackageNote } from "../ts/cuda.js";
import { compareVersions, platformTriple } from "../ts/platform.js";

const linux: AddonContext = {
  packageRoot: "/app/node_modules/@modulora/kernels",
  platform: { platform: "linux", arch: "x64", libc: "glibc", glibcVersion: "2.31" },
  workspace: false,
};
const R = "/app/node_modules/@modulora/kernels";
const CUDA = "/app/node_modules/@modulora/kernels-cuda/build/Release/modulora_kernels.node";
const RELEASE = `${R}/build/Release/modulora_kernels.node`;
const DEBUG = `${R}/build/Debug/modulora_kernels.node`;
const PREBUILT = `${R}/prebuilds/linux-x64-glibc/modulora_kernels.node`;

/** A fake filesystem: `files` maps a path to what loading it does (an addon object, or an error to throw). */
function fakeIo(files: Record<string, object | Error>): AddonIo & { loaded: string[] } {
  const loaded: string[] = [];
  return {
    loaded,
    exists: (p) => p in files,
    load: (p) => {
      loaded.push(p);
      const v = files[p]!;
      if (v instanceof Error) throw v;
      return v;
    },
  };
}

describe("platform triples", () => {
  it("names linux by libc, others by platform and arch", () => {
    expect(platformTriple({ platform: "linux", arch: "x64", libc: "glibc" })).toBe("linux-x64-glibc");
    expect(platformTriple({ platform: "linux", arch: "arm64", libc: "musl" })).toBe("linux-arm64-musl");
    expect(platformTriple({ platform: "darwin", arch: "arm64" })).toBe("darwin-arm64");
    expect(platformTriple({ platform: "win32", arch: "x64" })).toBe("win32-x64");
  });
  it("compares glibc versions numerically", () => {
    expect(compareVersions("2.17", "2.4")).toBeGreaterThan(0);
    expect(compareVersions("2.2.5", "2.17")).toBeLessThan(0);
    expect(compareVersions("2.17", "2.17.0")).toBe(0);
  });
});

describe("addon candidates", () => {
  it("without an override: the CUDA package, the source builds, then the prebuilt of this platform", () => {
    expect(addonCandidatesFor({ ...linux, cudaPackageRoot: "/app/node_modules/@modulora/kernels-cuda" })).toEqual([
      { source: "cuda", path: CUDA },
      { source: "source", path: RELEASE },
      { source: "source", path: DEBUG },
      { source: "prebuilt", path: PREBUILT },
    ]);
    expect(addonCandidatesFor({ ...linux, platform: { platform: "linux", arch: "arm64", libc: "musl" } }).map((c) => c.path)).toEqual([
      RELEASE,
      DEBUG,
      `${R}/prebuilds/linux-arm64-musl/modulora_kernels.node`,
    ]);
  });
  it("an override is the only candidate, even with the CUDA package installed", () => {
    const ctx = { ...linux, override: { env: "MODULORA_KERNELS_ADDON", path: "/x.node" }, cudaPackageRoot: "/c" };
    expect(addonCandidatesFor(ctx)).toEqual([{ source: "override", path: "/x.node" }]);
  });
});

describe("loading the first addon that loads", () => {
  it("uses the prebuilt when there is no source build", () => {
    const io = fakeIo({ [PREBUILT]: { abiVersion: 1 } });
    const r = loadFirstAddon<{ abiVersion: number }>(linux, io);
    expect(r.addon.abiVersion).toBe(1);
    expect(r.from).toEqual({ source: "prebuilt", path: PREBUILT });
    expect(r.attempts.map((a) => a.outcome)).toEqual(["missing", "missing", "loaded"]);
    expect(io.loaded).toEqual([PREBUILT]);
  });
  it("a source build wins over the prebuilt; one that fails to load falls through to the prebuilt", () => {
    expect(loadFirstAddon(linux, fakeIo({ [RELEASE]: { a: "src" }, [PREBUILT]: { a: "pre" } })).addon).toEqual({ a: "src" });
    const r = loadFirstAddon(linux, fakeIo({ [RELEASE]: new Error("invalid ELF header"), [PREBUILT]: { a: "pre" } }));
    expect(r.addon).toEqual({ a: "pre" });
    expect(r.attempts[0]).toEqual({ source: "source", path: RELEASE, outcome: "failed", error: "invalid ELF header" });
  });
  it("prefers the CUDA package's addon, and falls back to the CPU addon without a word when it does not load", () => {
    const ctx = { ...linux, cudaPackageRoot: "/app/node_modules/@modulora/kernels-cuda" };
    expect(loadFirstAddon(ctx, fakeIo({ [CUDA]: { cuda: {} }, [PREBUILT]: { a: "pre" } })).addon).toEqual({ cuda: {} });
    const err = new Error("libcudart.so.13: cannot open shared object file: No such file or directory");
    const r = loadFirstAddon(ctx, fakeIo({ [CUDA]: err, [PREBUILT]: { a: "pre" } }));
    expect(r.from.source).toBe("prebuilt");
    expect(cudaPackageNote(r.attempts)).toBe(
      `@modulora/kernels-cuda is installed but its addon at ${CUDA} failed to load (${err.message}), so the CPU addon was loaded instead`,
    );
    const notBuilt = loadFirstAddon(ctx, fakeIo({ [PREBUILT]: {} }));
    expect(cudaPackageNote(notBuilt.attempts)).toMatch(/^@modulora\/kernels-cuda is installed but its addon was not built \(.+ not found\): reinstall it/);
    expect(cudaPackageNote(loadFirstAddon(linux, fakeIo({ [PREBUILT]: {} })).attempts)).toMatch(/^or install @modulora\/kernels-cuda, which builds/);
  });
  it("an override that fails to load is an error at once, naming the variable", () => {
    const ctx = { ...linux, override: { env: "MODULORA_KERNELS_ADDON", path: "/x.node" } };
    expect(() => loadFirstAddon(ctx, fakeIo({ "/x.node": new Error("bad"), [PREBUILT]: {} }))).toThrow(
      "@modulora/kernels: failed to load the addon at /x.node (from MODULORA_KERNELS_ADDON): bad",
    );
  });
  it("when nothing loads: the platform, every path with what happened, the first load error, and what to do", () => {
    const glibcErr = "/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found";
    const ctx = { ...linux, bugsUrl: "https://example.org/issues" };
    let message = "";
    try {
      loadFirstAddon(ctx, fakeIo({ [PREBUILT]: new Error(glibcErr) }));
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe(
      [
        `@modulora/kernels: no native addon could be loaded on linux-x64-glibc, glibc 2.31, Node ${process.version}. Tried:`,
        `  - build from source ${RELEASE}: not found`,
        `  - build from source ${DEBUG}: not found`,
        `  - prebuilt ${PREBUILT}: failed to load: ${glibcErr}`,
        `The first load error (prebuilt): ${glibcErr}`,
        "To fix: build it from source: install a C++17 compiler, make (or ninja) and CMake >= 3.18 (Debian/Ubuntu: `sudo apt-get install build-essential cmake`; " +
          "Fedora/RHEL: `sudo dnf install gcc-c++ make cmake`; Alpine: `apk add build-base cmake`; macOS: `xcode-select --install` and `brew install cmake`; " +
          'Windows: Visual Studio Build Tools with "Desktop development with C++", and CMake), then reinstall with MODULORA_BUILD_FROM_SOURCE=1 ' +
          "(e.g. `MODULORA_BUILD_FROM_SOURCE=1 npm rebuild @modulora/kernels`); or set MODULORA_KERNELS_ADDON to the path of a built modulora_kernels.node.",
        "If a prebuilt binary should work here (linux-x64 and linux-arm64 with glibc, see docs/install.md), please file an issue at https://example.org/issues with this message.",
      ].join("\n"),
    );
  });
  it("in the workspace, the error says how to build it there", () => {
    const ctx = { ...linux, packageRoot: "/src/kernels", workspace: true };
    expect(() => loadFirstAddon(ctx, fakeIo({}))).toThrow(
      '@modulora/kernels: modulora_kernels.node not found (build it with "pnpm --filter @modulora/kernels build", or set MODULORA_KERNELS_ADDON (or MODULORA_KERNELS_PATH) to its path). ' +
        "Tried: /src/kernels/build/Release/modulora_kernels.node, /src/kernels/build/Debug/modulora_kernels.node, /src/kernels/prebuilds/linux-x64-glibc/modulora_kernels.node",
    );
    expect(addonNotFoundMessage(ctx, [])).toContain("pnpm --filter @modulora/kernels build");
  });
});
