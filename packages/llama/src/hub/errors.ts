// The one error type of model resolution and download: what is wrong and what to do, kept apart
// so that the CLI prints them as its own `what — todo` line.

/** What kind of failure a {@link HubError} is. */
export type HubErrorCode =
  | "malformed-id"
  | "no-such-path"
  | "not-cached"
  | "unknown-revision"
  | "missing-files"
  | "unauthorized"
  | "not-found"
  | "network"
  | "bad-response"
  | "checksum";

/**
 * A model that cannot be resolved or downloaded. `what` says what is wrong (and what was looked
 * for, where), `todo` what to do; the message is `what — todo`.
 */
export class HubError extends Error {
  constructor(
    readonly code: HubErrorCode,
    readonly what: string,
    readonly todo: string,
    options?: { cause?: unknown },
  ) {
    super(`${what} — ${todo}`, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = "HubError";
  }
}
