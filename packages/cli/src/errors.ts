// Errors the CLI reports: one line, `modulora <cmd>: what is wrong — what to do`.

/**
 * An error meant for the user: `what` is wrong, `todo` says what to do about it. `usage` errors
 * (the command line is wrong: an unknown command or flag, a missing or malformed value, a missing
 * required flag) exit with code 2 and point to `--help`; all others exit with code 1.
 */
export class CliError extends Error {
  constructor(
    readonly what: string,
    readonly todo?: string,
    options?: { cause?: unknown; usage?: boolean },
  ) {
    super(todo ? `${what} — ${todo}` : what, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = "CliError";
    this.usage = options?.usage ?? false;
  }
  readonly usage: boolean;
}

/** A command-line usage error (unknown flag, missing value, bad type): exit code 2. */
export function usageError(what: string, todo?: string): CliError {
  return new CliError(what, todo, { usage: true });
}

/** The message of anything thrown, on one line. */
export function oneLine(err: unknown): string {
  const problems = (err as { problems?: unknown })?.problems;
  let msg: string;
  if (err instanceof Error && Array.isArray(problems) && problems.length > 0 && problems.every((p) => typeof p === "string")) {
    // AdapterError / CheckpointError list every problem on its own line: keep the first few.
    const shown = (problems as string[]).slice(0, 3).join("; ");
    msg = `${shown}${problems.length > 3 ? `; … and ${problems.length - 3} more` : ""}`;
  } else {
    msg = err instanceof Error ? err.message : String(err);
  }
  return msg.replace(/\s*\n\s*/g, "; ").trim();
}

/**
 * Runs `fn`; anything it throws becomes a CliError `what: <its message> — todo` (a CliError
 * passes through unchanged). Keeps each failure tied to the step that failed.
 */
export async function step<T>(what: string, todo: string | ((err: unknown) => string | undefined), fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CliError) throw err;
    const hint = typeof todo === "function" ? todo(err) : todo;
    throw new CliError(`${what}: ${oneLine(err)}`, hint, { cause: err });
  }
}

/** Synchronous {@link step}. */
export function stepSync<T>(what: string, todo: string | ((err: unknown) => string | undefined), fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CliError) throw err;
    const hint = typeof todo === "function" ? todo(err) : todo;
    throw new CliError(`${what}: ${oneLine(err)}`, hint, { cause: err });
  }
}
