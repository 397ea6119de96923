// The conformance runner's command line, as a function (the bundled entry calls it and exits).
import { getBackend, listBackends, registerSimBackend } from "../index.js";
import { CONFORMANCE_CASES } from "./cases/index.js";
import { formatResult, kernelsWithoutCase, quantKernelsWithoutCase, runBackendConformance, selectCases } from "./run.js";
import { caseName, type ConformanceCase, type ConformanceResult } from "./types.js";
import { runMemoryCheck } from "./memory.js";

/** Where the runner writes. */
export interface CliIO {
  out(line: string): void;
  err(line: string): void;
}

const USAGE = `usage: node conformance-runner.mjs --backend NAME [--filter TEXT]... [--list] [--memory]
  --backend NAME  the backend (device) to check: cpu, sim, cuda...
  --filter TEXT   only the cases whose name ("op dtype shape...") contains TEXT; given more
                  than once, the cases that match any of them
  --list          print the case names and exit
  --memory        also run the memory check: training steps inside tidy leave the device's
                  bytes in use and tensor handles as they were (f32 and bf16)
The native addon is loaded from MODULORA_KERNELS_ADDON (a path to modulora_kernels.node) when set.`;

const PROG = "conformance-runner";

/**
 * Runs the conformance suite from command-line arguments: one line per case (`ok`/`FAIL`, op,
 * dtype, shape, max error vs bound), a coverage line when a kernel of the backend (or an entry of
 * its quantized format table) has no case,
 * and a last line `N passed, N failed`. Returns the exit code (1 on any failure or usage error).
 */
export async function runConformanceCli(argv: readonly string[], io: CliIO, cases: readonly ConformanceCase[] = CONFORMANCE_CASES): Promise<number> {
  let backend: string | undefined;
  const filters: string[] = [];
  let list = false;
  let memoryCheck = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") {
      io.out(USAGE);
      return 0;
    } else if (a === "--list") list = true;
    else if (a === "--memory") memoryCheck = true;
    else if (a === "--backend" || a === "--filter") {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) {
        io.err(`${PROG}: ${a} needs a value — e.g. ${a === "--backend" ? "--backend cpu" : "--filter attention"}`);
        return 1;
      }
      if (a === "--backend") backend = v;
      else filters.push(v);
    } else if (a.startsWith("--backend=")) backend = a.slice(10);
    else if (a.startsWith("--filter=")) filters.push(a.slice(9));
    else {
      io.err(`${PROG}: unknown argument '${a}' — run with --help for the options`);
      return 1;
    }
  }
  const selected = selectCases(filters, cases);
  const filter = filters.map((f) => `'${f}'`).join(" or ");
  if (list) {
    for (const c of selected) io.out(caseName(c));
    return 0;
  }
  if (!backend) {
    io.err(`${PROG}: no backend given — pass --backend NAME (registered: ${listBackends().join(", ")})`);
    return 1;
  }
  if (backend === "sim") registerSimBackend(); // the simulated device exists only when asked for
  try {
    getBackend(backend);
  } catch (err) {
    io.err(`${PROG}: backend '${backend}' is not available (${(err as Error).message}) — pass --backend with one of: ${listBackends().join(", ")}`);
    return 1;
  }
  if (selected.length === 0) {
    io.err(`${PROG}: no case matches --filter ${filter} — run with --list to see the case names`);
    return 1;
  }
  io.out(`# backend ${backend}: ${selected.length} cases${filter ? ` matching ${filter}` : ""}`);
  const t0 = performance.now();
  const results = await runBackendConformance({ backend, cases: selected, onResult: (r) => io.out(formatResult(r)) });
  let failed = results.filter((r) => !r.passed).length;
  if (!filter) {
    const missing = kernelsWithoutCase(backend, cases);
    if (missing.length > 0) {
      failed++;
      io.out(`FAIL coverage: kernels of '${backend}' that no case runs: ${missing.join(", ")} — add a case to the table (or an entry with a reason to KERNELS_WITHOUT_CASE)`);
    }
    const missingQuant = quantKernelsWithoutCase(backend, cases);
    if (missingQuant.length > 0) {
      failed++;
      io.out(`FAIL coverage: quantized format kernels of '${backend}' that no case runs: ${missingQuant.join(", ")} — add cases to cases/quant.ts (or an entry with a reason to QUANT_KERNELS_WITHOUT_CASE)`);
    }
  }
  let passed = results.length - results.filter((r) => !r.passed).length;
  if (memoryCheck) {
    for (const dtype of ["f32", "bf16"] as const) {
      let line: string;
      try {
        const m = runMemoryCheck(backend, dtype);
        line = `${m.passed ? "ok  " : "FAIL"} memory ${m.detail}`;
        if (m.passed) passed++;
        else failed++;
      } catch (err) {
        line = `FAIL memory ${dtype}: ${(err as Error).message}`;
        failed++;
      }
      io.out(line);
    }
  }
  io.out(`# ${((performance.now() - t0) / 1000).toFixed(1)} s; ${worstPerDType(results)}`);
  io.out(`${passed} passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

/** `largest error / bound per dtype: f32 0.62 (sigmoid f32 [3,33] grad0, 5.9e-7), ...` over the bounded checks. */
export function worstPerDType(results: readonly ConformanceResult[]): string {
  const worst = new Map<string, { ratio: number; what: string; err: number }>();
  for (const r of results) {
    for (const k of r.checks) {
      if (!(k.bound > 0)) continue;
      const ratio = k.maxRelError / k.bound;
      const w = worst.get(r.dtype);
      if (!w || !(ratio <= w.ratio)) worst.set(r.dtype, { ratio, what: `${r.name} ${k.what}`, err: k.maxRelError });
    }
  }
  const parts = [...worst].map(([d, w]) => `${d} ${w.ratio.toFixed(2)} (${w.what}, ${w.err.toExponential(1)})`);
  return `largest error / bound per dtype: ${parts.join(", ") || "none"}`;
}
