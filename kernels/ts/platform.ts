// Which prebuilt addon fits this process: platform, architecture and (on Linux) the C library.
// No dependency: the C library comes from Node's own diagnostic report, as detect-libc does it.

/** The C library of a Linux process: `glibc`, or `musl` (Alpine) where Node reports no glibc. */
export type Libc = "glibc" | "musl";

/** What the loader needs to pick a prebuilt addon. */
export interface PlatformInfo {
  /** `process.platform`: `linux`, `darwin`, `win32`, … */
  platform: string;
  /** `process.arch`: `x64`, `arm64`, … */
  arch: string;
  /** Linux only: the C library the process runs on. */
  libc?: Libc;
  /** Linux with glibc: the glibc version the process runs on, e.g. `2.36`. */
  glibcVersion?: string;
}

/** The platform of this process (on Linux, reads the glibc version from `process.report`). */
export function currentPlatform(): PlatformInfo {
  const info: PlatformInfo = { platform: process.platform, arch: process.arch };
  if (process.platform === "linux") {
    // Runs once per process, on the first addon load. Without its network section (which can take
    // seconds on hosts with many interfaces, as detect-libc found), a report takes a few ms.
    const report = process.report as (NodeJS.ProcessReport & { excludeNetwork?: boolean }) | undefined;
    const excluded = report?.excludeNetwork;
    if (report) report.excludeNetwork = true;
    let header: { glibcVersionRuntime?: string } | undefined;
    try {
      header = (report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    } finally {
      if (report) report.excludeNetwork = excluded ?? false;
    }
    const glibc = header?.glibcVersionRuntime;
    info.libc = glibc ? "glibc" : "musl";
    if (glibc) info.glibcVersion = glibc;
  }
  return info;
}

/**
 * The folder name of the prebuilt addon for a platform under `prebuilds/`:
 * `<platform>-<arch>` with `-<libc>` on Linux, e.g. `linux-x64-glibc`, `linux-arm64-musl`, `darwin-arm64`.
 */
export function platformTriple(info: PlatformInfo): string {
  const base = `${info.platform}-${info.arch}`;
  return info.platform === "linux" ? `${base}-${info.libc ?? "glibc"}` : base;
}

/** Compares dotted versions numerically (`2.17` < `2.4` is false): negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
