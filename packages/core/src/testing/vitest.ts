// vitest, loaded when @modulora/core/testing is imported. It is an optional peer dependency (only
// plugin authors who run the conformance suite need it), so a missing vitest is reported as what
// to install rather than as Node's bare ERR_MODULE_NOT_FOUND. A static import would fail while
// linking, before any of our code runs, hence the dynamic import (top-level await).
import type * as Vitest from "vitest";

/** The vitest versions `@modulora/core/testing` is tested with (its peer range). */
export const VITEST_PEER_RANGE = ">=3 <6";

/** Whether `err` says that the package `vitest` itself cannot be found (not one of its dependencies). */
export function isMissingVitest(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") return false;
  return typeof message === "string" && /Cannot find (package|module) ['"]vitest['"]/.test(message);
}

/** The error `@modulora/core/testing` throws when vitest is not installed. */
export function missingVitestError(cause: unknown): Error {
  return new Error(
    `@modulora/core/testing needs vitest (${VITEST_PEER_RANGE}), which is not installed. ` +
      `Install it next to @modulora/core as a dev dependency: npm install --save-dev vitest ` +
      `(pnpm add -D vitest, yarn add -D vitest), and import @modulora/core/testing from a vitest test file.`,
    { cause },
  );
}

async function loadVitest(): Promise<typeof Vitest> {
  try {
    return await import("vitest");
  } catch (err) {
    if (isMissingVitest(err)) throw missingVitestError(err);
    throw err;
  }
}

const vitest = await loadVitest();
export const describe: typeof Vitest.describe = vitest.describe;
export const expect: typeof Vitest.expect = vitest.expect;
export const it: typeof Vitest.it = vitest.it;
