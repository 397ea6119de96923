#!/usr/bin/env node
// Builds the prebuilt addons shipped in the npm tarball: prebuilds/<triple>/modulora_kernels.node
// (run by "prepack"; never needed by `pnpm build` or CI, which build from source). Each Linux
// build is portable (MODULORA_PORTABLE_LINUX=ON: static libstdc++, glibc shims), and this script
// checks its ELF dependencies and fails if it needs a glibc symbol version newer than MAX_GLIBC,
// any libstdc++ version, a libgcc_s version newer than MAX_GCC, or a library other than
// libc/libm/libpthread/libdl/libgcc_s.
//
//   node scripts/prebuild.mjs                 every target this machine can build
//   node scripts/prebuild.mjs linux-x64-glibc one target
//   MODULORA_SKIP_PREBUILD=1                  do nothing (the tarball then builds from source at install)
//   MODULORA_ARM64_NODE=/path/to/arm64/node   with qemu-aarch64 on PATH: load the arm64 build under emulation
import { spawnSync } from "node:child_process";
import { accessSync, constants, copyFileSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
/** The newest glibc symbol version a prebuilt may need (CentOS 7 / manylinux2014; aarch64's first glibc). */
const MAX_GLIBC = "2.17";
/** The newest libgcc_s version it may need (GCC 4.2, 2007: every glibc 2.17 system has it). */
const MAX_GCC = "4.2.0";
const ALLOWED_NEEDED = /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|libgcc_s\.so\.1|ld-linux-(x86-64|aarch64)\.so\.[12])$/;

const TARGETS = {
  "linux-x64-glibc": { arch: "x64", machine: "X86-64", cxx: process.arch === "x64" ? "g++" : "x86_64-linux-gnu-g++", processor: "x86_64" },
  "linux-arm64-glibc": { arch: "arm64", machine: "AArch64", cxx: process.arch === "arm64" ? "g++" : "aarch64-linux-gnu-g++", processor: "aarch64" },
};

