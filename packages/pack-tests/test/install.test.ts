// The published packages as a user gets them: `pnpm pack` of every published workspace package
// (what each tarball holds, its size), then an empty project outside the workspace that installs
// the tarballs with `npm install --offline` and uses them: import and require(), a type-check of
// the declarations with skipLibCheck false, a LoRA fine-tuning step on tiny-llama, and the
// example of every library README. The install runs with no compiler on the PATH (the kernels keep
// their prebuilt addon); then, without the prebuilt, the same install fails naming what to install
// when there is no compiler, and `npm rebuild` with one builds the addon from source.
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { currentPlatform, platformTriple } from "@modulora/kernels";
import { BUILD_TOOLS_HINT } from "@modulora/kernels/install";
import {
  REPO_ROOT, addToTarball, binFolderWith, copyTarballWithout, envWithout, forbiddenFiles, kib, manifestTargets, npmInstallOffline, npmRebuildOffline,
  packInstalled, packPackage, publishedPackages, readTarball, run, thirdPartyClosure, workspacePackages, writeConsumer,
  type ConsumerSpec, type RunResult, type TarEntry, type WorkspacePackage,
} from "../src/index.js";

const FIXTURE = join(REPO_ROOT, "fixtures", "tiny-llama");
const CONSUMER_FILES = join(import.meta.dirname, "..", "consumer");
const TSC = join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc");

const published = publishedPackages();
const workspaceNames = new Set(workspacePackages().map((p) => p.name));
const byName = new Map(published.map((p) => [p.name, p]));

/** The published packages, as this repository has them today (a new one must be added here on purpose). */
const EXPECTED_PUBLISHED = [
  "@modulora/bench", "@modulora/cli", "@modulora/core", "@modulora/data", "@modulora/distributed", "@modulora/kernels", "@modulora/kernels-cuda", "@modulora/llama",
  "@modulora/quantizer-hqq", "@modulora/quantizer-nf4", "@modulora/quantizer-optq", "@modulora/quantizer-rtn", "@modulora/tensor",
];
/** Packages whose tarball carries sources on purpose: the native addon's C++ (built from source at install). */
const SHIPS_SOURCES = new Set(["@modulora/kernels", "@modulora/kernels-cuda"]);
/** What the consumer project installs: the library packages, every quantizer plugin and the kernels. */
const CONSUMER_INSTALLS = [
  "@modulora/kernels", "@modulora/tensor", "@modulora/core", "@modulora/data", "@modulora/llama",
  "@modulora/quantizer-rtn", "@modulora/quantizer-optq", "@modulora/quantizer-nf4", "@modulora/quantizer-hqq",
];

let tmp = "";
const tarballs = new Map<string, string>();
const listings = new Map<string, TarEntry[]>();

/**
 * The kernels' prepack builds portable prebuilt addons (minutes of compiling, tested by the kernels
 * package itself); here it is skipped (MODULORA_SKIP_PREBUILD=1) and the addon `pnpm build` made
 * goes where that prebuild puts this platform's, `prebuilds/<triple>/modulora_kernels.node`.
 */
const ADDON = join(REPO_ROOT, "kernels", "build", "Release", "modulora_kernels.node");
const TRIPLE = platformTriple(currentPlatform());
const PREBUILT = `prebuilds/${TRIPLE}/modulora_kernels.node`;
/** The kernels' tarball without its prebuilds/ folder: what a platform with no prebuilt gets. */
let kernelsNoPrebuilt = "";
/** What the consumer project installs (the tarballs), kept for the installs without the prebuilt. */
let consumerSpec: ConsumerSpec | undefined;

/** The tools on the PATH of the installs "with no compiler": no c++, make, ninja or cmake. */
const NO_COMPILER_TOOLS = ["node", "npm", "sh"];
let noCompilerBin = "";
/** This environment with a PATH of {@link NO_COMPILER_TOOLS} only (and no CXX, CMake or addon override). */
const noCompilerEnv = (): NodeJS.ProcessEnv => envWithout(process.env, { PATH: noCompilerBin });

