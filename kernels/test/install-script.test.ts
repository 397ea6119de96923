// scripts/install.mjs run for real, on a copy of the built package staged under a temporary
// node_modules (as npm would unpack it), with a PATH that holds no compiler, make or cmake.
import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { BUILD_TOOLS_HINT } from "../ts/install-plan.js";
import { currentPlatform, platformTriple } from "../ts/platform.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const triple = platformTriple(currentPlatform());
const builtAddon = join(root, "build", "Release", "modulora_kernels.node");
const temp = mkdtempSync(join(tmpdir(), "modulora-install-"));
const emptyBin = join(temp, "bin");
mkdirSync(emptyBin);
afterAll(() => rmSync(temp, { recursive: true, force: true }));

let n = 0;
/** A copy of the package (dist, scripts, package.json) under <temp>/<n>/node_modules/@modulora/kernels. */
function stage(prebuilt: "real" | "garbage" | "none"): string {
  const pkg = join(temp, String(n++), "node_modules", "@modulora", "kernels");
  mkdirSync(pkg, { recursive: true });
  cpSync(join(root, "dist"), join(pkg, "dist"), { recursive: true });
  cpSync(join(root, "scripts"), join(pkg, "scripts"), { recursive: true });
  copyFileSync(join(root, "package.json"), join(pkg, "package.json"));
  if (prebuilt !== "none") {
    const dir = join(pkg, "prebuilds", triple);
    mkdirSync(dir, { recursive: true });
    if (prebuilt === "real") copyFileSync(builtAddon, join(dir, "modulora_kernels.node"));
    else writeFileSync(join(dir, "modulora_kernels.node"), "not an ELF file");
  }
  return pkg;
}

function install(pkg: string, env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [join(pkg, "scripts", "install.mjs")], { encoding: "utf8", env: { PATH: emptyBin, ...env } });
}

describe("scripts/install.mjs", () => {
  it("has the built package to stage", () => {
    expect(existsSync(join(root, "dist", "install-plan.js")), "run `pnpm --filter @modulora/kernels build` first").toBe(true);
    expect(existsSync(builtAddon)).toBe(true);
  });
  it("keeps a prebuilt that loads, and the loader then loads it", () => {
    const pkg = stage("real");
    const r = install(pkg);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`@modulora/kernels: using the prebuilt addon for ${triple}\n`);
    expect(r.status).toBe(0);
    const script = `import("${join(pkg, "dist", "index.js")}").then((k) => { k.native(); console.log(JSON.stringify(k.addonLoadReport().from)); })`;
    const l = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", env: { PATH: emptyBin } });
    expect(l.stderr).toBe("");
    expect(JSON.parse(l.stdout)).toEqual({ source: "prebuilt", path: join(pkg, "prebuilds", triple, "modulora_kernels.node") });
  });
  it("MODULORA_BUILD_FROM_SOURCE=1 builds from source; without a compiler, make and cmake that is the exact error", () => {
    const r = install(stage("real"), { MODULORA_BUILD_FROM_SOURCE: "1" });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      "@modulora/kernels: MODULORA_BUILD_FROM_SOURCE=1 asks for a build from source, and it cannot be built from source here: " +
        "missing a C++ compiler (none of c++, g++, clang++ is on PATH, and CXX is not set); a build tool (neither make nor ninja is on PATH); CMake (cmake is not on PATH). " +
        `Install ${BUILD_TOOLS_HINT}, then run the install again (\`npm install\`; npm rolled this one back, so \`npm rebuild\` would find nothing).\n`,
    );
  });
  it("a prebuilt that does not load is reported with its load error, then the build from source is tried", () => {
    const r = install(stage("garbage"));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`^@modulora/kernels: the prebuilt addon for ${triple} does not load here \\(Error: .*modulora_kernels.node: file too short\\), and it cannot be built from source here: missing a C\\+\\+ compiler`),
    );
  });
  it("without a prebuilt, says so", () => {
    const r = install(stage("none"));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^@modulora/kernels: no prebuilt addon for ${triple}, and it cannot be built from source here: missing`));
  });
  it("does nothing in the workspace checkout", () => {
    const r = install(root);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("@modulora/kernels: workspace checkout, nothing to install (`pnpm build` builds the addon)\n");
  });
});
