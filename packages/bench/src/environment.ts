// Where and with what a run ran: Node, the CPU, the thread pool, memory, the device, the
// versions of the @modulora packages, the load average (a busy machine explains slow cells).
import { existsSync, readFileSync } from "node:fs";
import { cpus, loadavg, platform, arch, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { cpuInfo, getNumThreads } from "@modulora/tensor";
import type { BenchEnvironment } from "./types.js";

/** The `@modulora` packages whose versions a run records (those that can be found from this package). */
export const RECORDED_PACKAGES: readonly string[] = [
  "@modulora/bench", "@modulora/core", "@modulora/data", "@modulora/llama", "@modulora/tensor", "@modulora/kernels",
  "@modulora/quantizer-rtn", "@modulora/quantizer-optq", "@modulora/quantizer-nf4", "@modulora/quantizer-hqq",
];

function readVersion(manifest: string, name: string): string | null {
  try {
    const j = JSON.parse(readFileSync(manifest, "utf8")) as { name?: string; version?: string };
    return j.name === name && typeof j.version === "string" ? j.version : null;
  } catch {
    return null;
  }
}

/** The version of package `name` as found in node_modules from this package's directory upwards, or null. */
export function packageVersion(name: string): string | null {
  const here = dirname(fileURLToPath(import.meta.url));
  const own = join(here, "..", "package.json");
  if (existsSync(own) && readVersion(own, name)) return readVersion(own, name);
  for (let dir = here; ; dir = dirname(dir)) {
    const manifest = join(dir, "node_modules", name, "package.json");
    if (existsSync(manifest)) return readVersion(manifest, name);
    if (dirname(dir) === dir) return null;
  }
}

/** The environment of this process for results.json. `device`: the run's device. */
export function benchEnvironment(device: string): BenchEnvironment {
  const list = cpus();
  const cpu = list[0]?.model.trim() ?? "unknown";
  const packages: Record<string, string> = {};
  for (const p of RECORDED_PACKAGES) {
    const v = packageVersion(p);
    if (v) packages[p] = v;
  }
  let isa = "";
  try {
    isa = cpuInfo().active;
  } catch {
    // the kernels' CPU query is informative only
  }
  return {
    node: process.version,
    platform: `${platform()}-${arch()}`,
    cpu: isa ? `${cpu} (${isa} kernels)` : cpu,
    cpus: list.length,
    threads: getNumThreads(),
    memoryGiB: totalmem() / 2 ** 30,
    device: device === "cpu" ? `cpu: ${cpu}` : device,
    packages,
    loadAverage: loadavg(),
  };
}