/** Which addon `import("@modulora/kernels")` loads in `cwd`: `addonLoadReport().from`. */
function loadedAddon(cwd: string): { status: number | null; stderr: string; from?: { source: string; path: string } } {
  const r = run(process.execPath, ["--input-type=module", "-e", 'const k = await import("@modulora/kernels"); console.log(JSON.stringify(k.addonLoadReport().from))'], { cwd, env: envWithout(process.env) });
  return r.status === 0 ? { status: 0, stderr: r.stderr, from: JSON.parse(r.stdout.trim().split("\n").pop()!) } : { status: r.status, stderr: r.stderr };
}

/** The result line of consumer/finetune-step.mjs. */
interface StepResult { bitsPerWeight: number; factors: number; tokens: number; baseLoss: number; losses: number[] }

/** Runs consumer/finetune-step.mjs in a consumer project. */
function finetuneStep(consumer: string): StepResult {
  const r = run(process.execPath, [join(consumer, "finetune-step.mjs"), FIXTURE], { cwd: consumer, env: envWithout(process.env), timeout: 180_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as StepResult;
}

/** The same script against the workspace's own packages (resolved from this package). */
function workspaceStep(): StepResult {
  const here = join(import.meta.dirname, "..", ".finetune-step.workspace.mjs");
  copyFileSync(join(CONSUMER_FILES, "finetune-step.mjs"), here);
  try {
    const r = run(process.execPath, [here, FIXTURE], { cwd: REPO_ROOT, env: envWithout(process.env), timeout: 180_000 });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split("\n").pop()!) as StepResult;
  } finally {
    rmSync(here, { force: true });
  }
}

/** The checks of a fine-tune step against the workspace's: shapes, B = 0 at the start, a step that lowers the loss, equal losses. */
function expectStepLike(got: StepResult, ref: StepResult): void {
  expect(got.factors).toBe(4 * 7 * 2); // A and B on the 7 linears of 4 blocks
  expect(got.bitsPerWeight).toBe(ref.bitsPerWeight);
  expect(Number.isFinite(got.baseLoss) && got.baseLoss > 0).toBe(true);
  expect(Math.abs(got.losses[0]! - got.baseLoss)).toBeLessThanOrEqual(1e-5 * got.baseLoss); // B = 0: the adapter starts as the identity
  expect(got.losses[1]).toBeLessThan(got.losses[0]!); // one AdamW step lowers the loss on its own batch
  for (let i = 0; i < 2; i++) expect(Math.abs(got.losses[i]! - ref.losses[i]!)).toBeLessThanOrEqual(1e-5 * ref.losses[i]!);
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-pack-"));
  mkdirSync(join(tmp, "tarballs"));
  noCompilerBin = binFolderWith(join(tmp, "bin-no-compiler"), NO_COMPILER_TOOLS);
  for (const pkg of published) {
    const tgz = packPackage(pkg, join(tmp, "tarballs"), { ...process.env, MODULORA_SKIP_PREBUILD: "1" });
    if (pkg.name === "@modulora/kernels" && !readTarball(tgz).some((e) => e.path === PREBUILT)) {
      if (!existsSync(ADDON)) throw new Error(`${ADDON} is missing: run pnpm build first`);
      addToTarball(tgz, PREBUILT, ADDON);
    }
    if (pkg.name === "@modulora/kernels") kernelsNoPrebuilt = copyTarballWithout(tgz, join(tmp, "tarballs-no-prebuilt", "modulora-kernels.tgz"), "prebuilds");
    tarballs.set(pkg.name, tgz);
    listings.set(pkg.name, readTarball(tgz));
  }
  const rows = published.map((p) => {
    const files = listings.get(p.name)!;
    return { package: p.name, files: files.length, packed: kib(readFileSync(tarballs.get(p.name)!).length), unpacked: kib(files.reduce((s, f) => s + f.size, 0)) };
  });
  console.log("pnpm pack, every published package:");
  console.table(rows);
}, 600_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function tarFileText(pkg: string, path: string): string {
  const dir = join(tmp, "extract", pkg.replace("/", "__"));
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true });
    const r = run("tar", ["-xzf", tarballs.get(pkg)!, "-C", dir], { cwd: tmp });
    if (r.status !== 0) throw new Error(`tar -xzf ${tarballs.get(pkg)}: ${r.stderr}`);
  }
  return readFileSync(join(dir, "package", path), "utf8");
}