function onPath(name) {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {}
  }
  return undefined;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr ?? ""}`);
  return r.stdout ?? "";
}

function cmp(a, b) {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

/**
 * The version needs of an ELF file (`readelf -V`: per library, each version and whether only weak
 * references use it), its NEEDED libraries (`readelf -d`) and machine (`readelf -h`).
 */
function elfDependencies(file) {
  const needs = [];
  let lib;
  for (const line of run("readelf", ["-V", "-W", file]).split("\n")) {
    const f = line.match(/File: (\S+)/);
    if (f) lib = f[1];
    const v = line.match(/Name: (\S+)\s+Flags: (\S+)/);
    if (v && lib) needs.push({ lib, version: v[1], weak: v[2] === "WEAK" });
  }
  const needed = [...run("readelf", ["-d", "-W", file]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const machine = run("readelf", ["-h", "-W", file]).match(/Machine:\s+(.+)/)?.[1].trim() ?? "?";
  // Which undefined symbols use each version, for the error message.
  const symbols = {};
  for (const m of run("readelf", ["--dyn-syms", "-W", file]).matchAll(/ UND (\S+?)@(\S+)/g)) (symbols[m[2]] ??= []).push(m[1]);
  return { needs, needed, machine, symbols };
}

/** The problems of a portable prebuilt (empty when it passes), and the newest glibc version it needs. */
function checkPortable(deps, maxGlibc = MAX_GLIBC) {
  const problems = [];
  let newest = "0";
  for (const n of deps.needs) {
    const g = n.version.match(/^GLIBC_(\d+(?:\.\d+)*)$/);
    if (g) {
      if (n.weak) continue; // only weak references: an older glibc without it still loads the addon
      if (cmp(g[1], newest) > 0) newest = g[1];
      if (cmp(g[1], maxGlibc) > 0) problems.push(`needs ${n.version} from ${n.lib} (newer than ${maxGlibc}) for ${(deps.symbols[n.version] ?? ["?"]).join(", ")}: add a shim to scripts/glibc-compat/glibc_compat.cc`);
    } else if (/^GCC_/.test(n.version) && n.lib === "libgcc_s.so.1") {
      // libgcc_s stays shared (its static unwinder needs glibc 2.35): allow its old versions only.
      if (cmp(n.version.slice(4), MAX_GCC) > 0) problems.push(`needs ${n.version} from libgcc_s.so.1 (newer than GCC_${MAX_GCC})`);
    } else if (n.version !== "GLIBC_PRIVATE") {
      problems.push(`needs ${n.version} from ${n.lib} for ${(deps.symbols[n.version] ?? ["?"]).join(", ")} (libstdc++ must be linked statically)`);
    } else {
      problems.push(`needs GLIBC_PRIVATE from ${n.lib}`);
    }
  }
  for (const lib of deps.needed) if (!ALLOWED_NEEDED.test(lib)) problems.push(`links ${lib} (only libc, libm, libpthread, libdl and libgcc_s are allowed)`);
  return { problems, newest };
}

function build(triple, t) {
  const out = join(root, "build-prebuild", triple);
  const cmakeJs = join(dirname(createRequire(join(root, "package.json")).resolve("cmake-js/package.json")), "bin", "cmake-js");
  const args = [cmakeJs, "compile", "--out", out, "--CDMODULORA_PORTABLE_LINUX=ON", "--CDMODULORA_CUDA=OFF", `--CDCMAKE_CXX_COMPILER=${t.cxx}`];
  if (t.arch !== process.arch) args.push("--CDCMAKE_SYSTEM_NAME=Linux", `--CDCMAKE_SYSTEM_PROCESSOR=${t.processor}`);
  console.log(`prebuild ${triple}: ${t.cxx}, portable link, into ${out}`);
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit", env: { ...process.env, MODULORA_CUDA: "OFF" } });
  if (r.status !== 0) throw new Error(`prebuild ${triple}: cmake-js failed (${r.status ?? r.signal})`);
  return join(out, "Release", "modulora_kernels.node");
}

/** Runs scripts/prebuild-smoke.cjs on the addon with the target's Node: this one, or an arm64 Node under qemu-user. */
function loadTest(triple, t, file) {
  const smoke = join(root, "scripts", "prebuild-smoke.cjs");
  if (t.arch === process.arch) return run(process.execPath, [smoke, file]).trim();
  const qemu = onPath(`qemu-${t.processor}`);
  const envName = `MODULORA_${t.arch.toUpperCase()}_NODE`;
  const node = process.env[envName];
  if (!qemu || !node) return `not run: no ${!qemu ? `qemu-${t.processor} on PATH` : `${envName} (the path of a ${t.arch} node binary)`} to run the smoke test under emulation`;
  return `${run(qemu, ["-L", `/usr/${t.processor}-linux-gnu`, node, smoke, file]).trim()} (under ${qemu})`;
}

function main() {
  if (process.env.MODULORA_SKIP_PREBUILD === "1") {
    console.log("prebuild: MODULORA_SKIP_PREBUILD=1, no prebuilt addons (installs of this tarball build from source)");
    return;
  }
  if (process.platform !== "linux") {
    console.log(`prebuild: prebuilt addons are made on Linux only (this is ${process.platform}); the tarball builds from source at install`);
    return;
  }
  const asked = process.argv.slice(2);
  for (const a of asked) if (!(a in TARGETS)) throw new Error(`prebuild: unknown target ${a}; known: ${Object.keys(TARGETS).join(", ")}`);
  const report = [];
  for (const [triple, t] of Object.entries(TARGETS)) {
    if (asked.length > 0 && !asked.includes(triple)) continue;
    if (!onPath(t.cxx)) {
      const msg = `prebuild ${triple}: skipped, ${t.cxx} is not on PATH` + (t.arch === "arm64" ? " (Debian/Ubuntu: apt-get install g++-aarch64-linux-gnu)" : "");
      if (asked.includes(triple)) throw new Error(msg);
      console.log(msg);
      report.push(`${triple}: skipped (no ${t.cxx})`);
      continue;
    }
    const file = build(triple, t);
    const deps = elfDependencies(file);
    if (!deps.machine.includes(t.machine)) throw new Error(`prebuild ${triple}: ${file} is for ${deps.machine}, not ${t.machine}`);
    const { problems, newest } = checkPortable(deps);
    if (problems.length > 0) throw new Error(`prebuild ${triple}: ${file} is not portable:\n  ${problems.join("\n  ")}`);
    const dest = join(root, "prebuilds", triple);
    mkdirSync(dest, { recursive: true });
    copyFileSync(file, join(dest, "modulora_kernels.node.tmp"));
    renameSync(join(dest, "modulora_kernels.node.tmp"), join(dest, "modulora_kernels.node"));
    const loaded = loadTest(triple, t, join(dest, "modulora_kernels.node"));
    const meta = { triple, glibc: newest, maxGlibc: MAX_GLIBC, needed: deps.needed, versions: [...new Set(deps.needs.map((n) => `${n.version}${n.weak ? " (weak)" : ""}`))], compiler: run(t.cxx, ["--version"]).split("\n")[0], napi: 8 };
    writeFileSync(join(dest, "build.json.tmp"), JSON.stringify(meta, null, 2) + "\n");
    renameSync(join(dest, "build.json.tmp"), join(dest, "build.json"));
    const line = `${triple}: needs glibc >= ${newest} (checked <= ${MAX_GLIBC}), links ${deps.needed.join(", ")}; ${loaded}`;
    console.log(`prebuild ${line}`);
    report.push(line);
  }
  console.log(`prebuild: done\n  ${report.join("\n  ")}`);
}

try {
  main();
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
