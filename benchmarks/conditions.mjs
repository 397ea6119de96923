// The conditions a benchmark ran under, recorded into every result (JSON and Markdown), and the
// rules a result must pass before it is written:
//   - the machine: CPU model, logical CPUs available to this process, threads used, load average
//     before and after, memory, kernel;
//   - the code: git commit and whether the tree was dirty (which paths), the kernels addon that
//     was loaded and that it is the tracked build (kernels/build/Release, not older than the
//     tracked sources; MODULORA_KERNELS_ADDON and MODULORA_KERNELS_PATH are refused);
//   - the baseline's libraries, read from the baseline process itself (baselines/blas_probe.py):
//     Python, numpy, PyTorch and its `torch.__config__`, and the file that provides `sgemm_`
//     (the `libblas.so.3` the dynamic loader resolved); a reference-BLAS baseline is refused.
// Paired statistics: ours and the baseline alternate round by round (ABAB) in the same command;
// each side is summarised by median, min and max over rounds, and the ratio by its min, median
// and max over paired rounds (ratio of round r = ours_r / baseline_r), never by a best case.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const probeScript = path.join(repoRoot, "benchmarks", "baselines", "blas_probe.py");

/** A benchmark that must not publish: the message says what was wrong and what to do. */
export class BenchmarkRefusal extends Error {}