describe("pnpm pack", () => {
  it("packs every published package (every workspace package that is not private), and no private one", () => {
    expect(published.map((p) => p.name).sort()).toEqual(EXPECTED_PUBLISHED);
    expect(workspaceNames.has("@modulora/example-kmeans")).toBe(true);
    expect(byName.has("@modulora/example-kmeans")).toBe(false);
    for (const pkg of published) console.log(`${pkg.name} (${pkg.relDir}): ${listings.get(pkg.name)!.map((e) => e.path).join(", ")}`);
  });

  it.each(published.map((p) => p.name))("%s: no test files, fixtures or build configs (and no sources, except the addon's C++)", (name) => {
    expect(forbiddenFiles(listings.get(name)!, { allowSources: SHIPS_SOURCES.has(name) })).toEqual([]);
  });

  it.each(published.map((p) => p.name))("%s: every path package.json points at (exports, main, types, bin) is in the tarball", (name) => {
    const files = new Set(listings.get(name)!.map((e) => e.path));
    const manifest = JSON.parse(tarFileText(name, "package.json"));
    const targets = manifestTargets(manifest);
    expect(targets.length).toBeGreaterThan(0);
    expect(targets.filter((t) => !files.has(t))).toEqual([]);
    // Every export resolves for import() and require() alike: types, import and default conditions.
    for (const [key, value] of Object.entries(manifest.exports as Record<string, unknown>)) {
      if (key === "./package.json") continue;
      expect(Object.keys(value as object), `${name} exports["${key}"]`).toEqual(["types", "import", "default"]);
    }
  });

  it.each(published.map((p) => p.name))("%s: the packed package.json has its metadata and no workspace: specs", (name) => {
    const pkg = byName.get(name)!;
    const m = JSON.parse(tarFileText(name, "package.json"));
    expect(typeof m.description === "string" && m.description.length > 20).toBe(true);
    expect(m.license).toBe("Apache-2.0");
    expect(m.repository).toEqual({ type: "git", url: "git+https://github.com/modulora-ts/modulora-ts.git", directory: pkg.relDir });
    expect(m.homepage).toBe(`https://github.com/modulora-ts/modulora-ts/tree/main/${pkg.relDir}#readme`);
    expect(m.bugs).toEqual({ url: "https://github.com/modulora-ts/modulora-ts/issues" });
    expect(m.engines).toEqual({ node: ">=20.19" });
    expect(Array.isArray(m.keywords) && m.keywords.includes("modulora")).toBe(true);
    expect(Array.isArray(m.files) && m.files.includes("dist")).toBe(true);
    const specs = Object.entries({ ...m.dependencies, ...m.optionalDependencies, ...m.peerDependencies }).filter(([, v]) => String(v).startsWith("workspace:"));
    expect(specs).toEqual([]);
    for (const [dep, spec] of Object.entries({ ...m.dependencies } as Record<string, string>)) {
      if (workspaceNames.has(dep)) expect(spec, `${name} → ${dep}`).toBe(byName.get(dep)!.version);
    }
  });

  it.each(published.map((p) => p.name))("%s: the README says what it is, how to install it, shows an example and links the docs", (name) => {
    const readme = tarFileText(name, "README.md");
    expect(readme.startsWith(`# ${name}\n`)).toBe(true);
    expect(readme).toMatch(/^## Install$/m);
    expect(readme).toMatch(new RegExp(`(npm install|pnpm add)[^\\n]*${name.replace("/", "\\/")}(\\s|$)`));
    // An example: a code block other than the install commands.
    expect([...readme.matchAll(/^```(ts|js|bash|sh)$/gm)].length).toBeGreaterThanOrEqual(2);
    expect(readme).toMatch(/docs\/[a-z-]+\.md|\/tree\/main\/docs/);
  });

  it("@modulora/bench ships the data its defaults read", () => {
    const files = listings.get("@modulora/bench")!.map((e) => e.path);
    for (const f of ["data/lm/valid.txt", "data/lm/calib-small.txt", "data/spam/train.jsonl", "data/spam/valid.jsonl"]) expect(files).toContain(f);
  });

  it("@modulora/core/testing declares vitest as an optional peer covering vitest 3, 4 and 5", () => {
    const m = JSON.parse(tarFileText("@modulora/core", "package.json"));
    expect(m.peerDependencies.vitest).toBe(">=3 <6");
    expect(m.peerDependenciesMeta.vitest).toEqual({ optional: true });
    expect(m.exports["./testing"]).toEqual({ types: "./dist/testing/index.d.ts", import: "./dist/testing/index.js", default: "./dist/testing/index.js" });
  });
});

describe("npm install --offline of the tarballs into an empty project", () => {
  let consumer = "";
  let install: RunResult = { status: null, stdout: "", stderr: "not run" };
  const node = (args: string[], cwd = consumer) => run(process.execPath, args, { cwd, timeout: 180_000 });

  beforeAll(() => {
    consumer = join(tmp, "consumer");
    const ours = CONSUMER_INSTALLS.map((n) => {
      const p = byName.get(n);
      if (!p) throw new Error(`${n} is not a published workspace package`);
      return p;
    });
    const typesNode: WorkspacePackage = { name: "consumer-dev-tools", version: "0.0.0", dir: REPO_ROOT, relDir: ".", manifest: { name: "consumer-dev-tools", version: "0.0.0", dependencies: { "@types/node": "*" } } };
    const thirdParty = thirdPartyClosure([...ours, typesNode], workspaceNames);
    mkdirSync(join(tmp, "third-party"));
    const all: Record<string, string> = {};
    for (const p of ours) all[p.name] = tarballs.get(p.name)!;
    for (const p of thirdParty) all[p.name] = packInstalled(p, join(tmp, "third-party", `${p.name.replace("/", "__")}-${p.version}.tgz`));
    console.log(`third-party packages packed from the workspace's pnpm store: ${thirdParty.map((p) => `${p.name}@${p.version}`).join(", ")}`);
    consumerSpec = {
      dependencies: Object.fromEntries(ours.map((p) => [p.name, all[p.name]!])),
      devDependencies: { "@types/node": all["@types/node"]! },
      tarballs: all,
    };
    writeConsumer(consumer, consumerSpec);
    for (const f of ["finetune-step.mjs", "require-check.cjs", "api.mts", "tokenizers-direct.mts"]) copyFileSync(join(CONSUMER_FILES, f), join(consumer, f));
    const t0 = performance.now();
    install = npmInstallOffline(consumer, noCompilerEnv());
    console.log(`npm install --offline (PATH: ${NO_COMPILER_TOOLS.join(", ")} only): exit ${install.status} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n${install.stdout}${install.stderr}`);
  }, 600_000);

  it("installs with no compiler, make or CMake on the PATH: the install hook keeps the prebuilt addon, and that is the one that loads", () => {
    for (const tool of ["c++", "g++", "clang++", "cc", "make", "ninja", "cmake"]) expect(existsSync(join(noCompilerBin, tool)), tool).toBe(false);
    expect(install.status, install.stderr).toBe(0);
    // The hook's own line (scripts/install.mjs prints the plan's message), and nothing built.
    expect(install.stdout).toContain(`\n@modulora/kernels: using the prebuilt addon for ${TRIPLE}\n`);
    expect(install.stdout + install.stderr).not.toContain("building from source");
    const kernels = join(consumer, "node_modules", "@modulora", "kernels");
    expect(existsSync(join(kernels, "build")), "no build/ folder: nothing was compiled").toBe(false);
    const loaded = loadedAddon(consumer);
    expect(loaded.status, loaded.stderr).toBe(0);
    expect(loaded.from).toEqual({ source: "prebuilt", path: join(kernels, PREBUILT) });
  });

  it("installs with an empty npm cache and a registry that cannot answer (nothing fetched)", () => {
    expect(install.status, install.stderr).toBe(0);
    for (const n of CONSUMER_INSTALLS) {
      const dir = join(consumer, "node_modules", n);
      expect(lstatSync(dir).isSymbolicLink(), `${n} is a copy, not a link into the workspace`).toBe(false);
      expect(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).version).toBe(byName.get(n)!.version);
    }
    expect(existsSync(join(consumer, "node_modules", "vitest"))).toBe(false);
  });

  it("import() and, from a CommonJS file, require() of @modulora/core and @modulora/llama give the same exports", () => {
    const cjs = node([join(consumer, "require-check.cjs")]);
    expect(cjs.status, cjs.stderr).toBe(0);
    const required = JSON.parse(cjs.stdout.trim().split("\n").pop()!) as Record<string, string[]>;
    for (const mod of ["@modulora/core", "@modulora/llama"]) {
      const esm = node(["--input-type=module", "-e", `const m = await import(${JSON.stringify(mod)}); console.log(JSON.stringify(Object.keys(m).sort()))`]);
      expect(esm.status, esm.stderr).toBe(0);
      const imported = JSON.parse(esm.stdout.trim().split("\n").pop()!) as string[];
      expect(imported.length).toBeGreaterThan(50);
      expect(required[mod]).toEqual(imported);
    }
    expect(required["@modulora/core"]).toContain("Trainer");
    expect(required["@modulora/llama"]).toContain("attachLoRA");
  });

  it("@modulora/core/testing without vitest throws an Error that says to install vitest", () => {
    const peer = JSON.parse(readFileSync(join(consumer, "node_modules", "@modulora", "core", "package.json"), "utf8")).peerDependencies.vitest;
    const r = node(["--input-type=module", "-e", `try { await import("@modulora/core/testing"); console.log("{}"); } catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message, code: e.code ?? null, cause: e.cause?.code ?? null })); }`]);
    expect(r.status, r.stderr).toBe(0);
    const err = JSON.parse(r.stdout.trim());
    expect(err.name).toBe("Error");
    expect(err.code).toBe(null); // not Node's raw ERR_MODULE_NOT_FOUND...
    expect(err.cause).toBe("ERR_MODULE_NOT_FOUND"); // ...which is kept as the cause
    expect(err.message).toContain(`@modulora/core/testing needs vitest (${peer})`);
    expect(err.message).toContain("npm install --save-dev vitest");
  });

  const tsc = (name: string, options: Record<string, unknown>, file: string): RunResult => {
    const tsconfig = { compilerOptions: { target: "ES2022", lib: ["ES2022"], types: ["node"], strict: true, noEmit: true, skipLibCheck: false, ...options }, files: [file] };
    writeFileSync(join(consumer, `tsconfig.${name}.json`), JSON.stringify(tsconfig, null, 2));
    return run(process.execPath, [TSC, "-p", `tsconfig.${name}.json`], { cwd: consumer, timeout: 180_000 });
  };

  it.each([
    ["node16", { module: "node16", moduleResolution: "node16" }],
    ["bundler", { module: "esnext", moduleResolution: "bundler" }],
  ] as const)("the declarations type-check with skipLibCheck false under moduleResolution %s", (name, options) => {
    const r = tsc(name, options, "api.mts");
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("control: the same check reports TS2834 for @huggingface/tokenizers' own declarations (which ours no longer import)", () => {
    const r = tsc("control", { module: "node16", moduleResolution: "node16" }, "tokenizers-direct.mts");
    expect(r.status).not.toBe(0);
    expect(r.stdout).toContain("error TS2834");
    expect(r.stdout).toContain("@huggingface/tokenizers");
    const ours = readFileSync(join(consumer, "node_modules", "@modulora", "llama", "dist", "index.d.ts"), "utf8");
    expect(ours).not.toContain("@huggingface/tokenizers'");
  });

  it("a LoRA fine-tuning step on tiny-llama (RTN 4-bit, attachLoRA, AdamW) runs from the installed packages, as in the workspace", () => {
    const got = finetuneStep(consumer);
    console.log(`fine-tune step from the tarballs: ${JSON.stringify(got)}`);
    const ref = workspaceStep();
    console.log(`the same step in the workspace:   ${JSON.stringify(ref)}`);
    expectStepLike(got, ref);
  });
});

describe("README examples", () => {
  /** The code block under "## Example" of a package's README. */
  const example = (pkg: WorkspacePackage): string => {
    const readme = readFileSync(join(pkg.dir, "README.md"), "utf8");
    const m = /^## Example\n[\s\S]*?^```ts\n([\s\S]*?)^```$/m.exec(readme);
    if (!m) throw new Error(`${pkg.relDir}/README.md has no \`\`\`ts block under "## Example"`);
    return m[1]!;
  };
  /** What each example prints (a line it must contain), checked against the library's own numbers. */
  const EXAMPLES: [string, RegExp][] = [
    ["@modulora/tensor", /^step 50 {2}loss \d+\.\d{4}$/m],
    ["@modulora/core", /\[\[8,256\],\[128,8\]\]|\[ \[ 8, 256 \], \[ 128, 8 \] \]/],
    ["@modulora/data", /^\d+ examples, labels/m],
    ["@modulora/llama", /^\d+\.\d+\n\d+\.\d+\n\d+\.\d+$/m],
    ["@modulora/quantizer-rtn", /^affine 4 64$/m],
    ["@modulora/quantizer-optq", /^model\.layers\.0\.self_attn\.q_proj 3\.\d{3} \d\.\d{4}$/m],
    ["@modulora/quantizer-nf4", /^codebook 4$/m],
    ["@modulora/quantizer-hqq", /^affine real$/m],
  ];

  it.each(EXAMPLES)("the example of %s runs from the installed tarballs", (name, expected) => {
    const consumer = join(tmp, "consumer");
    expect(existsSync(join(consumer, "node_modules", name)), `${name} installed in the consumer`).toBe(true);
    const file = join(consumer, `readme-${name.replace(/^@modulora\//, "")}.mjs`);
    writeFileSync(file, example(byName.get(name)!));
    const r = run(process.execPath, [file], { cwd: REPO_ROOT, timeout: 180_000 });
    expect(r.status, r.stderr).toBe(0);
    console.log(`${name} README example:\n${r.stdout}`);
    expect(r.stdout).toMatch(expected);
  });
});

describe("without the prebuilt addon", () => {
  it("and with no compiler or CMake on the PATH, the same install fails (exit != 0), says what to install, and leaves no package behind", () => {
    const consumer = join(tmp, "consumer-no-prebuilt");
    const spec = consumerSpec!;
    writeConsumer(consumer, {
      ...spec,
      dependencies: { ...spec.dependencies, "@modulora/kernels": kernelsNoPrebuilt },
      tarballs: { ...spec.tarballs, "@modulora/kernels": kernelsNoPrebuilt },
    });
    copyFileSync(join(CONSUMER_FILES, "finetune-step.mjs"), join(consumer, "finetune-step.mjs"));
    expect(readTarball(kernelsNoPrebuilt).filter((e) => e.path.startsWith("prebuilds/"))).toEqual([]);
    const t0 = performance.now();
    const r = npmInstallOffline(consumer, noCompilerEnv());
    console.log(`npm install --offline without the prebuilt, no compiler: exit ${r.status} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n${r.stdout}${r.stderr}`);
    expect(r.status).not.toBe(0);
    expect(r.status).not.toBe(null); // it failed, it was not killed by the timeout
    // The hook's message: why, each missing tool, and what to install for it.
    expect(r.stderr).toContain(
      `@modulora/kernels: no prebuilt addon for ${TRIPLE}, and it cannot be built from source here: missing ` +
        "a C++ compiler (none of c++, g++, clang++ is on PATH, and CXX is not set); a build tool (neither make nor ninja is on PATH); CMake (cmake is not on PATH). " +
        `Install ${BUILD_TOOLS_HINT}`,
    );
    expect(BUILD_TOOLS_HINT).toMatch(/C\+\+17 compiler.*CMake >= 3\.18.*apt-get install build-essential cmake/);
    expect(r.stderr).toMatch(/npm error path .*node_modules\/@modulora\/kernels\n/);
    // npm rolled the install back: nothing is left that could pass for a working install.
    expect(existsSync(join(consumer, "node_modules", "@modulora", "kernels")), "node_modules/@modulora/kernels after the failed install").toBe(false);
    expect(existsSync(join(consumer, "node_modules", "@modulora", "llama")), "node_modules/@modulora/llama after the failed install").toBe(false);
    expect(existsSync(join(consumer, "package-lock.json"))).toBe(false);
    const loaded = loadedAddon(consumer);
    expect(loaded.status).not.toBe(0);
    expect(loaded.stderr).toContain("Cannot find package '@modulora/kernels'");
  });

  it("npm rebuild of the installed @modulora/kernels with its prebuilt removed builds the addon from source, offline, loads it, and a fine-tune step runs", () => {
    const consumer = join(tmp, "consumer");
    const kernels = join(consumer, "node_modules", "@modulora", "kernels");
    expect(existsSync(join(kernels, PREBUILT)), "the prebuilt install of the tests above").toBe(true);
    rmSync(join(kernels, "prebuilds"), { recursive: true, force: true });
    // A HOME of its own: cmake-js would put downloaded Node headers in ~/.cmake-js.
    const home = join(tmp, "home-rebuild");
    mkdirSync(home);
    const t0 = performance.now();
    const r = npmRebuildOffline(consumer, "@modulora/kernels", envWithout(process.env, { HOME: home }));
    const seconds = (performance.now() - t0) / 1000;
    console.log(`npm rebuild @modulora/kernels without the prebuilt: exit ${r.status} in ${seconds.toFixed(1)} s\n${r.stdout.split("\n").filter((l) => /@modulora\/kernels|CMAKE_JS_INC|generator|Downloading/i.test(l)).join("\n")}`);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const out = r.stdout + r.stderr;
    const built = join(kernels, "build", "Release", "modulora_kernels.node");
    expect(out).toContain(`@modulora/kernels: no prebuilt addon for ${TRIPLE}; building from source with cmake-js\n`);
    expect(out).toContain(`@modulora/kernels: built ${built}\n`);
    // Offline: Node-API mode (the package's binary.napi_versions), headers from the installed
    // node-api-headers and node-addon-api packages, nothing downloaded, no ~/.cmake-js.
    const inc = /CMAKE_JS_INC=([^"'\s]+)/.exec(out)?.[1];
    expect(inc?.split(";").sort()).toEqual([
      join(consumer, "node_modules", "node-addon-api"),
      join(consumer, "node_modules", "node-api-headers", "include"),
    ]);
    expect(out).not.toMatch(/Downloading|nodejs\.org/);
    expect(existsSync(join(home, ".cmake-js"))).toBe(false);
    const loaded = loadedAddon(consumer);
    expect(loaded.status, loaded.stderr).toBe(0);
    expect(loaded.from).toEqual({ source: "source", path: built });
    const got = finetuneStep(consumer);
    console.log(`fine-tune step with the addon built from source: ${JSON.stringify(got)}`);
    expectStepLike(got, workspaceStep());
  }, 900_000);
});
