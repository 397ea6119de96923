// Running the built CLI (dist/cli.js) in a child process, as users run it, for every CLI test file.
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (the CLI runs there, so fixture paths are relative to it). */
export const ROOT = resolve(here, "../../..");
export const CLI = resolve(here, "../dist/cli.js");
export const TINY = join(ROOT, "fixtures/tiny-llama");
export const LM = join(ROOT, "fixtures/data/lm/valid.txt");

/** What one run printed and how it exited. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Options of {@link runCli}. */
export interface CliOptions {
  cwd?: string;
  /** Added to the environment (undefined removes a variable). */
  env?: Record<string, string | undefined>;
  /**
   * As root, run without the capabilities that let root ignore file permissions (CAP_DAC_OVERRIDE,
   * CAP_DAC_READ_SEARCH; util-linux `setpriv`), so a chmod-ed directory really is unwritable while
   * the checkout stays readable (it is root's own).
   */
  obeyPermissions?: boolean;
  /** Milliseconds before the child is killed (default 300 000): it only turns a hang into a failure. */
  timeoutMs?: number;
}

/** Runs `modulora ...args`. */
export function runCli(args: readonly string[], options: CliOptions = {}): CliRun {
  const asRoot = options.obeyPermissions && process.getuid?.() === 0;
  const [cmd, argv] = asRoot
    ? ["setpriv", ["--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search", "--", process.execPath, CLI, ...args]]
    : [process.execPath, [CLI, ...args]];
  const env: Record<string, string | undefined> = { ...process.env, FORCE_COLOR: "0", ...options.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const r = spawnSync(cmd, argv as string[], { cwd: options.cwd ?? ROOT, encoding: "utf8", timeout: options.timeoutMs ?? 300_000, env });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs and expects success; shows stderr when it fails. */
export function runCliOk(args: readonly string[], options?: CliOptions): CliRun {
  const r = runCli(args, options);
  if (r.code !== 0) throw new Error(`modulora ${args.join(" ")} exited ${r.code}:\n${r.stderr}`);
  return r;
}