/** Runs `main`; a BenchmarkRefusal (or any error) prints one line and exits 1, writing nothing. */
export async function runBenchmark(name, main) {
  try {
    await main();
  } catch (err) {
    if (err instanceof BenchmarkRefusal) {
      console.error(`${name}: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }
}

// ---- machine and code ---------------------------------------------------------------------------

function cpuinfoField(text, name) {
  return (text.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, "m")) ?? [])[1]?.trim() ?? null;
}

/** CPU model and the CPUs this process may run on (affinity), from /proc. */
export function machine() {
  const text = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
  const status = existsSync("/proc/self/status") ? readFileSync("/proc/self/status", "utf8") : "";
  const meminfo = existsSync("/proc/meminfo") ? readFileSync("/proc/meminfo", "utf8") : "";
  const memKb = Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? NaN);
  return {
    cpuModel: cpuinfoField(text, "model name") ?? os.cpus()[0]?.model ?? "unknown",
    cpuFamily: cpuinfoField(text, "cpu family"),
    cpuModelNumber: cpuinfoField(text, "model"),
    logicalCpus: os.cpus().length,
    cpusAvailable: typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length,
    cpusAllowedList: /Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1] ?? null,
    avx512f: / avx512f /.test(` ${cpuinfoField(text, "flags") ?? ""} `),
    memTotalGiB: Number.isFinite(memKb) ? Math.round((memKb / 2 ** 20) * 10) / 10 : null,
    kernel: `${os.type()} ${os.release()}`,
  };
}

/** Benchmark outputs: rewritten by the runs themselves, so they do not make the code dirty. */
const RESULTS_PATH = /^benchmarks\/[^/]+\/results\//;

/**
 * Our commit and the tracked paths that differ from it, benchmark results aside (the code is dirty
 * when that list is non-empty).
 */
export function gitState() {
  const git = (args) => execFileSync("git", args, { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trimEnd();
  try {
    const commit = git(["rev-parse", "HEAD"]);
    const dirtyPaths = git(["status", "--porcelain", "--untracked-files=no"]).split("\n").filter(Boolean).map((l) => l.slice(3)).filter((p) => !RESULTS_PATH.test(p));
    return { commit, dirty: dirtyPaths.length > 0, dirtyPaths };
  } catch {
    return { commit: null, dirty: null, dirtyPaths: [] };
  }
}

function newestFile(dir) {
  let best = { file: null, mtimeMs: 0 };
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    const cand = entry.isDirectory() ? newestFile(p) : { file: p, mtimeMs: statSync(p).mtimeMs };
    if (cand.mtimeMs > best.mtimeMs) best = cand;
  }
  return best;
}

/** The variables that make the kernels loader take an addon from elsewhere (kernels/ts/loader.ts). */
const ADDON_PATH_VARIABLES = ["MODULORA_KERNELS_ADDON", "MODULORA_KERNELS_PATH"];

/**
 * The kernels addon a benchmark loads, checked to be the tracked build: the package's own
 * kernels/build/Release/modulora_kernels.node (from `pnpm --filter @modulora/kernels build`), not
 * older than any file under kernels/src or kernels/CMakeLists.txt. MODULORA_KERNELS_ADDON and
 * MODULORA_KERNELS_PATH (an addon built elsewhere, e.g. from an untracked worktree) are refused. `root` and `env` are for tests.
 */
export function trackedAddon({ root = repoRoot, env = process.env } = {}) {
  for (const name of ADDON_PATH_VARIABLES) {
    if (!env[name]) continue;
    throw new BenchmarkRefusal(
      `${name}=${env[name]} points at an addon built outside the tracked tree — ` +
        "unset it and build the tracked sources with `pnpm --filter @modulora/kernels build`",
    );
  }
  const addon = path.join(root, "kernels", "build", "Release", "modulora_kernels.node");
  if (!existsSync(addon)) throw new BenchmarkRefusal(`${path.relative(root, addon)} is missing — run \`pnpm --filter @modulora/kernels build\``);
  const built = statSync(addon).mtimeMs;
  const src = newestFile(path.join(root, "kernels", "src"));
  const cmake = statSync(path.join(root, "kernels", "CMakeLists.txt")).mtimeMs;
  const newest = cmake > src.mtimeMs ? { file: path.join(root, "kernels", "CMakeLists.txt"), mtimeMs: cmake } : src;
  if (newest.mtimeMs > built) {
    throw new BenchmarkRefusal(
      `${path.relative(root, addon)} is older than ${path.relative(root, newest.file)} — ` +
        "rebuild it with `pnpm --filter @modulora/kernels build` so that the benchmark measures the tracked sources",
    );
  }
  return { path: path.relative(root, addon), builtAt: new Date(built).toISOString(), newestSource: path.relative(root, newest.file) };
}

// ---- the baseline's libraries -------------------------------------------------------------------

/** Runs baselines/blas_probe.py under `python` with `env`; returns its JSON (see that file). */
export function probePython(python, env = process.env) {
  try {
    const out = execFileSync(python, [probeScript], { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return JSON.parse(out.trim().split("\n").pop());
  } catch (err) {
    throw new BenchmarkRefusal(`cannot probe the baseline's libraries with ${python} (${String(err.message).split("\n")[0]}) — see benchmarks/baselines/README.md for the set-up`);
  }
}

const OPTIMIZED = new Set(["openblas", "mkl", "blis"]);

/**
 * Refuses a baseline whose BLAS is not an optimized one: the reference BLAS (netlib `libblas3`,
 * what Debian's PyTorch gets when `libblas.so.3` is not OpenBLAS) runs about 6x slower, and a
 * figure from it would flatter us. `what` names the baseline in the message.
 */
export function requireOptimizedBlas(probe, what) {
  const blas = probe?.blas;
  if (!blas || !OPTIMIZED.has(blas.kind)) {
    throw new BenchmarkRefusal(
      `${what} runs on ${blas?.provider ?? "no BLAS found"} (${blas?.kind ?? "unknown"} BLAS, found by ${blas?.via ?? "-"}), not OpenBLAS/MKL/BLIS; ` +
        "no figure is published from it — install libopenblas0-pthread and check `update-alternatives --display libblas.so.3-x86_64-linux-gnu` (and LD_LIBRARY_PATH)",
    );
  }
  return probe;
}

/** One-line summary of a probe for Markdown. */
export function describeProbe(probe) {
  if (!probe) return "not run";
  const b = probe.blas;
  const ob = b.openblas ? `, core ${b.openblas.corename}, ${b.openblas.threads} thread(s), \`${b.openblas.config}\`` : "";
  const torch = probe.torch ? `PyTorch ${probe.torch.version} (BLAS_INFO=${probe.torch.blas_info}, ${probe.torch.num_threads} intra-op thread(s)), ` : "";
  const lib3 = probe.libblas_so_3?.ldconfig ? `; \`ldconfig -p\`: libblas.so.3 → ${probe.libblas_so_3.ldconfig.realpath}` : "";
  return `${probe.python} (Python ${probe.python_version}), ${torch}numpy ${probe.numpy}; BLAS **${b.kind}**: \`${b.provider}\` (${b.via})${ob}${lib3}`;
}

// ---- recording ----------------------------------------------------------------------------------

/**
 * Starts recording: call before the first measurement, and `finish()` after the last one.
 * `threads` is the thread count the benchmark uses; `addon: false` skips the addon check (for
 * benchmarks that load the kernels only through other packages, set it to true anyway: they load
 * the same file).
 */
export function startConditions({ threads, addon = true, env = [] } = {}) {
  const started = { date: new Date().toISOString(), loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100), cpuIdle: cpuIdleShare(1000) };
  const addonInfo = addon ? trackedAddon() : null;
  const git = gitState();
  const envVars = ["MODULORA_NUM_THREADS", "MODULORA_CPU_ISA", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", ...env];
  return {
    finish(extra = {}) {
      return {
        command: commandLine(),
        startedAt: started.date,
        finishedAt: new Date().toISOString(),
        machine: machine(),
        threadsUsed: threads,
        loadavg: { before: started.loadavg, after: os.loadavg().map((x) => Math.round(x * 100) / 100), note: "1, 5 and 15 min averages" },
        cpuIdleBefore: started.cpuIdle == null ? null : Math.round(started.cpuIdle * 1000) / 1000,
        node: process.version,
        git,
        addon: addonInfo,
        env: Object.fromEntries(envVars.filter((v) => process.env[v] != null).map((v) => [v, process.env[v]])),
        ...extra,
      };
    },
  };
}

/** Below this idle share of all CPUs, a machine is said to be running other work. */
export const BUSY_IDLE_SHARE = 0.85;

/**
 * Share of CPU time (all CPUs) spent idle over the next `ms` milliseconds, from /proc/stat; null
 * where there is no /proc/stat. Blocks the thread for `ms` (benchmarks only).
 */
export function cpuIdleShare(ms) {
  if (!existsSync("/proc/stat")) return null;
  const read = () => {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    return { idle: f[3] + (f[4] ?? 0), total: f.slice(0, 8).reduce((a, b) => a + b, 0) };
  };
  const a = read();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  const b = read();
  return b.total > a.total ? (b.idle - a.idle) / (b.total - a.total) : null;
}

/** The command as typed from the repository root. */
export function commandLine() {
  const script = path.relative(repoRoot, process.argv[1]);
  return `node ${script} ${process.argv.slice(2).join(" ")}`.trim();
}

/** Markdown lines describing recorded conditions (a "Conditions" section). */
export function conditionsMarkdown(c, baselines = {}) {
  const m = c.machine;
  const load = (xs) => xs.map((x) => x.toFixed(2)).join(" / ");
  const lines = [
    "## Conditions",
    "",
    `- Command (from the repository root): \`${c.command}\``,
    `- Run: ${c.startedAt} → ${c.finishedAt}`,
    `- Machine: ${m.cpuModel} (family ${m.cpuFamily}, model ${m.cpuModelNumber}), AVX-512: ${m.avx512f ? "yes" : "no"}, ` +
      `${m.cpusAvailable} CPU(s) available to the process (allowed ${m.cpusAllowedList}), ${m.memTotalGiB} GiB, ${m.kernel}; threads used: ${c.threadsUsed}`,
    // Load averages trail by minutes (the one before a run still counts the previous benchmark; the one
    // after counts this run's own threads), so whether other work was running is judged by the CPUs'
    // idle share measured over the second before the run.
    `- CPU idle over the second before the run: ${c.cpuIdleBefore == null ? "not measured" : `${Math.round(c.cpuIdleBefore * 100)}%`}` +
      (c.cpuIdleBefore != null && c.cpuIdleBefore < BUSY_IDLE_SHARE ? " — **other work was running when this run started**" : ""),
    `- Load average (1/5/15 min) before: ${load(c.loadavg.before)}, after: ${load(c.loadavg.after)} (trailing averages: the figure after includes this run's own ${c.threadsUsed} thread(s))`,
    `- Node ${c.node}; commit \`${c.git.commit?.slice(0, 12)}\`${c.git.dirty ? ` with uncommitted changes in ${c.git.dirtyPaths.length} tracked file(s): ${c.git.dirtyPaths.slice(0, 8).map((p) => `\`${p}\``).join(", ")}${c.git.dirtyPaths.length > 8 ? ", …" : ""}` : " (clean tree)"}`,
  ];
  if (c.addon) lines.push(`- Kernels addon: \`${c.addon.path}\` built ${c.addon.builtAt} (not older than any kernels source)`);
  if (Object.keys(c.env).length) lines.push(`- Environment: ${Object.entries(c.env).map(([k, v]) => `${k}=${v}`).join(", ")}`);
  for (const [name, probe] of Object.entries(baselines)) lines.push(`- ${name}: ${describeProbe(probe)}`);
  if (Object.keys(baselines).length) {
    lines.push("- Baseline set-up (Debian 12): `apt-get install -y python3-torch libopenblas0-pthread`, `libblas.so.3` alternative on OpenBLAS; the BLAS above is read from the baseline process itself (`benchmarks/baselines/blas_probe.py`), and a reference-BLAS baseline is refused — see `benchmarks/baselines/README.md`");
  }
  lines.push("");
  return lines;
}

// ---- paired statistics --------------------------------------------------------------------------

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};

/** Median, min and max of a list (n too). */
export function spread(xs) {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/**
 * Paired rounds: `ours[r]` and `base[r]` were measured in the same round. `higherIsBetter` says
 * whether the figures are rates (tokens/s, GFLOP/s: ratio = ours / base) or times (ratio = base /
 * ours), so that a ratio above 1 always means ours is faster.
 */
export function paired(ours, base, { higherIsBetter }) {
  if (ours.length !== base.length || ours.length === 0) throw new Error("paired: rounds differ");
  const ratios = ours.map((o, i) => (higherIsBetter ? o / base[i] : base[i] / o));
  return { rounds: ours.length, ours: spread(ours), baseline: spread(base), ratio: spread(ratios), ratios };
}

/** "median (min–max)" with `digits` decimals. */
export function fmtSpread(s, digits = 0) {
  return `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
}
