// The decisions of the install script (scripts/install.mjs), as pure functions of what it found,
// so that each branch is tested without a compiler, a prebuilt or a child process.
import { accessSync, constants, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, isAbsolute, join } from "node:path";

/** `MODULORA_BUILD_FROM_SOURCE=1` makes the install build the addon even where a prebuilt loads. */
export const BUILD_FROM_SOURCE_ENV = "MODULORA_BUILD_FROM_SOURCE";

/** What to install for a build from source, per system (the package names of each package manager). */
export const BUILD_TOOLS_HINT =
  "a C++17 compiler, make (or ninja) and CMake >= 3.18 (Debian/Ubuntu: `sudo apt-get install build-essential cmake`; " +
  "Fedora/RHEL: `sudo dnf install gcc-c++ make cmake`; Alpine: `apk add build-base cmake`; " +
  "macOS: `xcode-select --install` and `brew install cmake`; Windows: Visual Studio Build Tools with \"Desktop development with C++\", and CMake)";

/** How tools are looked up: the environment, the platform, and a test for an executable file. */
export interface ToolProbe {
  env: Record<string, string | undefined>;
  platform: string;
  isExecutable(path: string): boolean;
}

/**
 * The first executable called `name` on the probe's PATH (with PATHEXT on Windows), or `name`
 * itself when it is a path to an executable; undefined when none is found.
 */
export function findOnPath(name: string, probe: ToolProbe): string | undefined {
  if (isAbsolute(name) || name.includes("/")) return probe.isExecutable(name) ? name : undefined;
  const sepChar = probe.platform === "win32" ? ";" : ":";
  const dirs = (probe.env.PATH ?? probe.env.Path ?? "").split(sepChar).filter(Boolean);
  const exts = probe.platform === "win32" ? ["", ...(probe.env.PATHEXT ?? ".EXE;.CMD;.BAT").split(";")] : [""];
  for (const dir of dirs) {
    for (const ext of exts) {
      const p = join(dir, name + ext);
      if (probe.isExecutable(p)) return p;
    }
  }
  return undefined;
}

/** The tools a build from source needs, as found (a path) or not (undefined). */
export interface BuildTools {
  /** The C++ compiler: `$CXX`, else `c++`, `g++` or `clang++` on PATH. On Windows, cmake-js finds MSVC itself. */
  compiler?: string;
  cmake?: string;
  /** `ninja` or `make` (cmake-js prefers ninja). On Windows, part of Visual Studio. */
  buildTool?: string;
  /** What is missing, in words, for the error message; empty when the build can run. */
  missing: string[];
}

/** Looks for the compiler, CMake and a build tool. */
export function findBuildTools(probe: ToolProbe): BuildTools {
  const tools: BuildTools = { missing: [] };
  const windows = probe.platform === "win32";
  if (!windows) {
    const cxx = probe.env.CXX?.trim().split(/\s+/)[0];
    const names = cxx ? [cxx] : ["c++", "g++", "clang++"];
    for (const n of names) {
      tools.compiler ??= findOnPath(n, probe);
    }
    if (!tools.compiler) {
      tools.missing.push(cxx ? `the C++ compiler CXX=${probe.env.CXX} (not an executable on PATH)` : "a C++ compiler (none of c++, g++, clang++ is on PATH, and CXX is not set)");
    }
    tools.buildTool = findOnPath("ninja", probe) ?? findOnPath("make", probe);
    if (!tools.buildTool) tools.missing.push("a build tool (neither make nor ninja is on PATH)");
  }
  const cmake = probe.env.CMAKE_JS_CMAKE_PATH;
  tools.cmake = cmake ? findOnPath(cmake, probe) : findOnPath("cmake", probe);
  if (!tools.cmake) tools.missing.push("CMake (cmake is not on PATH)");
  return tools;
}

/** The error when a build from source cannot run: what is missing and what to install. */
export function missingToolsMessage(packageName: string, why: string, missing: readonly string[]): string {
  return (
    `${packageName}: ${why}, and it cannot be built from source here: missing ${missing.join("; ")}. ` +
    `Install ${BUILD_TOOLS_HINT}, then run the install again (\`npm install\`; npm rolled this one back, so \`npm rebuild\` would find nothing).`
  );
}

/** What the install found for the prebuilt of this platform. */
export type PrebuiltState =
  | { state: "missing"; path: string }
  | { state: "loads"; path: string }
  | { state: "fails"; path: string; error: string };

/** Everything the install decision depends on. */
export interface InstallInputs {
  /** The platform triple, e.g. `linux-x64-glibc`. */
  triple: string;
  /** This package is the monorepo's source folder: `pnpm build` builds the addon, the install does nothing. */
  workspace: boolean;
  env: Record<string, string | undefined>;
  prebuilt: PrebuiltState;
  tools: BuildTools;
}

/** What the install does: nothing, keep the prebuilt, build from source, or fail with a message. */
export type InstallDecision =
  | { action: "skip"; message: string }
  | { action: "prebuilt"; message: string }
  | { action: "build"; message: string }
  | { action: "fail"; message: string };

/**
 * The install decision: in the workspace, skip; with a prebuilt that loads (in a child process)
 * and without `MODULORA_BUILD_FROM_SOURCE=1`, keep it; otherwise build from source when the
 * tools are there, else fail naming what is missing and what to install.
 */
export function planInstall(inp: InstallInputs): InstallDecision {
  const pkg = "@modulora/kernels";
  if (inp.workspace) return { action: "skip", message: `${pkg}: workspace checkout, nothing to install (\`pnpm build\` builds the addon)` };
  const forced = inp.env[BUILD_FROM_SOURCE_ENV] === "1";
  const pb = inp.prebuilt;
  if (!forced && pb.state === "loads") return { action: "prebuilt", message: `${pkg}: using the prebuilt addon for ${inp.triple}` };
  let why = `${BUILD_FROM_SOURCE_ENV}=1 asks for a build from source`;
  if (!forced) why = pb.state === "fails" ? `the prebuilt addon for ${inp.triple} does not load here (${pb.error})` : `no prebuilt addon for ${inp.triple}`;
  if (inp.tools.missing.length > 0) return { action: "fail", message: missingToolsMessage(pkg, why, inp.tools.missing) };
  return { action: "build", message: `${pkg}: ${why}; building from source with cmake-js` };
}

/** Whether `path` is an executable file (the install scripts' {@link ToolProbe.isExecutable}). */
export function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The cmake-js command-line script that the package at `packageRoot` depends on (run it with `process.execPath`). */
export function cmakeJsCli(packageRoot: string): string {
  return join(dirname(createRequire(join(packageRoot, "package.json")).resolve("cmake-js/package.json")), "bin", "cmake-js");
}
